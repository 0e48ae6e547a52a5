"""What each job asks the scheduler for (``mem_mb``, ``runtime``), from the work it does.

A SLURM job that asks for too little memory or time is killed; one that asks for ten times
too much waits longer in the queue and blocks others. So every rule's request is a function
of what its job processes, not a constant tuned to the demo:

- per-subject rules: the voxels and volumes of the subject's scans (read from the NIfTI
  headers while the workflow is planned, :func:`unit_work`), and for tractography, SIFT2 and
  the connectomes the streamline count and chunks of the config;
- group rules: the number of subjects and regions.

Each rule has a :class:`Cost`: peak memory and CPU time as straight lines in one measure of
that work, fitted to measured runs at two sizes (the demo's subjects and a real-sized one:
benchmarks/results/realscale.json, benchmarks/README.md "Real scale"). The request is the
line times :data:`MARGIN`, wall time being CPU time over the threads the job can use, then
times the attempt: a job killed for memory or time is retried with twice as much (the SLURM
profile's ``retries``), the safety net rather than the plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from .io import nifti_dims

#: requests are the fitted cost times this (run-to-run and subject-to-subject spread; the
#: goal is declared >= measured on the first attempt and <= 3x measured for big jobs)
MARGIN = 1.5
#: no job asks for less (minutes): a few seconds of work still waits for Python and its imports
MIN_RUNTIME = 5
MIN_MEM_MB = 500
MEGA = 1e6


@dataclass(frozen=True)
class Work:
    """What one subject's (or session's) jobs process."""

    t1_voxels: int = 0
    dwi_voxels: int = 0          # one volume
    dwi_volumes: int = 0
    bold_voxels: int = 0         # one volume
    bold_volumes: int = 0        # all runs
    streamlines: int = 0
    chunks: int = 1

    @property
    def dwi_voxel_volumes(self) -> float:
        return self.dwi_voxels * self.dwi_volumes

    @property
    def bold_voxel_volumes(self) -> float:
        return self.bold_voxels * self.bold_volumes


@lru_cache(maxsize=None)
def _voxels_volumes(path: str) -> tuple[int, int]:
    x, y, z, t = nifti_dims(path)
    return x * y * z, t


def unit_work(t1w=None, dwi=None, bolds=(), *, streamlines: int = 0, chunks: int = 1) -> Work:
    """:class:`Work` from the scans' headers (each file read once per planning process)."""
    t1 = _voxels_volumes(str(t1w))[0] if t1w else 0
    dv, dt = _voxels_volumes(str(dwi)) if dwi else (0, 0)
    bold = [_voxels_volumes(str(b)) for b in bolds]
    return Work(t1_voxels=t1, dwi_voxels=dv, dwi_volumes=dt, bold_voxels=max((v for v, _ in bold), default=0),
                bold_volumes=sum(t for _, t in bold), streamlines=int(streamlines), chunks=int(chunks))


@dataclass(frozen=True)
class Cost:
    """Peak memory (MB) and CPU time (s) as ``base + per * measure(work)``.

    ``measure`` names a :class:`Work` attribute (in millions) or ``"none"``; ``parallel`` is the
    share of the CPU time that the job's threads divide (the rest runs on one thread);
    ``mem_per_thread`` is memory each extra thread adds (``per_thread_measure`` the
    measure it scales with, in millions).
    """

    measure: str
    mem_base: float
    mem_per: float
    cpu_base: float
    cpu_per: float
    parallel: float = 0.0
    mem_per_thread: float = 0.0
    per_thread_measure: str = "none"


def _measure(work: Work, name: str) -> float:
    return 0.0 if name == "none" else float(getattr(work, name)) / MEGA


#: Fitted on the demo's 12 subjects (results/benchmarks, 2026-12-07: T1w 2 mm 0.9 M voxels,
#: DWI 2.5 mm 0.30 M voxels x 34 volumes, BOLD 4 mm 0.07 M voxels x 150, 20,000 streamlines;
#: largest subject) and the real-sized subject of benchmarks/results/realscale.json.
COSTS = {
    "anat_preprocess": Cost("t1_voxels", 350, 150, 10, 40),
    "anat_5tt": Cost("t1_voxels", 380, 100, 3, 5),
    "anat_atlas": Cost("t1_voxels", 380, 80, 2, 2),
    "dwi_preprocess": Cost("dwi_voxel_volumes", 300, 25, 4, 2, parallel=0.8),
    "dwi_tensor": Cost("dwi_voxel_volumes", 60, 5, 0.5, 0.1, parallel=0.8),
    "dwi_fod": Cost("dwi_voxel_volumes", 100, 12, 5, 8, parallel=0.9),
    "dwi_register": Cost("t1_voxels", 350, 60, 3, 3),
    "dwi_atlas": Cost("t1_voxels", 380, 100, 2, 5),
    "dwi_5tt": Cost("t1_voxels", 400, 150, 3, 5),
    # chunks run side by side, each with its own copy of the FOD image (dwi voxels)
    "dwi_tractography": Cost("streamlines", 60, 0, 2, 1500, parallel=1.0, mem_per_thread=350,
                             per_thread_measure="dwi_voxels"),
    "dwi_sift2": Cost("streamlines", 300, 1500, 10, 500, parallel=0.9),
    "dwi_connectome": Cost("streamlines", 150, 50, 1, 20),
    "dwi_qc": Cost("dwi_voxels", 250, 100, 1, 1),
    "func_preprocess": Cost("bold_voxel_volumes", 350, 25, 5, 3),
    "func_connectivity": Cost("bold_voxel_volumes", 400, 20, 3, 0.5),
    "func_qc": Cost("bold_voxel_volumes", 250, 10, 1, 0.1),
}


def _threads_used(threads: int, work: Work, rule: str) -> int:
    # tractography runs one single-threaded tckgen per chunk: more threads than chunks idle
    return max(1, min(int(threads), work.chunks) if rule == "dwi_tractography" else int(threads))


def estimate(rule: str, work: Work, threads: int = 1) -> tuple[float, float]:
    """(peak MB, wall seconds) the cost model predicts for one job (before the margin)."""
    c = COSTS[rule]
    n = _threads_used(threads, work, rule)
    units = _measure(work, c.measure)
    mem = c.mem_base + c.mem_per * units + c.mem_per_thread * _measure(work, c.per_thread_measure) * n
    cpu = c.cpu_base + c.cpu_per * units
    wall = cpu * (1 - c.parallel) + cpu * c.parallel / n
    return mem, wall


def mem_mb(rule: str, work: Work, threads: int = 1, attempt: int = 1) -> int:
    """Memory to request (MB): the estimate x :data:`MARGIN` x attempt, in 100 MB steps."""
    mem, _ = estimate(rule, work, threads)
    return int(math.ceil(max(mem * MARGIN, MIN_MEM_MB) / 100.0) * 100) * int(attempt)


def runtime(rule: str, work: Work, threads: int = 1, attempt: int = 1) -> int:
    """Time to request (minutes): the estimate x :data:`MARGIN` x attempt."""
    _, wall = estimate(rule, work, threads)
    return max(MIN_RUNTIME, int(math.ceil(wall * MARGIN / 60.0))) * int(attempt)


def group_mem_mb(n_units: int, per_unit_mb: float, base_mb: float = 1000, attempt: int = 1) -> int:
    """Memory of a rule over all subjects: ``base + per_unit x subjects`` (MB), x attempt."""
    return int(math.ceil((base_mb + per_unit_mb * n_units) / 100.0) * 100) * int(attempt)


def group_runtime(n_units: int, per_unit_s: float, base_min: float = 10, attempt: int = 1) -> int:
    """Time of a rule over all subjects: ``base + per_unit x subjects`` (minutes), x attempt."""
    return int(math.ceil(base_min + per_unit_s * n_units / 60.0)) * int(attempt)
