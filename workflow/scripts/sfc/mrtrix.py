"""One door for MRtrix3 (and any other command-line tool).

:func:`run` builds the argument list (never a shell string), logs the exact
command line and the tool's version, streams the tool's stderr into the rule's
log while keeping its last lines, sets ``-nthreads`` for MRtrix3 commands and
raises :class:`CommandError` naming the command and those last lines when the
tool fails. MRtrix3's own Python scripts do the same through
``mrtrix3.run.command``.

References
----------
Tournier J-D, Smith R, Raffelt D, et al. (2019) MRtrix3: A fast, flexible and
open software framework for medical image processing and visualisation.
NeuroImage 202:116137.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path

logger = logging.getLogger("sfc.mrtrix")

#: Commands of MRtrix3's Python layer (``5ttgen``, ``dwi2response``, ...); they
#: take ``-nthreads`` too, and report their version the same way.
MRTRIX_SCRIPTS = {
    "5ttgen", "dwi2mask", "dwi2response", "dwibiascorrect", "dwicat",
    "dwifslpreproc", "dwigradcheck", "dwinormalise", "dwishellmath",
    "labelsgmfix", "mrtrix_cleanup", "population_template", "responsemean",
}

#: Terminal colour codes (MRtrix3 colours its warnings), removed from the log.
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

#: Number of stderr lines quoted in a :class:`CommandError`.
TAIL_LINES = 20


class CommandError(RuntimeError):
    """A command-line tool exited with an error (or could not be started).

    Attributes
    ----------
    command : list of str
        The argument list that was run.
    returncode : int or None
        The exit status (None when the tool could not be started).
    stderr_tail : list of str
        The last lines the tool wrote to stderr.
    """

    def __init__(self, command, returncode, stderr_tail, problem=None):
        self.command = [str(c) for c in command]
        self.returncode = returncode
        self.stderr_tail = list(stderr_tail)
        problem = problem or f"exited with status {returncode}"
        tail = "\n".join("    " + line for line in self.stderr_tail) or "    (no output on stderr)"
        super().__init__(f"command failed: {shlex.join(self.command)}\n  {problem}; last lines of stderr:\n{tail}")


def is_mrtrix(tool: str) -> bool:
    """True when ``tool`` is an MRtrix3 command (binary next to ``mrconvert`` or a known script)."""
    name = Path(tool).name
    if name in MRTRIX_SCRIPTS:
        return True
    found, mrconvert = shutil.which(tool), shutil.which("mrconvert")
    return bool(found and mrconvert and Path(found).resolve().parent == Path(mrconvert).resolve().parent
                and not name.startswith("python"))


def have(tool: str) -> bool:
    """True when ``tool`` is on PATH (e.g. ``have("eddy")`` before ``dwifslpreproc``)."""
    return shutil.which(tool) is not None


@functools.lru_cache(maxsize=None)
def version(tool: str) -> str:
    """First line of ``<tool> -version`` (MRtrix3: ``== mrconvert 3.0.3 ==``), or ``"unknown"``."""
    exe = shutil.which(tool)
    if exe is None:
        return "not found"
    try:
        flag = "-version" if is_mrtrix(tool) else "--version"
        res = subprocess.run([exe, flag], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    for line in (res.stdout + "\n" + res.stderr).splitlines():
        line = line.strip()
        if line:
            return line
    return "unknown"


def _open_log(log):
    """Return (stream, close?) for ``log``: None -> None; path -> opened for append; stream -> itself."""
    if log is None:
        return None, False
    if hasattr(log, "write"):
        return log, False
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    return open(log, "a", encoding="utf-8"), True


def run(command, *, nthreads: int | None = 1, log=None, env: dict | None = None, cwd=None,
        force: bool = False, quiet: bool = False, seed: int | None = None) -> list[str]:
    """Run one command-line tool and fail loudly.

    Parameters
    ----------
    command : sequence
        The tool and its arguments, e.g. ``["dwi2tensor", dwi, tensor, "-mask", mask]``.
        Items are converted with :func:`os.fspath` / :class:`str`; no shell is involved.
    nthreads : int or None
        For MRtrix3 commands, appended as ``-nthreads N`` (None: leave the tool's default).
        Also exported as ``OMP_NUM_THREADS`` / ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``.
    log : path, file object or None
        Where the command line, the tool's version and its stderr go (appended).
        Everything is also sent to the ``sfc.mrtrix`` logger.
    env : dict, optional
        Extra environment variables.
    cwd : path, optional
        Working directory.
    force : bool
        For MRtrix3 commands, append ``-force`` (overwrite existing outputs). Off by default:
        Snakemake removes a job's outputs before running it, and an unexpected existing
        output is better reported than silently replaced.
    quiet : bool
        For MRtrix3 commands, append ``-quiet`` (no progress bars in the log).
    seed : int, optional
        Exported as ``MRTRIX_RNG_SEED`` so that MRtrix3's random steps (``tckgen`` seeding)
        are reproducible (with ``nthreads`` 0 or 1).

    Returns
    -------
    list of str
        The lines the tool wrote to stdout.

    Raises
    ------
    CommandError
        The tool is not on PATH or exited with a non-zero status; the message names the
        command and quotes the last lines of its stderr.
    """
    cmd = [os.fspath(c) if isinstance(c, os.PathLike) else str(c) for c in command]
    if not cmd:
        raise ValueError("empty command")
    tool = cmd[0]
    mrtrix = is_mrtrix(tool)
    if mrtrix:
        if nthreads is not None and "-nthreads" not in cmd:
            cmd += ["-nthreads", str(int(nthreads))]
        if force and "-force" not in cmd:
            cmd.append("-force")
        if quiet and "-quiet" not in cmd:
            cmd.append("-quiet")
    run_env = dict(os.environ)
    if nthreads is not None:
        run_env["OMP_NUM_THREADS"] = str(max(int(nthreads), 1))
        run_env["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(max(int(nthreads), 1))
    if seed is not None:
        run_env["MRTRIX_RNG_SEED"] = str(int(seed))
    if env:
        run_env.update({k: str(v) for k, v in env.items()})

    stream, close = _open_log(log)

    def emit(line: str) -> None:
        # to the given log; without one, to the sfc.mrtrix logger (a rule script's
        # sfc.logs.script_logger sends that to the rule's log file)
        if stream is not None:
            stream.write(line + "\n")
            stream.flush()
        else:
            logger.info(line)

    try:
        header = f"$ {shlex.join(cmd)}"
        ver = version(tool)
        if stream is not None:
            logger.info("%s  [%s]", header, ver)
        emit(header)
        emit(f"# version: {ver}")
        if shutil.which(tool) is None:
            emit(f"# {tool}: not found on PATH")
            raise CommandError(cmd, None, [], problem=f"'{tool}' was not found on PATH "
                               "(install MRtrix3 >= 3.0 or activate the rule's conda environment)")
        start = time.monotonic()
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                              env=run_env) as proc:
            # stderr streamed line by line, as bytes so that progress bars' \r survive (text mode
            # would turn each \r into a new line): only the last state of a line is kept.
            # stdout is collected in a thread (no deadlock on full pipes).
            out_lines: list[str] = []
            reader = threading.Thread(target=lambda: out_lines.extend(
                proc.stdout.read().decode("utf-8", "replace").splitlines()))
            reader.start()
            for raw in proc.stderr:
                line = ANSI.sub("", raw.decode("utf-8", "replace")).rstrip("\r\n").split("\r")[-1].rstrip()
                if line:
                    tail.append(line)
                    emit(line)
            reader.join()
            rc = proc.wait()
        emit(f"# exit {rc} after {time.monotonic() - start:.2f} s")
        if rc != 0:
            raise CommandError(cmd, rc, tail)
        return out_lines
    finally:
        if close:
            stream.close()
        elif stream is not None:
            stream.flush()


def check_outputs(*paths) -> None:
    """Raise ``FileNotFoundError`` naming every expected output that a tool did not write."""
    missing = [os.fspath(p) for p in paths if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"expected output(s) not written: {', '.join(missing)}")
