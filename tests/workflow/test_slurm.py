"""The workflow through a real (one-node) SLURM with the project's profile gives the local results.

Brings the cluster up from Debian's packages (tests/slurm_cluster.py), runs the
workflow with ``--profile profiles/slurm`` from an environment that has the
SLURM executor plugin (``.venv-slurm``, made on first use: the plugin is kept
out of the main environment, see README), compares every output with a local
run, and stops the daemons. Skipped, with the reason, where it cannot run.
"""

import filecmp
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import slurm_cluster
from conftest import REPO, run_snakemake

pytestmark = pytest.mark.slow
SLURM_VENV = REPO / ".venv-slurm"


def slurm_snakemake() -> str:
    """snakemake from an environment with the pinned SLURM executor plugin (created once)."""
    exe = SLURM_VENV / "bin" / "snakemake"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(SLURM_VENV)], check=True)
        result = subprocess.run([str(SLURM_VENV / "bin" / "pip"), "install", "-q", "-e", f"{REPO}[test,slurm]"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"could not install the SLURM executor plugin: {result.stderr[-500:]}")
    return str(exe)


@pytest.fixture(scope="module")
def cluster():
    try:
        slurm_cluster.start()
    except slurm_cluster.Unavailable as why:
        pytest.skip(f"no local SLURM: {why}")
    yield
    slurm_cluster.stop()


#: the profile's documented switch for clusters without accounting (README, profiles/slurm)
NO_ACCOUNTING = ("# slurm-status-command: squeue\n", "# slurm-no-account: true\n")


def project_profile_without_conda(tmp_path) -> Path:
    """The project's SLURM profile as shipped, with its documented no-accounting lines uncommented
    (the test cluster has no accounting database) and conda switched off: CI cannot reach conda
    channels, so the jobs use the plugin's environment (which holds the same pinned packages)."""
    text = (REPO / "profiles/slurm/config.yaml").read_text()
    for line in NO_ACCOUNTING:
        assert line in text, f"the profile no longer documents {line.strip()!r}"
        text = text.replace(line, line.removeprefix("# "))
    profile = yaml.safe_load(text)
    assert profile["executor"] == "slurm" and profile["software-deployment-method"] == "conda"
    del profile["software-deployment-method"]
    folder = tmp_path / "profile"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def tree_files(root: Path) -> list[str]:
    skip = ("logs/", "benchmarks/")
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                  and not str(p.relative_to(root)).startswith(skip))


def test_slurm_run_equals_local_run(cluster, tmp_path, atlas_dir):
    """The group stage of a small synthetic cohort (coupling, group statistics, clinical
    correlations, classification) through SLURM gives byte-identical tables to a local run."""
    from sfc.simulate.connectome import simulate_connectome_cohort

    cohort = simulate_connectome_cohort(tmp_path / "site", atlas_dir=atlas_dir, seed=2, weights=("count",),
                                        n_per_group={"TRD": 8, "nTRD": 8, "HC": 4})
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "input": "connectomes", "connectomes_dirs": [str(cohort.out_dir)],
        "participants": str(cohort.participants_tsv), "atlas_dir": str(atlas_dir),
        "coupling": {"methods": ["spearman", "communication"], "min_neighbours": 5, "path_transform": "inv",
                     "distance": {}},
        "classification": {"modes": ["nested"], "n_permutations": 0, "n_repeats": 1,
                           "models": ["logreg_l2"], "n_bootstrap": 200},
    }))

    local = run_snakemake("--cores", "2", "--configfile", config, "--config", f"output_dir={tmp_path}/local",
                          workdir=tmp_path / "work_local", timeout=900)
    assert local.returncode == 0, local.stderr[-3000:]

    start = time.perf_counter()
    slurm = run_snakemake("--profile", project_profile_without_conda(tmp_path),
                          "--configfile", config, "--config", f"output_dir={tmp_path}/slurm",
                          workdir=tmp_path / "work_slurm", snakemake=slurm_snakemake(), timeout=1200)
    seconds = time.perf_counter() - start
    assert slurm.returncode == 0, slurm.stderr[-3000:]
    log = slurm.stderr + slurm.stdout
    assert "has been submitted with SLURM jobid" in log  # really went through the scheduler
    print(f"\nworkflow through SLURM: {seconds:.0f} s")

    local_files, slurm_files = tree_files(tmp_path / "local"), tree_files(tmp_path / "slurm")
    assert local_files == slurm_files and any(f.startswith("group/") for f in local_files)
    for rel in local_files:
        a, b = tmp_path / "local" / rel, tmp_path / "slurm" / rel
        if rel.endswith(".nii.gz"):  # gzip headers hold a time stamp: compare the images
            import nibabel as nib
            import numpy as np
            assert np.array_equal(np.asanyarray(nib.load(a).dataobj), np.asanyarray(nib.load(b).dataobj)), rel
        elif rel.endswith(".png") or rel == "report.html":
            # pictures, and the report's provenance (date, command line, executor) differ by design
            continue
        else:
            assert filecmp.cmp(a, b, shallow=False), rel
    shutil.rmtree(tmp_path / "work_slurm" / ".snakemake", ignore_errors=True)
