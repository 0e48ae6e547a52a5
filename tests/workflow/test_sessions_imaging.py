"""A BIDS dataset with sessions through the imaging route (#17): one generated head stored as
``sub-001/ses-1`` and, byte for byte the same, ``sub-001/ses-2``.

- ``sessions: first`` (the default) plans ses-1 only and says how many sessions it left out.
- ``sessions: all`` runs both sessions through every per-subject rule, coupling and the group
  SFC tables (units ``sub-001_ses-1`` and ``sub-001_ses-2``), and leaves out the group fits,
  saying why (two sessions of one person are not two independent subjects).
- The two sessions hold the same bytes and the seeds come from the config, so their SC and FC
  must be byte-identical: the imaging route is deterministic (the k-means 5TT, whose tissue
  probabilities feed the WM/CSF confounds, was not).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ONE_SUBJECT_CONFIG, generate_one_subject, run_snakemake
from sfc import paths

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(os.environ.get("SFC_SKIP_IMAGING_TESTS")),
                       reason="SFC_SKIP_IMAGING_TESTS is set (imaging-route workflow tests are left out)"),
]

ATLASES = ("BNA246", "HOA")
CONFIG = {
    **ONE_SUBJECT_CONFIG,
    # 100 volumes (3.3 min): a shorter BOLD than the demo's keeps the run short
    "func": {"min_kept_minutes": 3.0},
}


def as_sessions(bids: Path, subject: str, sessions) -> None:
    """Move ``sub-<subject>``'s files into ``ses-<t>`` folders (renamed the BIDS way), one copy each."""
    src = bids / f"sub-{subject}"
    files = [p for p in src.rglob("*") if p.is_file()]
    for session in sessions:
        for path in files:
            rel = path.relative_to(src)
            target = src / f"ses-{session}" / rel.parent / rel.name.replace(
                f"sub-{subject}_", f"sub-{subject}_ses-{session}_")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    for path in files:
        path.unlink()
    for folder in ("anat", "dwi", "func"):
        shutil.rmtree(src / folder, ignore_errors=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory, atlas_dir):
    work = tmp_path_factory.mktemp("sessions") / "project"
    work.mkdir()
    generate_one_subject(work, atlas_dir)
    as_sessions(work / "bids", "001", ("1", "2"))
    (work / "first.yaml").write_text(yaml.safe_dump(CONFIG))
    (work / "all.yaml").write_text(yaml.safe_dump({**CONFIG, "sessions": "all"}))
    return work


def test_first_session_is_planned_and_the_other_counted(project):
    result = run_snakemake("-n", "--configfile", project / "first.yaml", workdir=project)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 subject-sessions kept, 0 left out; 1 further session(s) not analysed (sessions: first" \
        in result.stderr
    assert "session=1" in result.stdout and "session=2" not in result.stdout


@pytest.fixture(scope="module")
def all_sessions(project):
    result = run_snakemake("--cores", "2", "--configfile", project / "all.yaml", workdir=project, timeout=2400)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return project / "results", result


def test_every_session_runs_the_imaging_route_to_the_group_sfc_tables(all_sessions):
    out, result = all_sessions
    assert "need one unit per participant and are not built in this run" in result.stderr
    for atlas in ATLASES:
        for method in ("spearman", "communication", "sdi"):
            table = pd.read_csv(paths.group_sfc(out, atlas, method), sep="\t")
            assert list(table["participant_id"]) == ["sub-001_ses-1", "sub-001_ses-2"]
            assert table.drop(columns="participant_id").notna().to_numpy().mean() > 0.9
    assert not Path(paths.group_stats(out, ATLASES[0], "spearman")).exists()
    assert not Path(paths.report(out)).exists()


def test_the_same_data_give_byte_identical_sc_and_fc(all_sessions):
    out, _ = all_sessions
    for atlas in ATLASES:
        for path in (lambda t: paths.sc_matrix(out, "001", t, atlas, "count"),
                     lambda t: paths.fc_matrix(out, "001", t, atlas)):
            assert Path(path("1")).read_bytes() == Path(path("2")).read_bytes(), path("2")
