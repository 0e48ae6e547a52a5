"""BIDS discovery: which subjects (and sessions) have what, and who is left out and why.

One pass of ``os.scandir`` over the dataset at parse time, reading only NIfTI
headers of DWI images (to check the gradient tables) and BOLD sidecars (for the
repetition time), so 1000 subjects are discovered in about a second and no rule
ever globs. A subject that lacks a modality, has a gradient table that does not
match its DWI, or is missing from participants.tsv is left out with a reason; a
malformed participants.tsv, an unknown group label or a missing configured
column is an :class:`~sfc.errors.InputError` that stops the run.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

import pandas as pd

from .errors import InputError
from .io import ScanProblem, checked_header, repetition_time_problem
from .participants import read_participants, read_sessions, sessions_header, sessions_path

LABEL = re.compile(r"^[A-Za-z0-9]+$")
NIFTI = (".nii.gz", ".nii")


@dataclass(frozen=True)
class BoldRun:
    path: str
    sidecar: str | None
    repetition_time: float
    run: str | None = None


@dataclass(frozen=True)
class ScanSet:
    """The inputs of one subject (and session)."""

    subject: str
    session: str | None = None
    t1w: str | None = None
    dwi: str | None = None
    bval: str | None = None
    bvec: str | None = None
    dwi_sidecar: str | None = None
    bold: tuple[BoldRun, ...] = ()
    source_dir: str | None = None  # connectome-level input: the output folder holding this subject

    @property
    def participant_id(self) -> str:
        return f"sub-{self.subject}"


@dataclass
class Discovery:
    participants: pd.DataFrame
    kept: dict = field(default_factory=dict)  # (subject, session) -> ScanSet
    excluded: list = field(default_factory=list)  # dicts: participant_id, session, reason
    has_sessions: bool = False
    notes: list = field(default_factory=list)  # choices the run log should state (several T1w runs, ...)
    # sessions present but not analysed under the config's `sessions` choice: (participant_id, session)
    not_selected: list = field(default_factory=list)
    sessions: str = "first"
    # configured columns (covariates, scales, site) that sub-<s>_sessions.tsv tables give per session
    session_columns: list = field(default_factory=list)

    @property
    def subjects(self) -> list[str]:
        return sorted({s for s, _ in self.kept})

    def excluded_table(self) -> pd.DataFrame:
        table = pd.DataFrame(self.excluded, columns=["participant_id", "session", "reason"])
        if not self.has_sessions:
            table = table.drop(columns="session")
        return table.sort_values(list(table.columns[:-1])).reset_index(drop=True)

    def summary(self) -> str:
        units = "subject-sessions" if self.has_sessions else "subjects"
        text = (f"{len(self.kept)} {units} kept, {len(self.excluded)} left out"
                + (" (reasons in group/excluded.tsv)" if self.excluded else ""))
        if self.not_selected:
            why = ("the first session of each participant" if self.sessions == "first"
                   else f"session {self.sessions} only")
            text += (f"; {len(self.not_selected)} further session(s) not analysed (sessions: {self.sessions}: "
                     f"{why}, since two sessions of one person are not two independent subjects)")
        return text

    @property
    def repeated_participants(self) -> list[str]:
        """Participants with more than one kept unit (possible only with ``sessions: all``)."""
        counts = pd.Series([s for s, _ in self.kept]).value_counts()
        return sorted(f"sub-{s}" for s in counts.index[counts > 1])


# --- raw BIDS ---------------------------------------------------------------------------

def _stem(name: str) -> str:
    for ext in NIFTI:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def _entity(name: str, key: str) -> str | None:
    match = re.search(rf"(?:^|_){key}-([A-Za-z0-9]+)", name)
    return match.group(1) if match else None


def _files(folder: str) -> list[str]:
    """Names of the files in ``folder``, symbolic links included (a dangling one is then named)."""
    try:
        return sorted(e.name for e in os.scandir(folder) if e.is_file() or e.is_symlink())
    except FileNotFoundError:
        return []


def _run_key(name: str):
    """Order of several images of one kind: by run number (run-2 before run-10), then by name."""
    run = _entity(name, "run")
    return (0, int(run), name) if run and run.isdigit() else (1, 0, name)


def _choose(names: list[str], kind: str, notes: list, unit: str) -> str:
    """The image used where a unit has several of one kind: the first run (documented rule),
    said in the run log rather than chosen silently."""
    ordered = sorted(names, key=_run_key)
    if len(ordered) > 1:
        notes.append(f"{unit}: {len(ordered)} {kind} images ({', '.join(ordered)}); using {ordered[0]} "
                     "(the first run; keep one image per unit to choose another)")
    return ordered[0]


def _usable(path: str) -> dict:
    """The scan's header (:func:`sfc.io.checked_header`); a scan that cannot be used leaves the unit out."""
    try:
        return checked_header(path)
    except ScanProblem as problem:
        raise _Exclude(f"{os.path.basename(path)} {problem}") from None


def _count_values(path: str) -> list[int]:
    """Number of values per non-empty row of a bval/bvec text file."""
    with open(path) as handle:
        return [len(line.split()) for line in handle if line.strip()]


def _sidecar(stem_path: str, bids_dir: str, names: list[str], inherited: str) -> str | None:
    own = stem_path + ".json"
    if os.path.basename(own) in names:
        return own
    top = os.path.join(bids_dir, inherited)
    return top if os.path.isfile(top) else None


class _Exclude(Exception):
    pass


def _scan_unit(bids_dir: str, folder: str, subject: str, session: str | None,
               need: tuple[str, ...], task: str, notes: list | None = None) -> ScanSet:
    found = {}
    notes = notes if notes is not None else []
    unit = f"sub-{subject}" + (f"_ses-{session}" if session else "")
    anat = _files(os.path.join(folder, "anat"))
    t1w = [n for n in anat if n.endswith(("_T1w.nii.gz", "_T1w.nii"))]
    if "t1w" in need and not t1w:
        raise _Exclude("no T1w image (anat/*_T1w.nii[.gz])")
    if t1w:
        found["t1w"] = os.path.join(folder, "anat", _choose(t1w, "T1w", notes, unit))
        if "t1w" in need:
            _usable(found["t1w"])

    if "dwi" in need:
        dwi_dir = os.path.join(folder, "dwi")
        names = _files(dwi_dir)
        dwis = [n for n in names if n.endswith(("_dwi.nii.gz", "_dwi.nii"))]
        if not dwis:
            raise _Exclude("no diffusion image (dwi/*_dwi.nii[.gz])")
        chosen = _choose(dwis, "DWI", notes, unit)
        dwi = os.path.join(dwi_dir, chosen)
        n_vols = _usable(dwi)["dims"][3]
        stem = os.path.join(dwi_dir, _stem(chosen))
        for ext in ("bval", "bvec"):
            if os.path.basename(stem) + "." + ext not in names:
                raise _Exclude(f"{os.path.basename(dwi)} has no .{ext} file")
        bval_rows, bvec_rows = _count_values(stem + ".bval"), _count_values(stem + ".bvec")
        n_bval = sum(bval_rows)
        if n_bval != n_vols:
            raise _Exclude(f"{os.path.basename(dwi)} has {n_vols} volumes but its .bval has {n_bval} values")
        if len(bvec_rows) != 3 or set(bvec_rows) != {n_vols}:
            raise _Exclude(f"{os.path.basename(dwi)} has {n_vols} volumes but its .bvec is not 3 rows of "
                           f"{n_vols} values (rows: {bvec_rows})")
        found.update(dwi=dwi, bval=stem + ".bval", bvec=stem + ".bvec",
                     dwi_sidecar=_sidecar(stem, bids_dir, names, "dwi.json"))

    if "bold" in need:
        func_dir = os.path.join(folder, "func")
        names = _files(func_dir)
        bolds = [n for n in names if _entity(n, "task") == task and n.endswith(("_bold.nii.gz", "_bold.nii"))]
        if not bolds:
            raise _Exclude(f"no resting-state BOLD (func/*_task-{task}_bold.nii[.gz])")
        runs = []
        for name in bolds:
            stem = os.path.join(func_dir, _stem(name))
            sidecar = _sidecar(stem, bids_dir, names, f"task-{task}_bold.json")
            tr = None
            if sidecar:
                try:
                    with open(sidecar) as handle:
                        tr = json.load(handle).get("RepetitionTime")
                except (OSError, json.JSONDecodeError) as exc:
                    raise _Exclude(f"{os.path.basename(sidecar)} cannot be read as JSON ({exc})") from None
            problem = repetition_time_problem(tr)
            if problem:
                raise _Exclude(f"{name} {problem} in its JSON sidecar")
            _usable(os.path.join(func_dir, name))
            runs.append(BoldRun(os.path.join(func_dir, name), sidecar, float(tr), _entity(name, "run")))
        found["bold"] = tuple(runs)
    return ScanSet(subject=subject, session=session, **found)


def _natural(label: str):
    """Sort key: ``2`` before ``10``, letters after numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.findall(r"\d+|\D+", label)]


def session_order(subject_dir: str, sessions: list[str]) -> list[str]:
    """A subject's sessions, earliest first.

    By ``acq_time`` of ``sub-<s>_sessions.tsv`` (BIDS) where every session has one;
    otherwise by label, numbers by value (``ses-2`` before ``ses-10``; ``baseline``
    and ``followup`` sort alphabetically, so give them an acq_time).
    """
    ordered = sorted(sessions, key=_natural)
    table = os.path.join(subject_dir, f"{os.path.basename(subject_dir)}_sessions.tsv")
    if not os.path.isfile(table):
        return ordered
    try:
        with open(table, encoding="utf-8-sig") as handle:
            rows = [[c.strip() for c in line.rstrip("\r\n").split("\t")] for line in handle if line.strip()]
        header = rows[0]
        sid, acq = header.index("session_id"), header.index("acq_time")
        times = {r[sid].removeprefix("ses-"): r[acq] for r in rows[1:] if len(r) == len(header)}
    except (ValueError, IndexError, OSError):
        return ordered
    if not all(times.get(x, "n/a") not in ("", "n/a") for x in sessions):
        return ordered
    return sorted(sessions, key=lambda x: (times[x], _natural(x)))


def select_sessions(subject_dir: str, sessions: list[str], choice: str) -> tuple[list[str], list[str]]:
    """(analysed, not analysed) sessions of one subject under the config's ``sessions``.

    ``all``: every session; ``first``: the earliest (:func:`session_order`); a label:
    that session only (none when the subject lacks it).
    """
    if choice == "all":
        return list(sessions), []
    if choice == "first":
        ordered = session_order(subject_dir, sessions)
        return ordered[:1], ordered[1:]
    return [x for x in sessions if x == choice], [x for x in sessions if x != choice]


def discover(bids_dir, participants_file=None, group_column: str = "group", groups=None, columns=(),
             need=("t1w", "dwi", "bold"), task: str = "rest", sessions: str = "first") -> Discovery:
    """Find every subject (and session) and what it has.

    Parameters
    ----------
    bids_dir : path-like
        The raw BIDS dataset (read only).
    participants_file : path-like, optional
        Defaults to ``<bids_dir>/participants.tsv``.
    group_column, groups, columns
        Passed to :func:`read_participants`.
    need : tuple of {"t1w", "dwi", "bold"}
        The modalities a subject must have to be kept (derivative routes such
        as fMRIPrep or QSIPrep drop the raw modality they replace).
    task : str
        The resting-state task label.
    sessions : str
        Which sessions a cross-sectional analysis takes (:func:`select_sessions`):
        ``first`` (default), ``all`` or a session label.
    """
    bids_dir = os.fspath(bids_dir)
    if not os.path.isdir(bids_dir):
        raise InputError(bids_dir, "the BIDS folder does not exist",
                         "set the config key bids_dir to your BIDS dataset (or run the demo with `make demo`)")
    subject_dirs = sorted(e.name for e in os.scandir(bids_dir) if e.is_dir() and e.name.startswith("sub-"))
    # configured columns measured per session (age at the scan, the visit's symptom scale)
    in_sessions = {c for name in subject_dirs
                   for c in sessions_header(sessions_path(bids_dir, name[4:]))} & set(columns)
    participants = read_participants(participants_file or os.path.join(bids_dir, "participants.tsv"),
                                     group_column, groups, columns, session_columns=in_sessions)
    result = Discovery(participants=participants, sessions=sessions,
                       session_columns=sorted(in_sessions))
    units = []
    for name in subject_dirs:
        subject = name[4:]
        if not LABEL.match(subject):
            result.excluded.append({"participant_id": name, "session": None,
                                    "reason": "folder name is not sub-<alphanumeric label>"})
            continue
        folder = os.path.join(bids_dir, name)
        found = sorted(e.name[4:] for e in os.scandir(folder) if e.is_dir() and e.name.startswith("ses-"))
        units += [(subject, x, os.path.join(folder, f"ses-{x}")) for x in found] or [(subject, None, folder)]
    with_session = {u[0] for u in units if u[1]}
    without = {u[0] for u in units if not u[1]}
    if with_session and without:
        example = sorted(without)[0]
        raise InputError(os.path.join(bids_dir, f"sub-{example}"),
                         f"{len(without)} subject(s) have no ses-<label> folder while {len(with_session)} do",
                         "give every subject the same layout: put sessionless data into a ses-<label> folder")
    result.has_sessions = bool(with_session)
    on_disk = {f"sub-{u[0]}" for u in units}
    if with_session:
        units = _selected(result, units, sessions, lambda subject: os.path.join(bids_dir, f"sub-{subject}"))
    for subject, session, folder in units:
        pid = f"sub-{subject}"
        if pid not in participants.index:
            result.excluded.append({"participant_id": pid, "session": session,
                                    "reason": "not listed in participants.tsv"})
            continue
        try:
            result.kept[(subject, session)] = _scan_unit(bids_dir, folder, subject, session, tuple(need), task,
                                                         result.notes)
        except _Exclude as why:
            result.excluded.append({"participant_id": pid, "session": session, "reason": str(why)})
    if result.session_columns and result.has_sessions:
        # read (and so check) every analysed unit's sessions.tsv now, before any job starts
        for subject in sorted({s for s, _ in result.kept}):
            if os.path.isfile(sessions_path(bids_dir, subject)):
                read_sessions(sessions_path(bids_dir, subject))
    for pid in participants.index:
        if pid not in on_disk:
            result.excluded.append({"participant_id": pid, "session": None,
                                    "reason": "listed in participants.tsv but has no folder in bids_dir"})
    return result


def _selected(result: Discovery, units: list, sessions: str, subject_dir) -> list:
    """``units`` (subject, session, folder) narrowed to the chosen sessions; the rest recorded."""
    by_subject = {}
    for unit in units:
        by_subject.setdefault(unit[0], []).append(unit)
    chosen = []
    for subject, own in by_subject.items():
        keep, drop = select_sessions(subject_dir(subject), [u[1] for u in own], sessions)
        chosen += [u for u in own if u[1] in keep]
        if keep:
            result.not_selected += [(f"sub-{subject}", x) for x in drop]
        else:
            result.excluded.append({"participant_id": f"sub-{subject}", "session": None,
                                    "reason": f"no ses-{sessions} folder (config sessions: {sessions}); "
                                              f"has {', '.join('ses-' + u[1] for u in own)}"})
    return chosen


def nothing_to_analyse(result: Discovery, where) -> InputError:
    """The error for a discovery that kept nobody: the real cause, not a later stage's symptom."""
    # one reason per kind: "missing sub-01/..." and "missing sub-02/..." are one cause
    reasons = pd.Series([re.sub(r"(sub|ses)-[A-Za-z0-9]+", r"\1-*", r["reason"]) for r in result.excluded],
                        dtype=str)
    if reasons.empty:
        return InputError(where, "no sub-<label> folder found",
                          "point bids_dir (or connectomes_dirs) at the folder holding the sub-* folders")
    top = reasons.value_counts()
    listing = "; ".join(f"{n} x {reason!r}" for reason, n in top.head(3).items())
    return InputError(where, f"no subject can be analysed: all {len(reasons)} are left out ({listing})",
                      "correct what the reasons name: the files, or the config keys that choose them "
                      "(task, sessions, sc_weight, connectomes_dirs, participants)")


# --- connectome-level input (pooled outputs of earlier runs) --------------------------------

def discover_connectomes(dirs, participants: pd.DataFrame, sc_path, fc_path, atlases,
                         sessions: str = "first") -> Discovery:
    """Subjects (and sessions) of earlier output folders that hold SC and FC for every atlas.

    ``sc_path(folder, subject, session, atlas)`` and ``fc_path(folder, subject, session,
    atlas)`` give the expected files (sfc.paths with the configured weight). Subjects
    stored as ``sub-<s>/ses-<t>/`` are units per session, chosen by ``sessions`` as on
    the raw BIDS route. A subject found in two folders is an error: pooled sites must
    use distinct participant IDs.
    """
    result = Discovery(participants=participants, sessions=sessions)
    owner, units = {}, []
    for folder in map(os.fspath, dirs):
        if not os.path.isdir(folder):
            raise InputError(folder, "the connectomes folder does not exist",
                             "list existing output folders of earlier runs in connectomes_dirs")
        for name in sorted(e.name for e in os.scandir(folder) if e.is_dir() and e.name.startswith("sub-")):
            subject = name[4:]
            if subject in owner:
                raise InputError(os.path.join(folder, name),
                                 f"{name} is also in {owner[subject]}: subject IDs conflict across sites",
                                 "give each site's subjects distinct labels (e.g. sub-siteA001) before pooling")
            owner[subject] = folder
            found = sorted(e.name[4:] for e in os.scandir(os.path.join(folder, name))
                           if e.is_dir() and e.name.startswith("ses-"))
            units += [(subject, x, folder) for x in found] or [(subject, None, folder)]
    if any(u[1] for u in units):
        result.has_sessions = True
        plain = sorted(u[0] for u in units if not u[1])
        if plain:
            raise InputError(os.path.join(owner[plain[0]], f"sub-{plain[0]}"),
                             f"{len(plain)} subject(s) have no ses-<label> folder while others do",
                             "store every subject the same way (all with or all without ses-<label> folders)")
        units = _selected(result, units, sessions, lambda subject: os.path.join(owner[subject], f"sub-{subject}"))
    for subject, session, folder in units:
        name = f"sub-{subject}"
        missing = [p for a in atlases
                   for p in (sc_path(folder, subject, session, a), fc_path(folder, subject, session, a))
                   if not os.path.isfile(p)]
        if name not in participants.index:
            reason = "not listed in participants.tsv"
        elif missing:
            reason = f"missing {os.path.relpath(missing[0], folder)}"
        else:
            result.kept[(subject, session)] = ScanSet(subject=subject, session=session, source_dir=folder)
            continue
        result.excluded.append({"participant_id": name, "session": session, "reason": reason})
    return result


