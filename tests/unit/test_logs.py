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
