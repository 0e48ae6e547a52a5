"""sfc.mrtrix.run: argument lists, logging of command and version, threads, loud failures."""

from __future__ import annotations

import sys

import nibabel as nib
import numpy as np
import pytest

from sfc import mrtrix

needs_mrtrix = pytest.mark.skipif(not mrtrix.have("mrconvert"), reason="MRtrix3 (mrconvert) not on PATH")


def _image(path):
    nib.save(nib.Nifti1Image(np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.eye(4)), path)
    return path


def test_non_mrtrix_tool_gets_no_mrtrix_options_and_its_stdout_is_returned():
    out = mrtrix.run([sys.executable, "-c", "import sys; print(sys.argv[1:])", "a"], nthreads=3)
    assert out == ["['a']"]  # no -nthreads / -force appended to a non-MRtrix tool


def test_failure_names_the_command_and_quotes_only_the_last_stderr_lines():
    code = "import sys\nfor i in range(50): sys.stderr.write(f'line {i}\\n')\nsys.exit(3)"
    with pytest.raises(mrtrix.CommandError) as exc:
        mrtrix.run([sys.executable, "-c", code])
    err = exc.value
    assert err.returncode == 3
    assert err.stderr_tail == [f"line {i}" for i in range(50 - mrtrix.TAIL_LINES, 50)]
    msg = str(err)
    assert "command failed:" in msg and sys.executable in msg and "exited with status 3" in msg
    assert "line 49" in msg and "line 29" not in msg


def test_stderr_progress_lines_keep_their_final_state_in_the_log(tmp_path):
    code = "import sys; sys.stderr.write('step [ 10%]\\rstep [ 50%]\\rstep [100%]\\n')"
    log = tmp_path / "rule.log"
    mrtrix.run([sys.executable, "-c", code], log=log)
    lines = log.read_text().splitlines()
    assert lines[0].startswith("$ ") and lines[1].startswith("# version: Python 3")
    assert lines[2:] == ["step [100%]", lines[3]] and lines[3].startswith("# exit 0 after")


def test_terminal_colour_codes_are_removed_from_log_and_error(tmp_path):
    code = "import sys; sys.stderr.write('\\x1b[00;31m[WARNING] careful\\x1b[0m\\n'); sys.exit(1)"
    with pytest.raises(mrtrix.CommandError) as exc:
        mrtrix.run([sys.executable, "-c", code], log=tmp_path / "l.log")
    assert exc.value.stderr_tail == ["[WARNING] careful"]
    assert "[WARNING] careful" in (tmp_path / "l.log").read_text().splitlines()


def test_missing_tool_is_a_command_error_that_says_so(tmp_path):
    with pytest.raises(mrtrix.CommandError, match="'sfc_no_such_tool' was not found on PATH"):
        mrtrix.run(["sfc_no_such_tool", "x"], log=tmp_path / "l.log")
    assert "not found on PATH" in (tmp_path / "l.log").read_text()


def test_seed_and_threads_reach_the_tool_environment():
    code = "import os; print(os.environ['MRTRIX_RNG_SEED'], os.environ['OMP_NUM_THREADS'])"
    assert mrtrix.run([sys.executable, "-c", code], seed=17, nthreads=2) == ["17 2"]


@needs_mrtrix
def test_mrtrix_command_gets_nthreads_force_and_logs_command_line_and_version(tmp_path):
    img = _image(tmp_path / "in.nii")
    log = tmp_path / "rule.log"
    out = mrtrix.run(["mrinfo", img, "-size"], nthreads=2, log=log, force=True)
    assert out == ["2 3 4"]
    lines = log.read_text().splitlines()
    assert lines[0] == f"$ mrinfo {img} -size -nthreads 2 -force"
    assert lines[1].startswith("# version: == mrinfo 3.")


@needs_mrtrix
def test_arguments_are_passed_without_a_shell(tmp_path):
    # a file name with a space, a semicolon and a dollar sign would break a shell string
    img = _image(tmp_path / "odd name; $HOME.nii")
    out = tmp_path / "out file.mif"
    mrtrix.run(["mrconvert", img, out])
    assert out.exists()


@needs_mrtrix
def test_mrtrix_failure_quotes_mrtrix_error_message(tmp_path):
    missing = tmp_path / "absent.nii"
    with pytest.raises(mrtrix.CommandError) as exc:
        mrtrix.run(["mrinfo", missing], log=tmp_path / "l.log")
    assert str(missing) in str(exc.value)
    assert any("absent.nii" in line for line in exc.value.stderr_tail)  # MRtrix3's own error line
    assert exc.value.returncode not in (0, None)


@needs_mrtrix
def test_version_reads_the_tools_banner():
    assert mrtrix.version("mrconvert").startswith("== mrconvert 3.")
    assert mrtrix.version("sfc_no_such_tool") == "not found"
    assert mrtrix.is_mrtrix("dwi2tensor") and mrtrix.is_mrtrix("dwi2response")
    assert not mrtrix.is_mrtrix(sys.executable)
