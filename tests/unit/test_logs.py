"""Rule scripts end on bad input with the one message, in the log and on stderr, never a traceback."""

import subprocess
import sys
import textwrap

from conftest import REPO


def run_script(tmp_path, body: str) -> subprocess.CompletedProcess:
    script = tmp_path / "rule_script.py"
    script.write_text(textwrap.dedent(f"""\
        import sys
        sys.path.insert(0, {str(REPO / "workflow" / "scripts")!r})
        from sfc.errors import InputError
        from sfc.logs import script_logger
        log = script_logger({str(tmp_path / "rule.log")!r})
        """) + textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True)


def test_input_error_ends_the_script_with_its_message_and_no_traceback(tmp_path):
    result = run_script(tmp_path, """\
        raise InputError("sub-01_dwi.nii.gz", "volume 3 holds NaN values", "replace the series")
        """)
    message = "sub-01_dwi.nii.gz: volume 3 holds NaN values. Fix: replace the series."
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert message in (tmp_path / "rule.log").read_text()


def test_unexpected_error_keeps_its_traceback_for_the_bug_report(tmp_path):
    result = run_script(tmp_path, """\
        raise ZeroDivisionError("a bug")
        """)
    assert result.returncode == 1 and "Traceback" in result.stderr
    assert "ZeroDivisionError" in (tmp_path / "rule.log").read_text()


# --- a per-subject job's bad input is recorded, so the next run can go on without it ---------------

JOB = """\
    import types
    from sfc.errors import SetupError
    job = types.SimpleNamespace(
        wildcards={{"subject": "07", "session": None}}, rule="dwi_preprocess",
        config={{"output_dir": {out!r}}}, input=[{dwi!r}, {bval!r}])
    log = script_logger({log!r}, job=job)
    """


def run_job(tmp_path, body: str) -> subprocess.CompletedProcess:
    dwi, bval = tmp_path / "sub-07_dwi.nii.gz", tmp_path / "sub-07_dwi.bval"
    for f in (dwi, bval):
        if not f.exists():
            f.write_bytes(b"data")
    head = JOB.format(out=str(tmp_path / "results"), dwi=str(dwi), bval=str(bval), log=str(tmp_path / "job.log"))
    return run_script(tmp_path, head + textwrap.dedent(body))


def records(tmp_path):
    from sfc import failures
    return failures.current(tmp_path / "results", [("07", None), ("08", None)])


def test_input_error_of_a_subject_job_is_recorded_until_its_input_changes(tmp_path):
    result = run_job(tmp_path, """\
        raise InputError("sub-07_dwi.nii.gz", "volume 5 holds NaN values", "replace the series")
        """)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    found = records(tmp_path)
    assert list(found) == [("07", None)]
    (record,) = found[("07", None)]
    assert record["rule"] == "dwi_preprocess" and "volume 5 holds NaN values" in record["message"]
    assert record["record"].endswith("logs/failed/sub-07_rule-dwi_preprocess.json")
    from sfc import failures
    assert "dwi_preprocess" in failures.reason(found[("07", None)]) and "NaN" in failures.reason(found[("07", None)])
    # a corrected input (same name, new contents) retries the unit
    (tmp_path / "sub-07_dwi.nii.gz").write_bytes(b"fixed data")
    assert records(tmp_path) == {}


def test_a_retry_that_succeeds_removes_the_record(tmp_path):
    run_job(tmp_path, 'raise InputError("sub-07_dwi.nii.gz", "bad", "fix it")\n')
    assert records(tmp_path)
    assert run_job(tmp_path, 'log.info("fine this time")\n').returncode == 0
    assert records(tmp_path) == {}


def test_setup_errors_and_crashes_are_not_the_subjects_failure(tmp_path):
    setup = run_job(tmp_path, 'raise SetupError(None, "eddy is not on PATH", "install FSL")\n')
    assert setup.returncode == 1 and "eddy is not on PATH" in setup.stderr
    crash = run_job(tmp_path, 'raise MemoryError("killed")\n')
    assert crash.returncode == 1
    assert records(tmp_path) == {}
