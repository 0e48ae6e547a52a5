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
line times :data:`MARGIN` (memory) or :data:`TIME_MARGIN` (time, the CPU time over the threads
the job can use), then times the attempt: a job killed for memory or time is retried with twice as much (the SLURM
profile's ``retries``), the safety net rather than the plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from .io import nifti_dims

#: memory requests are the fitted peak times this (run-to-run and subject-to-subject spread;
#: the goal is declared >= measured on the first attempt and <= 3x measured for big jobs)
MARGIN = 1.5
#: time requests: the fitted CPU time over the threads, times this. Wall time exceeds CPU time
#: with file I/O and on shared cores: on the 2-vCPU VM of the measurements the demo's jobs ran
#: 1.6-1.9x their CPU time with two jobs on two cores. Asking too little time kills the job, too
#: much only queues it longer; 2.5 stays within 3x of a dedicated core's wall time.
TIME_MARGIN = 2.5
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
    measure it scales with, in millions); ``wall_factor`` is wall over CPU time of a job that
    waits on its files (the rest are CPU-bound).
    """

    measure: str
    mem_base: float
    mem_per: float
    cpu_base: float
    cpu_per: float
    parallel: float = 0.0
    mem_per_thread: float = 0.0
    per_thread_measure: str = "none"
    wall_factor: float = 1.0


def _measure(work: Work, name: str) -> float:
    return 0.0 if name == "none" else float(getattr(work, name)) / MEGA


#: Lines through two measured points per rule (Snakemake's benchmark files: peak RSS of the job's
#: processes, CPU seconds): the largest demo subject (results/benchmarks, 2026-12-07: T1w 2 mm,
#: 0.90 M voxels; DWI 2.5 mm, 0.30 M voxels x 34 volumes; BOLD 4 mm, 0.07 M voxels x 150; 20,000
#: streamlines) and the real-sized subject of benchmarks/results/realscale.json (T1w 1 mm, 7.2 M
#: voxels; DWI 2 mm, 0.58 M x 70 volumes; BOLD 2.5 mm, 0.30 M x 300; 1 M streamlines, real-data
#: preset). Measures in millions. Where the second point fell below the first (noise of library
#: start-up), the rule is a constant at the larger point.
COSTS = {
    "anat_preprocess": Cost("t1_voxels", 505, 41, 8, 8.1),              # 542 -> 801 MB, 15 -> 66 CPU-s
    "anat_5tt": Cost("t1_voxels", 387, 81, 4.5, 2.4),                    # 460 -> 973 MB, 7 -> 22 s
    "anat_atlas": Cost("t1_voxels", 428, 21, 3.1, 0.24),                 # 447 -> 582 MB, 3 -> 5 s
    "dwi_preprocess": Cost("dwi_voxel_volumes", 420, 1.5, 2, 1.7, parallel=0.8),   # 436 -> 478 MB, 14 -> 69 s
    "dwi_tensor": Cost("dwi_voxel_volumes", 60, 5, 0.5, 0.1, parallel=0.8),
    # real data's tournier response (the demo's fa is ~30x cheaper): through the real point
    "dwi_fod": Cost("dwi_voxel_volumes", 88, 7.1, 5, 1.5, parallel=0.9),  # 159 -> 374 MB, 7 -> 64 s
    "dwi_register": Cost("t1_voxels", 373, 19, 3.2, 1.6),                # 390 -> 511 MB, 5 -> 14 s
    "dwi_atlas": Cost("none", 450, 0, 4, 0),                             # 432 / 330 MB, 3.5 / 2.5 s
    "dwi_5tt": Cost("t1_voxels", 400, 80, 3, 3),
    # One single-threaded tckgen per running chunk, each holding the FOD and its dynamic-seeding
    # fixels (527 MB for tckgen alone at 0.58 M DWI voxels, lmax 8, whatever the count; 642 MB
    # for the job). iFOD2 with dynamic seeding at 2 mm: 274, 635 and 1988 CPU-s for 0.1, 0.3 and
    # 1 M streamlines, a line 73 + 1911 per M (residuals < 12 s; the fixed part is the seeding's
    # FOD segmentation; the demo's mask seeding at 2.5 mm: ~750 per M).
    "dwi_tractography": Cost("streamlines", 100, 0, 73, 1911, parallel=1.0, mem_per_thread=950,
                             per_thread_measure="dwi_voxels"),
    # tcksift2 at 0.1, 0.3 and 1 M streamlines: 454, 501, 625 MB and 107, 147, 317 CPU-s, lines
    # 440 + 186 MB and 81 + 236 CPU-s per M (residuals < 6). Its threads are credited with half
    # the work (292 CPU-s in 312 s wall with 2 threads on a loaded machine).
    "dwi_sift2": Cost("streamlines", 440, 186, 81, 236, parallel=0.5),
    "dwi_connectome": Cost("streamlines", 170, 15, 1, 4),                # 184 MB, 4.8 CPU-s at 1 M
    "dwi_qc": Cost("dwi_voxels", 250, 100, 1, 1),
    # 441 -> 1168 MB, 15 -> 176 CPU-s; its wall time is 1.9x its CPU time in the demo (the rest
    # of the jobs: 1.6-1.7x) and 2.75x in the real-scale run on a loaded machine: it reads and
    # writes the whole 4D series several times (gzip, antspyx)
    "func_preprocess": Cost("bold_voxel_volumes", 339, 9.3, 2, 2.0, wall_factor=2.0),
    "func_connectivity": Cost("bold_voxel_volumes", 419, 6.1, 5.4, 0.06),  # 486 -> 963 MB, 6 -> 10 s
    "func_qc": Cost("bold_voxel_volumes", 197, 6.5, 1.3, 0.02),          # 268 -> 774 MB, 1.5 -> 2.9 s
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
    if rule == "dwi_tractography":
        # each chunk pays the fixed part (dynamic seeding segments the FOD) on its own thread;
        # with fewer threads than chunks they run in waves
        waves = math.ceil(max(work.chunks, 1) / n)
        return mem, waves * (c.cpu_base + c.cpu_per * units / max(work.chunks, 1))
    cpu = c.cpu_base + c.cpu_per * units
    wall = (cpu * (1 - c.parallel) + cpu * c.parallel / n) * c.wall_factor
    return mem, wall


def mem_mb(rule: str, work: Work, threads: int = 1, attempt: int = 1) -> int:
    """Memory to request (MB): the estimate x :data:`MARGIN` x attempt, in 100 MB steps."""
    mem, _ = estimate(rule, work, threads)
    return int(math.ceil(max(mem * MARGIN, MIN_MEM_MB) / 100.0) * 100) * int(attempt)


def runtime(rule: str, work: Work, threads: int = 1, attempt: int = 1) -> int:
    """Time to request (minutes): the estimate x :data:`TIME_MARGIN` x attempt."""
    _, wall = estimate(rule, work, threads)
    return max(MIN_RUNTIME, int(math.ceil(wall * TIME_MARGIN / 60.0))) * int(attempt)


def group_mem_mb(n_units: int, per_unit_mb: float, base_mb: float = 1000, attempt: int = 1) -> int:
    """Memory of a rule over all subjects: ``base + per_unit x subjects`` (MB), x attempt."""
    return int(math.ceil((base_mb + per_unit_mb * n_units) / 100.0) * 100) * int(attempt)


def group_runtime(n_units: int, per_unit_s: float, base_min: float = 10, attempt: int = 1) -> int:
    """Time of a rule over all subjects: ``base + per_unit x subjects`` (minutes), x attempt."""
    return int(math.ceil(base_min + per_unit_s * n_units / 60.0)) * int(attempt)
