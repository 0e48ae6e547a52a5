"""Shared fixtures: where the test data are, and how to run the workflow."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
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


#: the official atlas and template files under their official names, from the shared test data
#: (layout of shared/data/SOURCES.md): what a mirror (atlas_mirror / SFC_ATLAS_MIRROR) holds
OFFICIAL_FILES = {
    "BN_Atlas_246_2mm.nii.gz": "atlases/bna246/BN_Atlas_246_2mm.nii.gz",
    "HarvardOxford-cort-maxprob-thr25-2mm.nii.gz":
        "atlases/harvard-oxford/fsl-original_2mm/harvardoxford_cortical_labels.nii.gz",
    "HarvardOxford-sub-maxprob-thr25-2mm.nii.gz":
        "atlases/harvard-oxford/fsl-original_2mm/harvardoxford_subcortical_labels.nii.gz",
    "MNI152_T1_2mm.nii.gz": "templates/mni152-fsl/MNI152_T1_2mm.nii.gz",
    "MNI152_T1_1mm_brain.nii.gz": "templates/mni152-fsl/MNI152_T1_1mm_brain.nii.gz",
}


def make_mirror(shared_data: Path, folder: Path) -> Path:
    """A folder holding only the official files under their official names (skips if absent)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rel in OFFICIAL_FILES.items():
        if not (shared_data / rel).is_file():
            pytest.skip(f"{shared_data / rel} absent")
        shutil.copy(shared_data / rel, folder / name)
    return folder


class FolderServer:
    """An HTTP server on 127.0.0.1 over one folder that counts requests and can hang up half-way
    through the next ``drop_first`` downloads (a dropped connection)."""

    def __init__(self, root: Path):
        self.root, self.requests, self.drop_first = root, [], 0
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                path = root / self.path.lstrip("/")
                if server.drop_first > 0 and path.is_file():
                    # announce the whole file, send half of it, then hang up
                    server.drop_first -= 1
                    body = path.read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class _SignificantRegionTables(HTMLParser):
    """Region names (first column) of each significant-regions table, keyed by (atlas, method)."""

    def __init__(self):
        super().__init__()
        self.tables, self._key, self._depth, self._row, self._cell, self._text = {}, None, 0, -1, -1, ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div" and "sigtable" in (a.get("class") or ""):
            self._key = (a["data-atlas"], a["data-method"])
            self.tables[self._key] = []
        elif self._key and tag == "tr":
            self._cell = -1
        elif self._key and tag == "td":
            self._cell += 1
            self._text = ""

    def handle_data(self, data):
        if self._key and self._cell == 0:
            self._text += data

    def handle_endtag(self, tag):
        if self._key and tag == "td" and self._cell == 0:
            self.tables[self._key].append(self._text.strip())
        elif self._key and tag == "table":
            self._key = None


def significant_regions(html: str) -> dict:
    """The region names of each significant-regions table of a report, keyed by (atlas, method)."""
    parser = _SignificantRegionTables()
    parser.feed(html)
    return parser.tables


DEMO_PRESET = REPO / "config" / "demo.yaml"

#: The config of the per-subject imaging tests on :func:`generate_one_subject`'s head: paths
#: relative to the project folder, no covariates (one subject), fewer streamlines.
ONE_SUBJECT_CONFIG = {
    "bids_dir": "bids",
    "output_dir": "results",
    "demo": {"generate": False, "preset": "demo", "truth_dir": "truth"},
    "covariates": [],
    "dwi": {"tracking": {"streamlines": 10000}},
}


def generate_one_subject(project: Path, atlas_dir) -> None:
    """One synthetic head (``sub-001``, HC, seed 5) at the demo's image sizes with a 100-volume BOLD,
    into ``project/bids`` (truth in ``project/truth``): for per-subject imaging tests that need a
    real head, not a cohort."""
    from sfc.simulate.images import preset_image_params, simulate_bids_cohort

    simulate_bids_cohort(project / "bids", project / "truth", atlas_dir=atlas_dir, n_per_group={"HC": 1}, seed=5,
                         image_params=preset_image_params("demo", n_volumes=100), n_jobs=1)


def with_preset(args, preset=DEMO_PRESET) -> list[str]:
    """``args`` with ``--configfile <preset>`` ahead of the test's own config files.

    The workflow's defaults (config/config.yaml) are for real data (millions of streamlines,
    SIFT2, ...); tests run demo-sized images, so they start from the demo's preset as `make
    demo` does, and the test's config goes on top. ``preset=None`` leaves the defaults alone.
    """
    args = [str(a) for a in args]
    if preset is None:
        return args
    if "--configfile" in args:
        # after the last one: a repeated --configfile replaces the earlier ones (argparse)
        at = len(args) - args[::-1].index("--configfile")
        return [*args[:at], str(preset), *args[at:]]
    return [*args, "--configfile", str(preset)]  # last: --configfile takes every word after it


def run_snakemake(*args, workdir=None, env=None, timeout=600, snakemake=SNAKEMAKE,
                  preset=DEMO_PRESET) -> subprocess.CompletedProcess:
    """Run the workflow (``-s <repo>/Snakefile``) in ``workdir`` with the demo preset (see
    :func:`with_preset`); returns the completed process.

    Each test gets its own working directory, so Snakemake's metadata and locks never
    collide between tests or with a user's run in the repository.
    """
    full_env = {**os.environ, **(env or {})}
    cmd = [snakemake, "-s", str(REPO / "Snakefile")]
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        cmd += ["-d", str(workdir)]
    return subprocess.run([*cmd, *with_preset(args, preset)], cwd=workdir or REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def snakemake_runner():
    return run_snakemake
