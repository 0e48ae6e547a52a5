"""The group stage on its own, from connectome folders (`input: connectomes`): it finds the
planted effects of the synthetic cohort; pooling two sites' folders, or storing the cohort under
session folders with a spreadsheet-saved participants table, gives the same group results as one
clean folder holding everyone; the default config (sdi cannot run without time series) plans."""

import shutil

import pandas as pd
import pytest
import yaml

from conftest import run_snakemake
from sfc import paths
from sfc.simulate.connectome import simulate_connectome_cohort

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, atlas_dir):
    out = tmp_path_factory.mktemp("cohort") / "connectomes"
    return simulate_connectome_cohort(out, atlas_dir=atlas_dir, n_per_group={"TRD": 16, "nTRD": 16, "HC": 10},
                                      seed=3, weights=("count",))


def run_group_stage(tmp_path, name, dirs, participants, atlas_dir, **extra):
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump({**extra,
        "input": "connectomes", "connectomes_dirs": [str(d) for d in dirs], "participants": str(participants),
        "output_dir": str(tmp_path / name), "atlas_dir": str(atlas_dir),
        "coupling": {"methods": ["spearman", "communication"], "min_neighbours": 5, "path_transform": "inv",
                     "distance": {}},
        "classification": {"modes": ["nested"], "n_permutations": 0, "n_repeats": 1},
    }))
    result = run_snakemake("--cores", "2", "--configfile", config, workdir=tmp_path / f"work_{name}", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path / name


def test_planted_regions_come_out_of_the_group_stage(cohort, tmp_path, atlas_dir):
    out = run_group_stage(tmp_path, "one", [cohort.out_dir], cohort.participants_tsv, atlas_dir)
    sfc = pd.read_csv(paths.group_sfc(out, "BNA246", "spearman"), sep="\t")
    assert len(sfc) == 42
    stats = pd.read_csv(paths.group_stats(out, "BNA246", "spearman"), sep="\t").set_index("name")
    planted = cohort.planted["BNA246"]["trd_decoupling"]
    t = stats.loc[planted, "t_TRD_vs_nTRD"]
    # 16 vs 16 subjects: every planted region lower in TRD, most of them clearly so
    assert (t < 0).all() and t.median() < -2.5
    others = stats.drop(index=planted)
    assert (stats.loc[planted, "p_TRD_vs_nTRD"] < 0.05).mean() > (others["p_TRD_vs_nTRD"] < 0.05).mean() + 0.5


def test_pooled_sites_give_the_same_group_results_as_one_folder(cohort, tmp_path, atlas_dir):
    one = run_group_stage(tmp_path, "one", [cohort.out_dir], cohort.participants_tsv, atlas_dir)
    sites = [tmp_path / "siteA", tmp_path / "siteB"]
    for i, subject in enumerate(cohort.subjects):
        shutil.copytree(cohort.out_dir / f"sub-{subject}", sites[i % 2] / f"sub-{subject}")
    pooled = run_group_stage(tmp_path, "pooled", sites, cohort.participants_tsv, atlas_dir)
    for atlas in ("BNA246", "HOA"):
        for method in ("spearman", "communication"):
            for table in (paths.group_sfc, paths.group_stats):
                a = pd.read_csv(table(one, atlas, method), sep="\t")
                b = pd.read_csv(table(pooled, atlas, method), sep="\t")
                pd.testing.assert_frame_equal(a, b)


def test_conflicting_subject_ids_across_sites_stop_the_run(cohort, tmp_path, atlas_dir):
    sites = [tmp_path / "siteA", tmp_path / "siteB"]
    for site in sites:
        shutil.copytree(cohort.out_dir / f"sub-{cohort.subjects[0]}", site / f"sub-{cohort.subjects[0]}")
    config = tmp_path / "conflict.yaml"
    config.write_text(yaml.safe_dump({"input": "connectomes", "connectomes_dirs": [str(s) for s in sites],
                                      "participants": str(cohort.participants_tsv),
                                      "output_dir": str(tmp_path / "out")}))
    result = run_snakemake("-n", "--configfile", config, workdir=tmp_path / "work")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"sub-{cohort.subjects[0]} is also in {sites[0]}: subject IDs conflict across sites" in result.stderr


def store_under_sessions(cohort, root, later_from):
    """The cohort as sub-<s>/ses-1/... (files renamed the BIDS way); the subjects in
    ``later_from`` also get a ses-2 holding another subject's connectomes."""
    for subject in cohort.subjects:
        sessions = {"1": subject, **({"2": later_from[subject]} if subject in later_from else {})}
        for session, donor in sessions.items():
            for path in (cohort.out_dir / f"sub-{donor}").rglob("*"):
                if path.is_file():
                    rel = path.relative_to(cohort.out_dir / f"sub-{donor}")
                    target = root / f"sub-{subject}" / f"ses-{session}" / rel.parent / path.name.replace(
                        f"sub-{donor}_", f"sub-{subject}_ses-{session}_")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target)
    return root


def as_a_spreadsheet_saves_it(clean, messy):
    """BOM, CRLF, columns reversed, spaces around cells, sex written three ways."""
    table = pd.read_csv(clean, sep="\t", dtype=str, keep_default_na=False)
    spellings = {"M": ["male", "Male", " M"], "F": ["female", "Female ", "F"]}
    table["sex"] = [spellings[x][i % 3] if x in spellings else x for i, x in enumerate(table["sex"])]
    table["group"] = table["group"] + " "
    table[table.columns[::-1]].to_csv(messy, sep="\t", index=False, lineterminator="\r\n", encoding="utf-8-sig")
    return messy


def test_sessions_and_a_spreadsheet_saved_table_give_the_same_group_results(cohort, tmp_path, atlas_dir):
    extra = {"covariates": ["age", "sex"]}
    one = run_group_stage(tmp_path, "one", [cohort.out_dir], cohort.participants_tsv, atlas_dir, **extra)
    later = dict(zip(cohort.subjects[:4], cohort.subjects[-4:]))  # a later session that must not be used
    sessions = store_under_sessions(cohort, tmp_path / "sessions", later)
    messy = as_a_spreadsheet_saves_it(cohort.participants_tsv, tmp_path / "participants.tsv")
    assert b"male" in messy.read_bytes() and messy.read_bytes().startswith(b"\xef\xbb\xbf")
    other = run_group_stage(tmp_path, "sessions", [sessions], messy, atlas_dir, **extra)
    for atlas in ("BNA246", "HOA"):
        for method in ("spearman", "communication"):
            a = pd.read_csv(paths.group_sfc(one, atlas, method), sep="\t")
            b = pd.read_csv(paths.group_sfc(other, atlas, method), sep="\t")
            assert list(b["participant_id"]) == [f"{p}_ses-1" for p in a["participant_id"]]
            pd.testing.assert_frame_equal(a.drop(columns="participant_id"), b.drop(columns="participant_id"))
            pd.testing.assert_frame_equal(pd.read_csv(paths.group_stats(one, atlas, method), sep="\t"),
                                          pd.read_csv(paths.group_stats(other, atlas, method), sep="\t"))
    a = pd.read_csv(paths.classification(one), sep="\t")
    b = pd.read_csv(paths.classification(other), sep="\t")
    pd.testing.assert_frame_equal(a, b)


def test_the_default_config_plans_on_the_connectome_route(cohort, tmp_path):
    """Paths, plus the weight the folders hold (the default, sift2, is for new imaging runs)."""
    config = tmp_path / "default.yaml"
    settings = {"input": "connectomes", "connectomes_dirs": [str(cohort.out_dir)],
                "participants": str(cohort.participants_tsv), "output_dir": str(tmp_path / "out")}
    config.write_text(yaml.safe_dump(settings))
    # without the weight, every subject lacks its sift2 SC: one message at discovery, not "0 kept"
    result = run_snakemake("-n", "--configfile", config, workdir=tmp_path / "work", preset=None)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no subject can be analysed: all 42 are left out (42 x 'missing sub-*/dwi/sub-*_atlas-BNA246_" \
           "desc-sift2_sc.tsv')" in result.stderr
    config.write_text(yaml.safe_dump({**settings, "sc_weight": "count"}))
    result = run_snakemake("-n", "--configfile", config, workdir=tmp_path / "work", preset=None)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "coupling method sdi skipped" in result.stderr
    assert "desc-sdi" not in result.stdout and "desc-communication" in result.stdout
