"""Logging for rule scripts: everything goes to the rule's log file, warnings to stderr too."""

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
    return logger
