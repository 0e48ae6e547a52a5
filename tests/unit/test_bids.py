"""sfc.bids: discovery keeps complete subjects and leaves the others out with a reason;
a broken participants table is one clear InputError."""

import json
from pathlib import Path

import pytest

from sfc import bids, testing
from sfc.participants import read_participants
from sfc.errors import InputError

COLUMNS = ["age", "sex", "site", "education_years", "hamd24_pre", "bsi"]
GROUPS = ["TRD", "nTRD", "HC"]


def discover(bids_dir, **kwargs):
    return bids.discover(bids_dir, groups=GROUPS, columns=COLUMNS, **kwargs)


@pytest.fixture
def cohort(tmp_path):
    return testing.make_dataset(tmp_path / "bids", 6)


def reasons(result):
    return {row["participant_id"]: row["reason"] for row in result.excluded}


def test_complete_cohort_is_kept_with_all_modalities(cohort):
    result = discover(cohort)
    assert len(result.kept) == 6 and not result.excluded
    scan = result.kept[("0001", None)]
    assert scan.t1w.endswith("sub-0001_T1w.nii.gz")
    assert scan.bval.endswith("sub-0001_dwi.bval") and scan.bvec.endswith("sub-0001_dwi.bvec")
    assert [run.repetition_time for run in scan.bold] == [2.0]
    assert result.summary() == "6 subjects kept, 0 left out"


def test_missing_modality_is_excluded_with_reason(cohort):
    for path in (cohort / "sub-0002" / "dwi").iterdir():
        path.unlink()
    (cohort / "sub-0003" / "anat" / "sub-0003_T1w.nii.gz").unlink()
    (cohort / "sub-0004" / "func" / "sub-0004_task-rest_bold.nii.gz").unlink()
    result = discover(cohort)
    assert set(result.kept) == {("0001", None), ("0005", None), ("0006", None)}
    why = reasons(result)
    assert "no diffusion image" in why["sub-0002"]
    assert "no T1w image" in why["sub-0003"]
    assert "no resting-state BOLD" in why["sub-0004"]


def test_bval_count_mismatch_is_excluded(cohort):
    (cohort / "sub-0002/dwi/sub-0002_dwi.bval").write_text("0 1000 1000 1000 1000 1000\n")  # 6, image has 7
    result = discover(cohort)
    assert ("0002", None) not in result.kept
    assert reasons(result)["sub-0002"] == "sub-0002_dwi.nii.gz has 7 volumes but its .bval has 6 values"


def test_bvec_count_mismatch_is_excluded(cohort):
    (cohort / "sub-0005/dwi/sub-0005_dwi.bvec").write_text("0 1 0\n0 0 1\n0 0 0\n")
    assert "its .bvec is not 3 rows of 7 values" in reasons(discover(cohort))["sub-0005"]


def test_missing_bval_file_is_excluded(cohort):
    (cohort / "sub-0006/dwi/sub-0006_dwi.bval").unlink()
    assert reasons(discover(cohort))["sub-0006"] == "sub-0006_dwi.nii.gz has no .bval file"


def test_unreadable_dwi_is_excluded_not_a_crash(cohort):
    (cohort / "sub-0001/dwi/sub-0001_dwi.nii.gz").write_bytes(b"\x1f\x8b truncated")
    assert "cannot be read as NIfTI" in reasons(discover(cohort))["sub-0001"]


def test_broken_scans_are_excluded_with_what_is_wrong(cohort):
    import gzip
    import os

    import nibabel as nib
    import numpy as np

    anat = cohort / "sub-0001/anat/sub-0001_T1w.nii.gz"
    anat.unlink()
    os.symlink("/nowhere/T1w.nii.gz", anat)                                # dangling link
    (cohort / "sub-0002/anat/sub-0002_T1w.nii.gz").write_bytes(b"")       # zero bytes
    big = cohort / "sub-0003/anat/sub-0003_T1w.nii.gz"                    # an interrupted copy
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((40, 40, 40)).astype(np.float32), np.eye(4)), big)
    big.write_bytes(big.read_bytes()[: big.stat().st_size // 2])
    dwi = cohort / "sub-0004/dwi/sub-0004_dwi.nii.gz"                     # affine scaled 10x
    img = nib.load(dwi)
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine @ np.diag([10, 10, 10, 1])), dwi)
    bold = cohort / "sub-0005/func/sub-0005_task-rest_bold.nii.gz"       # two gzip members: fine
    data = gzip.decompress(bold.read_bytes())
    bold.write_bytes(gzip.compress(data[:200]) + gzip.compress(data[200:]))
    got = reasons(discover(cohort))
    assert got["sub-0001"] == "sub-0001_T1w.nii.gz is a symbolic link to /nowhere/T1w.nii.gz, which does not exist"
    assert got["sub-0002"] == "sub-0002_T1w.nii.gz is empty (0 bytes)"
    assert got["sub-0003"].startswith("sub-0003_T1w.nii.gz is truncated (its header promises")
    assert got["sub-0004"] == "sub-0004_dwi.nii.gz has voxels of 20 x 20 x 20 mm, which no brain scan has " \
                              "(is its affine scaled?)"
    assert "sub-0005" not in got and set(got) == {"sub-0001", "sub-0002", "sub-0003", "sub-0004"}


def test_several_t1w_runs_use_the_first_and_say_so(cohort):
    import shutil

    anat = cohort / "sub-0002/anat"
    shutil.move(anat / "sub-0002_T1w.nii.gz", anat / "sub-0002_run-2_T1w.nii.gz")
    shutil.copy(anat / "sub-0002_run-2_T1w.nii.gz", anat / "sub-0002_run-10_T1w.nii.gz")
    result = discover(cohort)
    assert result.kept[("0002", None)].t1w.endswith("sub-0002_run-2_T1w.nii.gz")
    assert result.notes == ["sub-0002: 2 T1w images (sub-0002_run-2_T1w.nii.gz, sub-0002_run-10_T1w.nii.gz); "
                            "using sub-0002_run-2_T1w.nii.gz (the first run; keep one image per unit to choose "
                            "another)"]


def test_missing_repetition_time_is_excluded(cohort):
    (cohort / "sub-0003/func/sub-0003_task-rest_bold.json").write_text(json.dumps({"TaskName": "rest"}))
    assert reasons(discover(cohort))["sub-0003"] == \
        "sub-0003_task-rest_bold.nii.gz has no RepetitionTime (in seconds) in its JSON sidecar"


def test_repetition_time_in_milliseconds_is_named_at_discovery(cohort):
    (cohort / "sub-0003/func/sub-0003_task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 2000}))
    assert reasons(discover(cohort))["sub-0003"] == (
        "sub-0003_task-rest_bold.nii.gz has RepetitionTime 2000, which looks like milliseconds (BIDS wants "
        "seconds: 2) in its JSON sidecar")


def test_repetition_time_is_inherited_from_top_level_sidecar(cohort):
    (cohort / "sub-0003/func/sub-0003_task-rest_bold.json").unlink()
    (cohort / "task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 0.8}))
    assert discover(cohort).kept[("0003", None)].bold[0].repetition_time == 0.8


def test_subject_absent_from_participants_is_excluded(cohort):
    testing.make_subject(cohort, "0099")
    result = discover(cohort)
    assert reasons(result)["sub-0099"] == "not listed in participants.tsv"
    assert len(result.kept) == 6


def test_participant_without_folder_is_listed(cohort):
    rows = [testing.participant_row(i, f"{i + 1:04d}") for i in range(7)]
    testing.write_participants(cohort, rows)
    assert reasons(discover(cohort))["sub-0007"] == "listed in participants.tsv but has no folder in bids_dir"


def test_sessions_are_discovered_as_units(tmp_path):
    root = tmp_path / "bids"
    testing.make_dataset(root, 2, sessions=("1", "2"))
    result = discover(root, sessions="all")
    assert result.has_sessions
    assert sorted(result.kept) == [("0001", "1"), ("0001", "2"), ("0002", "1"), ("0002", "2")]
    assert result.kept[("0002", "2")].dwi.endswith("sub-0002/ses-2/dwi/sub-0002_ses-2_dwi.nii.gz")
    assert result.repeated_participants == ["sub-0001", "sub-0002"]


def test_first_session_by_label_value_then_by_acq_time(tmp_path):
    root = tmp_path / "bids"
    testing.make_dataset(root, 2, sessions=("2", "10"))
    result = discover(root)                                 # default: first
    assert sorted(result.kept) == [("0001", "2"), ("0002", "2")]       # 2 before 10, not "10" < "2"
    assert result.not_selected == [("sub-0001", "10"), ("sub-0002", "10")]
    assert result.repeated_participants == [] and not result.excluded
    assert "2 further session(s) not analysed (sessions: first" in result.summary()
    # sessions.tsv acq_time decides where every session has one
    (root / "sub-0002" / "sub-0002_sessions.tsv").write_text(
        "session_id\tacq_time\r\nses-2\t2021-05-01T10:00:00\r\nses-10\t2020-01-03T09:00:00\r\n")
    assert sorted(discover(root).kept) == [("0001", "2"), ("0002", "10")]


def test_session_label_keeps_that_session_and_names_who_lacks_it(tmp_path):
    root = tmp_path / "bids"
    testing.make_dataset(root, 2, sessions=("1",))
    testing.make_subject(root, "0002", "2")
    result = discover(root, sessions="2")
    assert sorted(result.kept) == [("0002", "2")]
    assert reasons(result)["sub-0001"].startswith("no ses-2 folder (config sessions: 2); has ses-1")
    assert result.not_selected == [("sub-0002", "1")]


def test_mixed_session_layout_is_one_clear_error(tmp_path):
    root = tmp_path / "bids"
    testing.make_dataset(root, 2, sessions=("1",))
    testing.make_subject(root, "0003")
    testing.write_participants(root, [testing.participant_row(i, f"{i + 1:04d}") for i in range(3)])
    with pytest.raises(InputError, match="have no ses-<label> folder"):
        discover(root)


def test_derivative_routes_do_not_require_the_replaced_modality(cohort):
    for path in (cohort / "sub-0002" / "dwi").iterdir():
        path.unlink()
    assert ("0002", None) in discover(cohort, need=("t1w", "bold")).kept


def test_exclusion_table_has_interface_columns(cohort):
    (cohort / "sub-0002/dwi/sub-0002_dwi.bval").unlink()
    table = discover(cohort).excluded_table()
    assert list(table.columns) == ["participant_id", "reason"]
    assert table.iloc[0].participant_id == "sub-0002"


def test_missing_bids_dir_is_one_error(tmp_path):
    with pytest.raises(InputError, match="the BIDS folder does not exist"):
        bids.discover(tmp_path / "nowhere")


# --- connectome-level input -----------------------------------------------------------------

def _connectome_site(root: Path, subjects, sessions=(None,)):
    from sfc import io, paths
    import numpy as np
    for s in subjects:
        for t in sessions:
            io.write_matrix(paths.sc_matrix(root, s, t, "HOA", "count"), np.zeros((3, 3)))
            io.write_matrix(paths.fc_matrix(root, s, t, "HOA"), np.eye(3))
    return root


def _discover_connectomes(dirs, participants, **kwargs):
    from sfc import paths
    return bids.discover_connectomes(dirs, participants,
                                     lambda d, s, t, a: paths.sc_matrix(d, s, t, a, "count"),
                                     lambda d, s, t, a: paths.fc_matrix(d, s, t, a), ["HOA"], **kwargs)


def test_connectome_folders_with_sessions_are_found(tmp_path):
    a = _connectome_site(tmp_path / "siteA", ["A1", "A2"], sessions=("1", "2"))
    rows = [testing.participant_row(i, s) for i, s in enumerate(["A1", "A2"])]
    table = read_participants(testing.write_participants(tmp_path, rows), "group", GROUPS)
    result = _discover_connectomes([a], table)
    assert sorted(result.kept) == [("A1", "1"), ("A2", "1")] and result.has_sessions
    assert len(result.not_selected) == 2
    assert sorted(_discover_connectomes([a], table, sessions="all").kept) == [
        ("A1", "1"), ("A1", "2"), ("A2", "1"), ("A2", "2")]


def test_connectome_folders_are_pooled(tmp_path):
    a = _connectome_site(tmp_path / "siteA", ["A1", "A2"])
    b = _connectome_site(tmp_path / "siteB", ["B1"])
    rows = [testing.participant_row(i, s) for i, s in enumerate(["A1", "A2", "B1"])]
    table = read_participants(testing.write_participants(tmp_path, rows), "group", GROUPS)
    result = _discover_connectomes([a, b], table)
    assert {k[0]: v.source_dir for k, v in result.kept.items()} == {"A1": str(a), "A2": str(a), "B1": str(b)}


def test_conflicting_subject_ids_across_sites_are_an_error(tmp_path):
    a = _connectome_site(tmp_path / "siteA", ["01"])
    b = _connectome_site(tmp_path / "siteB", ["01"])
    table = read_participants(testing.write_participants(tmp_path, [testing.participant_row(0, "01")]),
                                   "group", GROUPS)
    with pytest.raises(InputError, match="sub-01 is also in .*siteA: subject IDs conflict across sites"):
        _discover_connectomes([a, b], table)


def test_configured_columns_may_come_from_sessions_tables(tmp_path):
    root = tmp_path / "bids"
    testing.make_dataset(root, 2, sessions=("1", "2"))
    (root / "sub-0001" / "sub-0001_sessions.tsv").write_text("session_id\tmadrs\nses-1\t20\nses-2\t8\n")
    result = bids.discover(root, groups=GROUPS, columns=["age", "madrs"])
    assert result.session_columns == ["madrs"] and sorted(result.kept) == [("0001", "1"), ("0002", "1")]
    # a bad cell in an analysed unit's sessions.tsv stops discovery, before any job
    (root / "sub-0001" / "sub-0001_sessions.tsv").write_text("session_id\tmadrs\tsex\nses-1\t20\tx\n")
    with pytest.raises(InputError, match="sub-0001_sessions.tsv: line 2"):
        bids.discover(root, groups=GROUPS, columns=["age", "madrs"])
