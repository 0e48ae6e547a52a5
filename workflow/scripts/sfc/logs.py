"""Logging for rule scripts: everything goes to the rule's log file, warnings to stderr too.

Bad input (:class:`sfc.errors.InputError`) ends a rule script with its one message (file,
problem, fix) in the log and on stderr, not with a Python traceback. A per-subject job that
ends so also leaves a failure record (sfc.failures), so that the next run can finish the
group stage without that subject.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path


def script_logger(log_path, name: str = "sfc", job=None) -> logging.Logger:
    """Send the ``sfc`` logger (and Python warnings) to ``log_path``.

    Warnings also reach stderr, so a user watching the run sees them without
    opening the log. ``job``: the script's ``snakemake`` object; for a per-subject job
    (a ``subject`` wildcard) an :class:`~sfc.errors.InputError` that ends the script is
    recorded as the subject's failure (:func:`sfc.failures.record`), and a record left by
    an earlier attempt is removed as the job starts.
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    handler = logging.FileHandler(log_path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    logger.addHandler(console)
    logging.captureWarnings(True)
    warnings_logger = logging.getLogger("py.warnings")
    warnings_logger.handlers[:] = [handler, console]
    warnings.simplefilter("default")
    sys.excepthook = _excepthook(logger, _failure_recorder(job, log_path))
    return logger


def _failure_recorder(job, log_path):
    """A function recording an InputError as the failure of ``job``'s subject, or None."""
    wildcards = getattr(job, "wildcards", None)
    subject = wildcards.get("subject") if wildcards is not None else None
    if not subject:
        return None
    from . import failures, paths

    session = wildcards.get("session")
    record_path = paths.failure_record(job.config["output_dir"], subject, session, job.rule)
    failures.forget(record_path)

    def record(exc):
        failures.record(record_path, subject=subject, session=session, rule=job.rule, message=str(exc),
                        inputs=list(job.input), log=log_path)

    return record


def _excepthook(logger: logging.Logger, record_failure=None):
    from .errors import InputError, SetupError

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, InputError):
            # to the log and, through the console handler, to the job's stderr that Snakemake shows
            logger.error("input error: %s", exc)
            if record_failure is not None and not issubclass(exc_type, SetupError):
                record_failure(exc)
                logger.error("recorded as this subject's failure: the next run leaves it out of the group "
                             "stage (group/excluded.tsv) until the input changes")
            return
        logger.error("unexpected error", exc_info=(exc_type, exc, tb))
        sys.__excepthook__(exc_type, exc, tb)

    return hook
