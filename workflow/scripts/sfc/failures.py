"""Per-subject jobs that stopped on their subject's bad input, recorded so the group stage can go on.

Snakemake cannot run a group job whose inputs include a failed job's outputs, even with
``--keep-going`` (snakemake/snakemake#3919 asks for exactly this and is open). So a
per-subject rule script that ends on an :class:`~sfc.errors.InputError` (the subject's data:
a NaN volume, a 3-D BOLD, a gradient table that does not match) writes a record beside the
logs, ``logs/failed/<unit>_rule-<rule>.json`` (:func:`sfc.paths.failure_record`). The next
run of the same command reads the records at parse time, leaves those units out, and lists
them in ``group/excluded.tsv`` with the rule and the message; the group stage then runs on
everyone else.

A record holds for as long as the files the failed job read are unchanged (size and
modification time): fix the input, or rerun an upstream step, and the unit is tried again.
Deleting the record retries it as it is (after installing a tool, say). A
:class:`~sfc.errors.SetupError` (a missing tool or template, a config value) and unexpected
errors (a crash, a killed job) are not recorded: they are not the subject's fault, would
strike every subject alike, and keep blocking the group stage until they are fixed.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from . import paths


def _stamp(path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _files(inputs) -> list[str]:
    """The plain file paths among a job's inputs (named lists flattened, folders kept)."""
    out = []
    for item in inputs:
        if isinstance(item, (list, tuple)):
            out.extend(_files(item))
        else:
            out.append(os.fspath(item))
    return out


def record(path, *, subject: str, session: str | None, rule: str, message: str, inputs, log=None) -> Path:
    """Write the failure record of one job: the unit, the rule, the message and its inputs' stamps."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "participant_id": f"sub-{subject}",
        "session": session,
        "rule": rule,
        "message": message,
        "log": os.fspath(log) if log else None,
        "inputs": {f: _stamp(f) for f in _files(inputs)},
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=1) + "\n")
    os.replace(tmp, path)  # a reader never sees half a record
    return path


def forget(path) -> None:
    """Remove a job's record as it starts again (a retry that succeeds leaves none behind)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def current(output_dir, units) -> dict[tuple[str, str | None], list[dict]]:
    """The records still in force for ``units`` ((subject, session) pairs), by unit.

    A record is in force while every input it lists has the size and modification time it
    had when the job failed. One folder listing, then a ``stat`` per recorded input.
    """
    folder = paths.failure_dir(output_dir)
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.name.endswith(".json"))
    except FileNotFoundError:
        return {}
    wanted = {paths.unit_id(s, t): (s, t) for s, t in units}
    found: dict[tuple[str, str | None], list[dict]] = {}
    for name in names:
        unit = wanted.get(name.rsplit("_rule-", 1)[0])
        if unit is None:
            continue
        try:
            body = json.loads((Path(folder) / name).read_text())
        except (OSError, ValueError):
            continue  # unreadable: ignored, so the unit is simply tried again
        body["record"] = os.fspath(Path(folder) / name)
        if all(_stamp(f) == stamp for f, stamp in body.get("inputs", {}).items()):
            found.setdefault(unit, []).append(body)
    return found


def reason(records: list[dict]) -> str:
    """The excluded.tsv reason of a unit left out for its recorded failures."""
    return "; ".join(
        f"failed in rule {r['rule']} in an earlier run ({r['message']}) [record: {r['record']}; fix the input "
        "to retry, or delete the record]"
        for r in records
    )
