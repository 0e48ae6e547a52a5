"""Every output path of INTERFACES.md, built in one place.

Rules (through workflow/rules/common.smk), scripts and tests all call these
functions, so the writer and the readers of a file cannot drift apart. Each
function takes the output folder and the entities; pass Snakemake wildcard
strings such as ``"{subject}"`` to get a rule's pattern.

Subjects without sessions give ``sub-01/dwi/sub-01_...``; with a session,
``sub-01/ses-1/dwi/sub-01_ses-1_...`` (the BIDS way).
"""

from __future__ import annotations

from pathlib import PurePosixPath


def _join(*parts) -> str:
    """``PurePosixPath(*parts)`` as a string; plain ``/``-joining when that gives the same.

    The workflow builds tens of thousands of paths at parse time (1000 subjects), so the
    common case (clean relative or absolute parts) skips the Path object.
    """
    parts = [str(p) for p in parts]
    joined = "/".join(parts)
    if (parts and parts[0] and "//" not in joined and "/./" not in joined and not joined.startswith("./")
            and not joined.endswith(("/", "/.")) and joined != "."):
        return joined
    return str(PurePosixPath(*parts))


def entity_dir(subject: str, session: str | None = None) -> str:
    """``sub-<s>`` or ``sub-<s>/ses-<t>``."""
    return f"sub-{subject}" + (f"/ses-{session}" if session else "")


def entity_prefix(subject: str, session: str | None = None) -> str:
    """``sub-<s>`` or ``sub-<s>_ses-<t>``: the start of every file name."""
    return f"sub-{subject}" + (f"_ses-{session}" if session else "")


def unit_id(subject: str, session: str | None = None) -> str:
    """The ID of one analysed unit in every group table: ``sub-<s>`` or ``sub-<s>_ses-<t>``.

    ``participant_id`` columns of the group tables hold these; :func:`parse_unit_id` reads
    them back. Labels are letters and digits only (BIDS), so ``_ses-`` cannot be ambiguous.
    """
    return entity_prefix(subject, session)


def parse_unit_id(uid: str) -> tuple[str, str | None]:
    """``(participant_id, session)`` of a unit ID: ``sub-01_ses-2`` -> ``("sub-01", "2")``."""
    participant, sep, session = str(uid).strip().partition("_ses-")
    return participant, (session if sep else None)


def participant_of(uid: str) -> str:
    """The participants.tsv row a unit belongs to: ``sub-01_ses-2`` -> ``sub-01``."""
    return parse_unit_id(uid)[0]


def subject_file(output_dir, datatype: str, suffix: str, subject: str, session: str | None = None) -> str:
    """``{output_dir}/sub-<s>[/ses-<t>]/<datatype>/sub-<s>[_ses-<t>]_<suffix>``."""
    return _join(output_dir, entity_dir(subject, session), datatype,
                 f"{entity_prefix(subject, session)}_{suffix}")


# --- atlases -------------------------------------------------------------------------

def atlas_labels(output_dir, atlas: str) -> str:
    """Label table in matrix order: ``atlases/atlas-{atlas}_dseg.tsv``."""
    return _join(output_dir, "atlases", f"atlas-{atlas}_dseg.tsv")


def atlas_image(output_dir, atlas: str) -> str:
    """The atlas image in template (MNI152NLin6Asym, FSL grid) space."""
    return _join(output_dir, "atlases", f"atlas-{atlas}_space-MNI152NLin6Asym_dseg.nii.gz")


# --- per-subject connectomes and coupling ---------------------------------------------

def sc_matrix(output_dir, subject, session, atlas, weight) -> str:
    """``sub-{s}/dwi/sub-{s}_atlas-{atlas}_desc-{weight}_sc.tsv`` (weight: count|sift2|length|fa)."""
    return subject_file(output_dir, "dwi", f"atlas-{atlas}_desc-{weight}_sc.tsv", subject, session)


def fc_matrix(output_dir, subject, session, atlas) -> str:
    """``sub-{s}/func/sub-{s}_task-rest_atlas-{atlas}_desc-corr_fc.tsv`` (Pearson r)."""
    return subject_file(output_dir, "func", f"task-rest_atlas-{atlas}_desc-corr_fc.tsv", subject, session)


def timeseries(output_dir, subject, session, atlas) -> str:
    """``sub-{s}/func/sub-{s}_task-rest_atlas-{atlas}_timeseries.tsv`` (header: region names)."""
    return subject_file(output_dir, "func", f"task-rest_atlas-{atlas}_timeseries.tsv", subject, session)


def sfc_table(output_dir, subject, session, atlas, method) -> str:
    """``sub-{s}/coupling/sub-{s}_atlas-{atlas}_desc-{method}_sfc.tsv`` (index, name, sfc)."""
    return subject_file(output_dir, "coupling", f"atlas-{atlas}_desc-{method}_sfc.tsv", subject, session)


def qc_dir(output_dir, subject, session=None) -> str:
    """``sub-{s}/qc``: QC measures and pictures."""
    return _join(output_dir, entity_dir(subject, session), "qc")


# --- recorded failures ------------------------------------------------------------------

def failure_dir(output_dir) -> str:
    """``logs/failed``: one record per per-subject job that stopped on its subject's input."""
    return _join(output_dir, "logs", "failed")


def failure_record(output_dir, subject, session, rule: str) -> str:
    """``logs/failed/sub-<s>[_ses-<t>]_rule-<rule>.json`` (sfc.failures)."""
    return _join(failure_dir(output_dir), f"{unit_id(subject, session)}_rule-{rule}.json")


# --- group -------------------------------------------------------------------------------

def group_file(output_dir, name: str) -> str:
    return _join(output_dir, "group", name)


def group_sfc(output_dir, atlas, method) -> str:
    return group_file(output_dir, f"atlas-{atlas}_desc-{method}_sfc.tsv")


def coupling_listing(output_dir, atlas, method) -> str:
    """The coupling job's list of the per-subject tables it wrote (participant_id, path).

    The group table's job reads this one file instead of naming every subject's table as an
    input: with N subjects, Snakemake checked each of the N tables against the coupling job's
    2N inputs while planning (benchmarks/README.md, consortium scale).
    """
    return group_file(output_dir, f"coupling/atlas-{atlas}_desc-{method}_tables.tsv")


def sidecar(table_path) -> str:
    """The JSON sidecar describing a ``.tsv`` table's columns (BIDS): same name, ``.json``."""
    return str(table_path).removesuffix(".tsv") + ".json"


def group_stats(output_dir, atlas, method) -> str:
    return group_file(output_dir, f"atlas-{atlas}_desc-{method}_groupstats.tsv")


def group_clinical(output_dir, atlas, method) -> str:
    return group_file(output_dir, f"atlas-{atlas}_desc-{method}_clinical.tsv")


def classification(output_dir) -> str:
    return group_file(output_dir, "classification.tsv")


def session_participants(output_dir) -> str:
    """``group/participants.tsv``: participants.tsv with each participant's values at the analysed
    session, for datasets whose sub-<s>_sessions.tsv give configured columns."""
    return group_file(output_dir, "participants.tsv")


def excluded(output_dir) -> str:
    """``group/excluded.tsv``: participant_id, reason."""
    return group_file(output_dir, "excluded.tsv")


def report(output_dir) -> str:
    """``report.html``: the self-contained HTML report (figures embedded)."""
    return _join(output_dir, "report.html")


def report_figures(output_dir) -> str:
    """``report/``: the report's main figures as PNG files, for ``snakemake --report``."""
    return _join(output_dir, "report")
