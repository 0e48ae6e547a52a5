"""Shared fixtures: where the test data are, and how to run the workflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Before any test imports antspyx: one ITK thread makes registrations reproducible (sfc sets
# the same default when it is imported first).
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def _shared_data() -> Path | None:
    for candidate in (os.environ.get("SFC_SHARED_DATA"), REPO.parent / "shared" / "data", "/work/shared/data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Third-party test data (atlases, real scans) kept beside the repository, never in it."""
    path = _shared_data()
    if path is None:
        pytest.skip("shared test data not found: set SFC_SHARED_DATA to the folder with atlases/ and mri/")
    return path


@pytest.fixture(scope="session")
def atlas_dir(shared_data) -> Path:
    path = Path(os.environ.get("SFC_ATLAS_DIR") or shared_data / "atlases")
    if not (path / "bna246").is_dir() and not any(path.glob("BN_Atlas_246_*")):
        pytest.skip(f"no atlases in {path}: set SFC_ATLAS_DIR")
    return path


def run_snakemake(*args, workdir=None, env=None, timeout=600, snakemake=SNAKEMAKE) -> subprocess.CompletedProcess:
    """Run the workflow (``-s <repo>/Snakefile``) in ``workdir``; returns the completed process.

    Each test gets its own working directory, so Snakemake's metadata and locks never
    collide between tests or with a user's run in the repository.
    """
    full_env = {**os.environ, **(env or {})}
    cmd = [snakemake, "-s", str(REPO / "Snakefile")]
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        cmd += ["-d", str(workdir)]
    return subprocess.run([*cmd, *map(str, args)], cwd=workdir or REPO, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def snakemake_runner():
    return run_snakemake
