"""The HTML report of a connectome-level run on a synthetic cohort with planted effects: built by
`rule all` from the group outputs alone, self-contained, rendered by headless Chromium with every
figure loaded and no script error, and naming the planted regions as the significant ones."""

import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import run_snakemake, significant_regions
from sfc import paths
from sfc.simulate.connectome import TRD_GYRI, simulate_connectome_cohort

pytestmark = pytest.mark.slow


def chromium() -> str:
    for name in (os.environ.get("SFC_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    pytest.skip("no chromium on PATH: `make setup` installs Debian's chromium when run as root "
                "(or set SFC_CHROMIUM to a Chromium/Chrome executable)")


def run_chromium(tmp_path, *args, timeout=180) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
           "--enable-logging=stderr", "--v=0", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run(tmp_path_factory, atlas_dir):
    """Connectome route on 16 TRD / 16 nTRD / 10 HC with the study's TRD decoupling planted."""
    base = tmp_path_factory.mktemp("report")
    cohort = simulate_connectome_cohort(base / "connectomes", atlas_dir=atlas_dir,
                                        n_per_group={"TRD": 16, "nTRD": 16, "HC": 10}, seed=3, weights=("count",))
    config = base / "config.yaml"
    config.write_text(yaml.safe_dump({
        "input": "connectomes", "connectomes_dirs": [str(cohort.out_dir)],
        "participants": str(cohort.participants_tsv), "output_dir": str(base / "out"), "atlas_dir": str(atlas_dir),
        "coupling": {"methods": ["spearman"], "min_neighbours": 5, "path_transform": "inv", "distance": {}},
        # cheap classification: two models, one repeat, few permutations and bootstrap resamples
        "classification": {"modes": ["nested"], "models": ["logreg_l2", "svm_linear"], "n_repeats": 1,
                           "n_permutations": 10, "n_bootstrap": 200},
        "report": {"gallery_subjects": 4},
    }))
    result = run_snakemake("--cores", "2", "--configfile", config, workdir=base / "work", timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    out = base / "out"
    return cohort, out, base


def test_rule_all_builds_a_self_contained_report(run):
    _, out, _ = run
    page = (out / "report.html").read_text()
    for heading in ("Cohort", "Quality control", "Structure-function coupling", "Group differences",
                    "Clinical correlations", "Classification", "Provenance"):
        assert f"<h2>{heading}</h2>" in page and f"href='#" in page
    # every picture embedded, nothing fetched from elsewhere
    sources = re.findall(r"<img[^>]*\ssrc=\"([^\"]*)\"", page)
    assert len(sources) > 20 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"(src|href)=[\"'](https?:)?//", page) and "<link" not in page
    # connectome route: matrices instead of the imaging QC pictures, said in a sentence
    assert "imaging QC pictures" in page and "not available" in page
    assert "Snakemake" in page and "scikit-learn" in page and "Command line" in page
    # main figures also handed to snakemake --report
    assert any(p.suffix == ".png" for p in (out / "report").iterdir())


def test_report_names_the_planted_regions_as_significant(run):
    cohort, out, _ = run
    significant = significant_regions((out / "report.html").read_text())[("BNA246", "spearman")]
    planted = set(cohort.planted["BNA246"]["trd_decoupling"])
    # every FDR-significant region is a planted one, and every planted gyrus is found
    assert significant and set(significant) <= planted, set(significant) - planted
    assert all(any(name.startswith(g) for name in significant) for g in TRD_GYRI)


def test_report_renders_in_headless_chromium(run):
    _, out, base = run
    url = (out / "report.html").resolve().as_uri()
    dom = run_chromium(base, "--virtual-time-budget=20000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    status = re.search(r"<div id=\"render-status\"[^>]*>", dom.stdout)
    assert status, "render-status element missing from the dumped DOM"
    attrs = dict(re.findall(r"data-([a-z]+)=\"([^\"]*)\"", status.group(0)))
    assert attrs["loaded"] == "true"
    assert int(attrs["images"]) > 20 and attrs["broken"] == "0", attrs
    assert attrs["errors"] in ("[]", "&quot;[]&quot;"), attrs["errors"]
    console_errors = [line for line in dom.stderr.splitlines()
                      if "CONSOLE" in line and ("ERROR" in line or "Uncaught" in line)]
    assert console_errors == []
    shot = out / "report_screenshot.png"
    result = run_chromium(base, f"--screenshot={shot}", "--window-size=1400,2400", "--virtual-time-budget=20000",
                          url)
    assert result.returncode == 0 and shot.stat().st_size > 20_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
