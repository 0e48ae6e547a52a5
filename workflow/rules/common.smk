# Config validation, BIDS discovery and the path patterns every rule uses.
# Everything here runs once at parse time; input functions are dictionary look-ups.

import functools
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))

from sfc import bids, failures, paths  # noqa: E402
from sfc import resources as sfc_resources  # noqa: E402
from sfc.atlases import atlas_names  # noqa: E402
from sfc.config import schema_problem  # noqa: E402
from sfc.errors import InputError  # noqa: E402
from sfc.participants import read_participants, sessions_path  # noqa: E402


def fail(error):
    """Stop before any job starts with the one message that names file, problem and fix."""
    sys.stderr.write(f"\nsfc: configuration or input error\n  {error}\n\n")
    sys.exit(1)


CONFIG_SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
try:
    validate(config, str(CONFIG_SCHEMA))
except WorkflowError:
    fail(InputError(", ".join(map(str, workflow.configfiles)) or "config",
                    schema_problem(config, CONFIG_SCHEMA) or "the config does not match its schema",
                    "correct the key (every key is documented in config/README.md)"))

OUT = config["output_dir"]
_unknown_atlases = [a for a in config["atlases"] if a not in atlas_names()]
if _unknown_atlases:
    fail(InputError(", ".join(map(str, workflow.overwrite_configfiles)) or "config",
                    f"config key atlases: unknown atlas {_unknown_atlases[0]!r}",
                    f"use {' and/or '.join(atlas_names())}, or register the atlas in "
                    "resources/atlases/registry.yaml"))
LOGS = f"{OUT}/logs"
BENCH = f"{OUT}/benchmarks"
ATLASES = config["atlases"]
# Per-subject rules that map atlases (anat_atlas, dwi_atlas, func_connectivity) do every atlas
# in one job: the work per atlas is under a second, while each job pays ~2.5 s to start Python
# and import antspyx (and nilearn). On the demo these rules took 252 s of job time as 48 jobs
# and 118 s as 24 (benchmarks/README.md); adding an atlas reruns them for every atlas.
ATLAS_IMAGES = [paths.atlas_image(OUT, a) for a in ATLASES]
ATLAS_LABELS = [paths.atlas_labels(OUT, a) for a in ATLASES]


def per_atlas(pattern):
    """One path per configured atlas (ATLASES order); other wildcards stay."""
    return expand(pattern, atlas=ATLASES, allow_missing=True)


CONNECTOME_INPUT = config["input"] == "connectomes"
if not CONNECTOME_INPUT and not config["bids_dir"]:
    fail(InputError(", ".join(map(str, workflow.overwrite_configfiles)) or "config", "no bids_dir is set",
                    "set bids_dir: <your BIDS dataset> in your config file (config/README.md), or run the "
                    "demo with `make demo` (config/demo.yaml)"))
if not CONNECTOME_INPUT:
    _bids, _out = (os.path.realpath(config[k]) for k in ("bids_dir", "output_dir"))
    if _out == _bids or _out.startswith(_bids + os.sep):
        fail(InputError(config["output_dir"], f"output_dir is inside bids_dir ({config['bids_dir']}): the "
                        "run would write its atlases, logs and results into the input dataset",
                        "set output_dir to a folder outside the BIDS dataset (e.g. beside it); BIDS "
                        "derivatives belong in <bids_dir>/../derivatives, not inside the raw dataset"))
# The participants table the group stages read (discovery validated it).
PARTICIPANTS_TSV = config["participants"] or f"{config['bids_dir']}/participants.tsv"


def configured_columns():
    cols = [*config.get("covariates", []), *config.get("clinical_scales", [])]
    if config.get("site_column"):
        cols.append(config["site_column"])
    return cols


def _discover():
    if CONNECTOME_INPUT:
        if not config.get("participants"):
            raise InputError(None, "input: connectomes needs a pooled participants table",
                             "set the config key `participants` to a participants.tsv covering every site")
        table = read_participants(config["participants"], config["group_column"], config["groups"],
                                  configured_columns())
        return bids.discover_connectomes(
            config["connectomes_dirs"], table,
            lambda d, s, t, a: paths.sc_matrix(d, s, t, a, config["sc_weight"]),
            lambda d, s, t, a: paths.fc_matrix(d, s, t, a), ATLASES, sessions=config["sessions"])
    need = ["t1w", "dwi", "bold"]
    if config["input"]["dwi"] == "qsiprep":
        need.remove("dwi")
    if config["input"]["func"] == "fmriprep":
        need.remove("bold")
    return bids.discover(config["bids_dir"], config.get("participants"), config["group_column"],
                         config["groups"], configured_columns(), need=tuple(need), task=config["task"],
                         sessions=config["sessions"])


DEMO_PENDING = (
    not CONNECTOME_INPUT
    and config["demo"]["generate"]
    and not os.path.isdir(config["bids_dir"])
)
# The generator writes only into the demo's own folder: a study's mistyped bids_dir is an error.
if DEMO_PENDING and Path(os.path.normpath(config["bids_dir"])).parts[-2:] != ("demo", "bids"):
    fail(InputError(config["bids_dir"], "the BIDS folder does not exist (demo.generate makes the synthetic "
                    "cohort only in a folder named demo/bids, never in a study's bids_dir)",
                    "correct bids_dir; for the demo, run `make demo`"))
if DEMO_PENDING:
    DISCOVERY = None
    sys.stderr.write(f"sfc: {config['bids_dir']} does not exist yet: the demo cohort will be generated first "
                     "(run snakemake again afterwards to process it)\n")
else:
    try:
        DISCOVERY = _discover()
    except InputError as error:
        fail(error)
    sys.stderr.write(f"sfc: {DISCOVERY.summary()}\n")
    for _note in DISCOVERY.notes[:20]:
        sys.stderr.write(f"sfc: {_note}\n")
    if len(DISCOVERY.notes) > 20:
        sys.stderr.write(f"sfc: ... and {len(DISCOVERY.notes) - 20} more such choices\n")
    if not DISCOVERY.kept:
        fail(bids.nothing_to_analyse(
            DISCOVERY,
            ", ".join(map(str, config["connectomes_dirs"])) if CONNECTOME_INPUT else config["bids_dir"],
        ))

HAS_SESSIONS = bool(DISCOVERY and DISCOVERY.has_sessions)
# Configured columns (covariates, scales, site) that sub-<s>_sessions.tsv give per session: the
# group fits then read participants.tsv with each participant's values at the analysed session
# (rule session_participants), not the participant-level ones.
SESSION_COLUMNS = DISCOVERY.session_columns if HAS_SESSIONS and not CONNECTOME_INPUT else []
GROUP_PARTICIPANTS = paths.session_participants(OUT) if SESSION_COLUMNS else PARTICIPANTS_TSV
# The session entity of every per-subject path pattern: absent for session-less datasets.
SES = "{session}" if HAS_SESSIONS else None
# Units whose per-subject job stopped on their own bad input in an earlier run (sfc.failures):
# left out of this run, so the group stage goes on without them, until their input changes.
FAILED = failures.current(OUT, DISCOVERY.kept) if DISCOVERY and not CONNECTOME_INPUT else {}
if FAILED:
    _failed_ids = [paths.unit_id(*u) for u in sorted(FAILED)]
    sys.stderr.write(
        f"sfc: {len(FAILED)} unit(s) left out: a job stopped on their input in an earlier run "
        f"({', '.join(_failed_ids[:10])}{' ...' if len(FAILED) > 10 else ''}); the reasons are in "
        f"group/excluded.tsv and {paths.failure_dir(OUT)}/. Fixing the input retries a unit; so does "
        "deleting its record\n"
    )
UNITS = sorted(u for u in DISCOVERY.kept if u not in FAILED) if DISCOVERY else []  # (subject, session) pairs
if DISCOVERY and DISCOVERY.kept and not UNITS:
    fail(InputError(paths.failure_dir(OUT), f"every one of the {len(FAILED)} units stopped on its input in an "
                    "earlier run, so there is nothing left to analyse",
                    "read the records (each names the file and the fix), correct the inputs or the setup, "
                    "and delete the records to try again"))
# participant_id of each unit in the group tables (``_ses-<label>`` added where sessions exist)
UNIT_IDS = [paths.unit_id(s, t) for s, t in UNITS]
# Group fits (statistics, clinical correlations, classification, report) take one unit per
# person; only `sessions: all` on a dataset with several sessions per person breaks that.
REPEATED_PARTICIPANTS = DISCOVERY.repeated_participants if DISCOVERY else []
GROUP_FITS = bool(UNITS) and not REPEATED_PARTICIPANTS
if REPEATED_PARTICIPANTS:
    sys.stderr.write(
        f"sfc: sessions: all: {len(UNITS)} units of {len({s for s, _ in UNITS})} participants "
        f"(e.g. {REPEATED_PARTICIPANTS[0]} has several); the group statistics, clinical correlations, "
        "classification and report need one unit per participant and are not built in this run (the "
        "per-session connectomes, SFC tables and group SFC tables are). Set sessions: first or a session "
        "label for the cross-sectional analysis\n"
    )


def scans(wildcards):
    """The discovered inputs of the subject (and session) a job is for."""
    return DISCOVERY.kept[(wildcards.subject, wildcards.get("session"))]


def expand_units(pattern, **kwargs):
    """``pattern`` filled in for every kept subject (and session)."""
    return [pattern.format(subject=s, session=t, **kwargs) for s, t in UNITS]


def excluded_records():
    """group/excluded.tsv's rows known at parse time: left out at discovery or for a recorded failure."""
    if not DISCOVERY:
        return []
    rows = DISCOVERY.excluded_table().to_dict("records")
    for (subject, session), records in sorted(FAILED.items()):
        row = {"participant_id": f"sub-{subject}", "reason": failures.reason(records)}
        if HAS_SESSIONS:
            row["session"] = session
        rows.append(row)
    return rows


@functools.lru_cache(maxsize=None)
def _unit_work(subject, session):
    s = DISCOVERY.kept[(subject, session)]
    dwi = dwi_series(subject, session)[0]  # structural_common.smk: BIDS raw or QSIPrep
    bolds = [_fmriprep_run(subject, session).bold] if FUNC_ROUTE == "fmriprep" else [b.path for b in s.bold]
    reproducible = TRACKING.get("reproducible", True)
    return sfc_resources.unit_work(s.t1w, dwi, bolds, streamlines=TRACKING["streamlines"],
                                   chunks=TRACKING["chunks"] if reproducible else DWI_CFG["nthreads"])


def unit_work(wildcards):
    """What a subject's jobs process (sfc.resources.Work: scan sizes from the headers, streamlines)."""
    return _unit_work(wildcards.subject, wildcards.get("session"))


def sized(rule):
    """``mem_mb`` and ``runtime`` of a per-subject rule, from its subject's scans (sfc.resources)."""
    return dict(
        mem_mb=lambda wildcards, threads, attempt: sfc_resources.mem_mb(rule, unit_work(wildcards), threads,
                                                                        attempt),
        runtime=lambda wildcards, threads, attempt: sfc_resources.runtime(rule, unit_work(wildcards), threads,
                                                                          attempt),
    )


def sized_by_units(per_unit_mb, per_unit_s, base_mb=1000, base_min=10):
    """``mem_mb`` and ``runtime`` of a job over all subjects (``base + per-subject cost x subjects``)."""
    return dict(
        mem_mb=lambda wildcards, attempt: sfc_resources.group_mem_mb(len(UNITS), per_unit_mb, base_mb, attempt),
        runtime=lambda wildcards, attempt: sfc_resources.group_runtime(len(UNITS), per_unit_s, base_min, attempt),
    )


# Stage files add their final outputs here; `rule all` asks for all of them.
TARGETS = []
# Per-subject QC tables (participant_id, [session], include, reason, ...) whose excluded
# rows join group/excluded.tsv and drop the subject from the group statistics.
QC_EXCLUSION_FILES = []


def final_targets(wildcards):
    if DEMO_PENDING:
        return [config["bids_dir"]]
    return TARGETS


def say_recorded_failures():
    """At the end of a failed run: the units whose jobs stopped on their input, and what to do next."""
    if not UNITS or CONNECTOME_INPUT:
        return
    stopped = failures.current(OUT, UNITS)
    if stopped:
        ids = [paths.unit_id(*u) for u in sorted(stopped)]
        sys.stderr.write(
            f"\nsfc: {len(stopped)} unit(s) stopped on their input ({', '.join(ids[:10])}"
            f"{' ...' if len(ids) > 10 else ''}; the messages are above and in {paths.failure_dir(OUT)}/). "
            "Run the same command again to finish the group stage without them (they will be listed in "
            "group/excluded.tsv), or fix their input first.\n"
        )
