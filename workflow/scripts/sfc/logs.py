"""Logging for rule scripts: everything goes to the rule's log file, warnings to stderr too.

Bad input (:class:`sfc.errors.InputError`) ends a rule script with its one message (file,
problem, fix) in the log and on stderr, not with a Python traceback.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path


def script_logger(log_path, name: str = "sfc") -> logging.Logger:
    """Send the ``sfc`` logger (and Python warnings) to ``log_path``.

    Warnings also reach stderr, so a user watching the run sees them without
    opening the log.
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
    sys.excepthook = _excepthook(logger)
    return logger


def _excepthook(logger: logging.Logger):
    from .errors import InputError

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, InputError):
            # to the log and, through the console handler, to the job's stderr that Snakemake shows
            logger.error("input error: %s", exc)
            return
        logger.error("unexpected error", exc_info=(exc_type, exc, tb))
        sys.__excepthook__(exc_type, exc, tb)

    return hook
