"""The group stage on its own, from connectome folders (`input: connectomes`): it finds the
planted effects of the synthetic cohort, and pooling two sites' folders gives the same group
results as one folder holding everyone."""

import shutil

import numpy as np
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


def run_group_stage(tmp_path, name, dirs, participants, atlas_dir):
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump({
        "input": "connectomes", "connectomes_dirs": [str(d) for d in dirs], "participants": str(participants),
        "output_dir": str(tmp_path / name), "atlas_dir": str(atlas_dir),
        "coupling": {"methods": ["spearman", "communication"], "min_neighbours": 5, "path_transform": "inv",
                     "distance": {}, "sdi_log2": False},
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
