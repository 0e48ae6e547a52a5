"""The Snakefile at parse time: lint, dry runs, and bad input stopping with one clear message."""

import json
import re
import time

import pandas as pd
import pytest
import yaml

from conftest import run_snakemake
from pathlib import Path

from sfc import paths, testing


def with_config(tmp_path, **overrides):
    """A config file with ``overrides`` on top of config/config.yaml (Snakemake merges them)."""
    path = tmp_path / f"config_{len(list(tmp_path.glob('config_*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(overrides))
    return path


def dry_run(tmp_path, **overrides):
    return run_snakemake("-n", "--configfile", with_config(tmp_path, **overrides), workdir=tmp_path / "work")


def job_counts(stdout: str) -> dict:
    """Snakemake's dry-run 'Job stats' table as {rule: count}."""
    block = stdout.split("Job stats:")[-1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)}


@pytest.fixture(scope="module")
def fake_cohort(tmp_path_factory):
    return testing.make_dataset(tmp_path_factory.mktemp("fake") / "bids", 6)


def test_lint_is_clean(tmp_path):
    result = run_snakemake("--lint", workdir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_demo_config_dry_run_plans_the_demo_cohort(tmp_path, atlas_dir):
    result = dry_run(tmp_path, bids_dir=f"{tmp_path}/demo/bids", output_dir=f"{tmp_path}/results",
                     demo={"generate": True, "preset": "demo", "truth_dir": f"{tmp_path}/demo/truth"})
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout).get("simulate_demo") == 1
    assert "the demo cohort will be generated first" in result.stderr


def test_dry_run_on_a_cohort_reports_kept_and_left_out(fake_cohort, tmp_path, atlas_dir):
    (fake_cohort / "sub-0002/dwi/sub-0002_dwi.bval").write_text("0 1000\n")
    result = dry_run(tmp_path, bids_dir=str(fake_cohort), output_dir=f"{tmp_path}/out")
    assert result.returncode == 0, result.stderr
    assert "sfc: 5 subjects kept, 1 left out (reasons in group/excluded.tsv)" in result.stderr
    counts = job_counts(result.stdout)
    assert counts["prepare_atlas"] == 2
    # the rules that map atlases run once per subject for both atlases; SC stays per atlas
    assert counts["anat_atlas"] == counts["dwi_atlas"] == counts["func_connectivity"] == 5
    assert counts["dwi_connectome"] == 10


def test_exclusions_are_written_to_excluded_tsv(tmp_path, atlas_dir):
    """Connectome route (the fake BIDS images are headers, not brains): a subject whose FC is
    missing is left out with the reason, the others are kept, nothing is written into the input."""
    from sfc.simulate.connectome import simulate_connectome_cohort

    cohort = simulate_connectome_cohort(tmp_path / "site", atlas_dir=atlas_dir, seed=1, weights=("count",),
                                        n_per_group={"TRD": 3, "nTRD": 3, "HC": 2}, atlases=("HOA",))
    missing = paths.fc_matrix(cohort.out_dir, cohort.subjects[0], None, "HOA")
    Path(missing).unlink()
    before = sorted(p for p in Path(cohort.out_dir).rglob("*"))
    out = tmp_path / "out"
    config = with_config(tmp_path, input="connectomes", connectomes_dirs=[str(cohort.out_dir)],
                         participants=str(cohort.participants_tsv), atlases=["HOA"], output_dir=str(out),
                         atlas_dir=str(atlas_dir))
    result = run_snakemake("--cores", "1", "write_excluded", out / "atlases/atlas-HOA_dseg.tsv", "--configfile",
                           config, workdir=tmp_path / "work")
    assert result.returncode == 0, result.stderr
    assert "sfc: 7 subjects kept, 1 left out" in result.stderr
    rows = (out / "group/excluded.tsv").read_text().splitlines()
    assert rows == ["participant_id\treason",
                    f"sub-{cohort.subjects[0]}\tmissing {Path(missing).relative_to(cohort.out_dir)}"]
    assert (out / "atlases/atlas-HOA_dseg.tsv").read_text().count("\n") == 111
    assert sorted(p for p in Path(cohort.out_dir).rglob("*")) == before  # input untouched


def _assert_one_clear_message(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert "sfc: configuration or input error" in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_unknown_group_label_stops_before_any_job(fake_cohort, tmp_path):
    table = tmp_path / "participants.tsv"
    table.write_text((fake_cohort / "participants.tsv").read_text().replace("\tnTRD\t", "\tMDD\t", 1))
    result = dry_run(tmp_path, bids_dir=str(fake_cohort), participants=str(table), output_dir=f"{tmp_path}/out")
    _assert_one_clear_message(result, str(table), "line 3 (sub-0002), column 'group': unknown group 'MDD'",
                              "Fix: correct the label, or add it to the config key `groups`")
    assert not (tmp_path / "out").exists()


def test_missing_configured_column_stops(fake_cohort, tmp_path):
    result = dry_run(tmp_path, bids_dir=str(fake_cohort), clinical_scales=["hamd24_pre", "madrs"],
                     output_dir=f"{tmp_path}/o")
    _assert_one_clear_message(result, "column(s) 'madrs' named in the config are missing",
                              "add the column(s) to participants.tsv")


def test_malformed_participants_stops(fake_cohort, tmp_path):
    table = tmp_path / "participants.tsv"
    lines = (fake_cohort / "participants.tsv").read_text().splitlines()
    lines[4] += "\textra"
    table.write_text("\n".join(lines) + "\n")
    result = dry_run(tmp_path, bids_dir=str(fake_cohort), participants=str(table), output_dir=f"{tmp_path}/o")
    _assert_one_clear_message(result, "malformed table: line 5 has 10 tab-separated fields, the header has 9")


def test_unknown_config_key_stops(fake_cohort, tmp_path):
    result = dry_run(tmp_path, bids_dir=str(fake_cohort), atlass=["HOA"], output_dir=f"{tmp_path}/o")
    _assert_one_clear_message(result, "config key (top level): Additional properties are not allowed ('atlass'")


def test_wrong_config_value_stops(fake_cohort, tmp_path):
    result = dry_run(tmp_path, bids_dir=str(fake_cohort), sc_weight="streamlines", output_dir=f"{tmp_path}/o")
    _assert_one_clear_message(result, "config key sc_weight: 'streamlines' is not one of")


def test_missing_bids_dir_without_demo_stops(tmp_path):
    result = dry_run(tmp_path, bids_dir=f"{tmp_path}/nope", output_dir=f"{tmp_path}/o",
                     demo={"generate": False, "preset": "demo", "truth_dir": "x"})
    _assert_one_clear_message(result, "the BIDS folder does not exist")


def test_unknown_atlas_stops_before_any_job(fake_cohort, tmp_path):
    result = dry_run(tmp_path, bids_dir=str(fake_cohort), output_dir=f"{tmp_path}/o", atlases=["NOPE"])
    _assert_one_clear_message(result, "config key atlases: unknown atlas 'NOPE'", "Fix: use BNA246 and/or HOA")


@pytest.mark.parametrize("inside", ["", "derivatives/sfc"])
def test_output_inside_the_bids_dataset_is_refused(fake_cohort, tmp_path, inside):
    before = sorted(p.relative_to(fake_cohort) for p in fake_cohort.rglob("*"))
    result = dry_run(tmp_path, bids_dir=str(fake_cohort), output_dir=str(fake_cohort / inside))
    _assert_one_clear_message(result, "output_dir is inside bids_dir", "Fix: set output_dir to a folder outside")
    assert sorted(p.relative_to(fake_cohort) for p in fake_cohort.rglob("*")) == before


def test_demo_generation_never_writes_into_a_study_folder(tmp_path):
    result = dry_run(tmp_path, bids_dir=f"{tmp_path}/my_study_bids", output_dir=f"{tmp_path}/o",
                     demo={"generate": True, "preset": "demo", "truth_dir": f"{tmp_path}/truth"})
    _assert_one_clear_message(result, "my_study_bids: the BIDS folder does not exist (demo.generate makes")
    assert not (tmp_path / "my_study_bids").exists()


def test_a_task_typo_stops_at_discovery_with_the_real_cause(tmp_path):
    cohort = testing.make_dataset(tmp_path / "bids", 6)
    result = dry_run(tmp_path, bids_dir=str(cohort), output_dir=f"{tmp_path}/o", task="rset")
    _assert_one_clear_message(result, "no subject can be analysed: all 6 are left out (6 x 'no resting-state BOLD (func/*_task-rset_bold.nii[.gz])')")


@pytest.mark.slow
def test_dry_run_of_1000_subjects(tmp_path, atlas_dir):
    """Discovery of 1000 subjects must not make the DAG slow; the time is recorded."""
    bids_dir = testing.make_dataset(tmp_path / "bids", 1000)
    start = time.perf_counter()
    result = dry_run(tmp_path, bids_dir=str(bids_dir), output_dir=f"{tmp_path}/out")
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert "sfc: 1000 subjects kept, 0 left out" in result.stderr
    counts = job_counts(result.stdout)
    record = {"subjects": 1000, "jobs": counts.get("total"), "dry_run_seconds": round(seconds, 2)}
    (tmp_path / "dryrun_1000.json").write_text(json.dumps(record))
    print(f"\ndry run, 1000 subjects: {record}")
    # Only a guard against pathological slowness (benchmarks/bench_dryrun.py compares with a
    # bare Snakefile of the same job graph): the 2-core CI VM takes ~110-140 s for 18,000 jobs.
    assert seconds < 300


def test_slurm_profile_groups_name_real_rules_and_parse(fake_cohort, tmp_path, atlas_dir):
    """The cluster profile's job grouping names rules that exist and is accepted by Snakemake
    (checked with the local executor: the SLURM plugin is kept out of this environment)."""
    from conftest import REPO

    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    groups = profile["groups"]
    rules = set(re.findall(r"^rule (\w+):", "".join(p.read_text() for p in (REPO / "workflow/rules").glob("*.smk")),
                           re.M))
    assert set(groups) <= rules and set(profile["group-components"]) == set(groups.values())
    local = tmp_path / "profile"
    local.mkdir()
    (local / "config.yaml").write_text(yaml.safe_dump({k: profile[k] for k in ("groups", "group-components",
                                                                                 "retries", "latency-wait")}))
    result = run_snakemake("-n", "--profile", local, "--cores", "2", "--configfile",
                           with_config(tmp_path, bids_dir=str(fake_cohort), output_dir=f"{tmp_path}/out"),
                           workdir=tmp_path / "work")
    assert result.returncode == 0, result.stderr[-2000:]
    assert job_counts(result.stdout)["dwi_connectome"] > 0


def _job_resources(text: str, rule: str) -> list[dict]:
    """``resources:`` of every job of ``rule`` in a dry run's job listing, as {name: int}."""
    found = []
    for body in re.findall(rf"^(?:local)?rule {rule}:\n((?:    .*\n?)*)", text, re.M):
        line = next(x for x in body.splitlines() if x.strip().startswith("resources:"))
        found.append({k: int(v) for k, v in re.findall(r"(\w+)=(\d+)(?=,|$)", line)})
    return found


def test_default_config_plans_real_data_tractography_sized_by_streamlines(fake_cohort, tmp_path, atlas_dir):
    """A study config with only paths gets the real-data preset (config/config.yaml, not the demo's):
    dynamic seeding, millions of streamlines in chunks, SIFT2 weights analysed; and tractography,
    SIFT2 and the connectomes ask for more time (SIFT2 also memory) when there are more streamlines."""
    plans = {}
    for streamlines in (None, 100_000_000):
        overrides = {"bids_dir": str(fake_cohort), "output_dir": f"{tmp_path}/out"}
        if streamlines:
            overrides["dwi"] = {"tracking": {"streamlines": streamlines}}
        result = run_snakemake("-n", "--configfile", with_config(tmp_path, **overrides), workdir=tmp_path / "work",
                               preset=None)
        assert result.returncode == 0, result.stderr[-3000:]
        plans[streamlines] = result
    default = plans[None]
    plan_line = next(x for x in default.stderr.splitlines() if x.startswith("sfc: tractography:"))
    count = int(re.search(r"([\d,]+) streamlines", plan_line).group(1).replace(",", ""))
    assert count >= 1_000_000, plan_line
    assert re.search(r"iFOD2, (dynamic|gmwmi) seeding", plan_line), plan_line
    assert "single-threaded chunk(s)" in plan_line and "analysed: sift2" in plan_line, plan_line
    counts = job_counts(default.stdout)
    # every tractogram gets SIFT2 weights (the six fake subjects minus none left out)
    assert counts["dwi_sift2"] == counts["dwi_tractography"] >= 5
    for rule, keys in (("dwi_tractography", ("runtime",)), ("dwi_sift2", ("runtime", "mem_mb")),
                       ("dwi_connectome", ("runtime",))):
        before, after = _job_resources(default.stdout, rule)[0], _job_resources(plans[100_000_000].stdout, rule)[0]
        for key in keys:
            assert after[key] > before[key], (rule, key, before, after)


def test_scales_measured_per_session_reach_the_group_fits(tmp_path, atlas_dir):
    """A dataset with sessions whose sub-<s>_sessions.tsv give a clinical scale (and age at the
    scan): the group rules read participants.tsv with each participant's values at the analysed
    session (the first), built by rule session_participants."""
    bids = testing.make_dataset(tmp_path / "bids", 6, sessions=("1", "2"))
    for i in range(6):
        subject = f"{i + 1:04d}"
        (bids / f"sub-{subject}" / f"sub-{subject}_sessions.tsv").write_text(
            f"session_id\tmadrs\tage\r\nses-1\t{20 + i}\t{50 + i}\r\nses-2\t{5 + i}\tn/a\r\n")
    before = sorted((p, p.stat().st_mtime_ns) for p in bids.rglob("*"))
    config = dict(bids_dir=str(bids), output_dir=f"{tmp_path}/out", clinical_scales=["madrs"])
    planned = dry_run(tmp_path, **config)
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert job_counts(planned.stdout)["session_participants"] == 1
    target = paths.session_participants(f"{tmp_path}/out")
    built = run_snakemake(target, "--cores", "1", "--configfile", with_config(tmp_path, **config),
                          workdir=tmp_path / "work")
    assert built.returncode == 0, built.stderr[-3000:]
    table = pd.read_csv(target, sep="\t", index_col="participant_id")
    assert table["madrs"].tolist() == [20.0 + i for i in range(6)]          # ses-1, the first session
    assert table["age"].tolist() == [50.0 + i for i in range(6)]            # the age at that scan
    assert set(table["sex"]) == {"M", "F"}                                   # participant-level columns kept
    assert sorted((p, p.stat().st_mtime_ns) for p in bids.rglob("*")) == before   # the dataset untouched
    # without sessions the group rules read participants.tsv itself: no extra job
    plain = dry_run(tmp_path, bids_dir=str(testing.make_dataset(tmp_path / "plain", 3)), output_dir=f"{tmp_path}/out2")
    assert plain.returncode == 0 and "session_participants" not in plain.stdout
