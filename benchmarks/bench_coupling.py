"""Benchmark of the coupling stage: Spearman SFC for 1000 subjects x 246 regions.

Times, in one run on the same synthetic matrices:

1. ``baseline``: the plain way, one ``scipy.stats.spearmanr`` call per region
   (246 per subject), on ``--baseline-subjects`` subjects; its per-subject time
   is scaled to ``--subjects`` (default 1000; pass ``--baseline-subjects 1000``
   to time all of them);
2. ``batched``: :func:`sfc.coupling.spearman` on all subjects at once (arrays in
   memory), best of ``--repeats``;
3. ``stage``: the whole stage from files: read every SC and FC TSV
   (:func:`sfc.coupling.read_sc` / ``read_fc``, with all checks), compute, and
   write each subject's ``index, name, sfc`` table (``coupling.write_region_tables``);
4. ``per_file_reader``: the previous reader (one pyarrow call per file, with the same
   checks), on ``--per-file-subjects`` subjects, scaled, to compare in the same run.

The matrices look like the workflow's: SC are symmetric streamline counts
(integers, ~50 % density, so many ties), FC Pearson r written to 6 decimals,
both written by the ``%.10g`` TSV writer of :mod:`sfc.io`. ``--unique`` distinct
subjects are generated and their files copied to reach ``--subjects`` files
(every file is still parsed on its own).

    nice -n 10 .venv/bin/python benchmarks/bench_coupling.py

Results go to ``benchmarks/results/coupling.json`` (appended under a key per run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.stats  # noqa: E402

from sfc import coupling, io, paths  # noqa: E402


def synthetic_pair(rng, n=246, density=0.5):
    """A streamline-count SC (symmetric, zero diagonal) and a Pearson FC that follows it in part."""
    xyz = rng.normal(0, 40, (n, 3))
    dist = np.sqrt(((xyz[:, None] - xyz[None]) ** 2).sum(-1))
    p_edge = np.exp(-dist / np.quantile(dist, density))
    edge = np.triu(rng.random((n, n)) < p_edge, 1)
    count = np.where(edge, rng.poisson(200 * p_edge) + 1, 0).astype(float)
    sc = count + count.T
    latent = rng.standard_normal((300, n)) @ (np.eye(n) + 0.02 * sc / sc.mean())
    fc = np.round(np.corrcoef(latent + rng.standard_normal((300, n)) * 2, rowvar=False), 6)
    return sc, fc


def baseline_loop(sc, fc, min_neighbours=3):
    """One scipy.stats.spearmanr call per region: the straightforward implementation."""
    n = len(sc)
    out = np.full(n, np.nan)
    for i in range(n):
        keep = (sc[i] > 0) & np.isfinite(fc[i])
        keep[i] = False
        if keep.sum() >= min_neighbours:
            out[i] = scipy.stats.spearmanr(sc[i, keep], fc[i, keep]).statistic
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subjects", type=int, default=1000)
    ap.add_argument("--regions", type=int, default=246)
    ap.add_argument("--unique", type=int, default=40, help="distinct subjects generated (files copied)")
    ap.add_argument("--baseline-subjects", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="threads in the stage timing (reading and spearman)")
    ap.add_argument("--per-file-subjects", type=int, default=200,
                    help="subjects read with the per-file reader for comparison (0: skip)")
    ap.add_argument("--workdir", default=None, help="where to write the TSVs (default: a temporary folder)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "coupling.json"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    load_start = os.getloadavg()
    rng = np.random.default_rng(args.seed)
    n, s_total = args.regions, args.subjects
    uniq = [synthetic_pair(rng, n) for _ in range(args.unique)]
    sc = np.stack([uniq[k % args.unique][0] for k in range(s_total)])
    fc = np.stack([uniq[k % args.unique][1] for k in range(s_total)])
    labels = pd.DataFrame({"index": np.arange(1, n + 1), "name": [f"R{k}" for k in range(1, n + 1)]})

    # 1. Baseline: per-region scipy loop.
    nb = min(args.baseline_subjects, s_total)
    t = time.perf_counter()
    c = time.process_time()
    ref = np.stack([baseline_loop(sc[k], fc[k]) for k in range(nb)])
    base_wall = (time.perf_counter() - t) / nb
    base_cpu = (time.process_time() - c) / nb

    # 2. Batched, in memory.
    walls, cpus = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        c = time.process_time()
        fast = coupling.spearman(sc, fc)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    max_diff = float(np.nanmax(np.abs(fast[:nb] - ref)))
    same_nan = bool(np.array_equal(np.isnan(fast[:nb]), np.isnan(ref)))

    # 3. Whole stage from TSV files.
    tmp = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_coupling_"))
    subjects = [f"{k:04d}" for k in range(1, s_total + 1)]
    sc_paths = [paths.sc_matrix(tmp, s, None, "BENCH", "count") for s in subjects]
    fc_paths = [paths.fc_matrix(tmp, s, None, "BENCH") for s in subjects]
    out_paths = [paths.sfc_table(tmp, s, None, "BENCH", "spearman") for s in subjects]
    for k, s in enumerate(subjects):
        Path(sc_paths[k]).parent.mkdir(parents=True, exist_ok=True)
        Path(fc_paths[k]).parent.mkdir(parents=True, exist_ok=True)
        if k < args.unique:
            io.write_matrix(sc_paths[k], sc[k])
            io.write_matrix(fc_paths[k], fc[k])
        else:
            shutil.copyfile(sc_paths[k % args.unique], sc_paths[k])
            shutil.copyfile(fc_paths[k % args.unique], fc_paths[k])
    mb = sum(os.path.getsize(p) for p in sc_paths[: args.unique] + fc_paths[: args.unique]) / args.unique / 2 ** 20
    t0 = time.perf_counter()
    c0 = time.process_time()
    sc_f = coupling.read_sc(sc_paths, n, threads=args.threads)
    fc_f = coupling.read_fc(fc_paths, n, threads=args.threads)
    t1 = time.perf_counter()
    c1 = time.process_time()
    values = coupling.spearman(sc_f, fc_f, threads=args.threads)
    t2 = time.perf_counter()
    c2 = time.process_time()
    coupling.write_region_tables(out_paths, values, labels)
    t3 = time.perf_counter()
    stage_cpu = time.process_time() - c0
    assert np.allclose(values, fast, equal_nan=True)

    # 4. The per-file reader (before batching) on a subset, same threads, scaled.
    per_file = None
    npf = min(args.per_file_subjects, s_total)
    if npf:
        from concurrent.futures import ThreadPoolExecutor

        def one(job):
            path, kind, sym, nan = job
            return coupling._parse_matrix(Path(path), n, kind, sym, nan)

        jobs = [(p, "SC", True, False) for p in sc_paths[:npf]] + [(p, "FC", False, True) for p in fc_paths[:npf]]
        t = time.perf_counter()
        c = time.process_time()
        with ThreadPoolExecutor(args.threads) as pool:
            mats = list(pool.map(one, jobs))
        pf_wall, pf_cpu = time.perf_counter() - t, time.process_time() - c
        t = time.perf_counter()             # the batch reader on the same subset, right after
        c = time.process_time()
        coupling.read_sc(sc_paths[:npf], n, threads=args.threads)
        coupling.read_fc(fc_paths[:npf], n, threads=args.threads)
        bt_wall, bt_cpu = time.perf_counter() - t, time.process_time() - c
        same = all(np.array_equal(m, sc_f[k]) for k, m in enumerate(mats[:npf])) and \
            all(np.array_equal(m, fc_f[k], equal_nan=True) for k, m in enumerate(mats[npf:]))
        per_file = {"subjects_timed": npf, f"read_seconds_for_{s_total} (scaled)": pf_wall * s_total / npf,
                    f"read_cpu_seconds_for_{s_total} (scaled)": pf_cpu * s_total / npf,
                    "same_matrices_as_batch_reader": bool(same),
                    f"batch_reader_same_subjects_seconds_for_{s_total} (scaled)": bt_wall * s_total / npf,
                    f"batch_reader_same_subjects_cpu_seconds_for_{s_total} (scaled)": bt_cpu * s_total / npf}
        del mats
    if not args.workdir:
        shutil.rmtree(tmp, ignore_errors=True)

    baseline_total = base_wall * s_total
    best = min(walls)
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
                    "load_average_start_1_5_15m": list(load_start), "load_average_end_1_5_15m": list(os.getloadavg()),
                    "python": platform.python_version(), "numpy": np.__version__,
                    "scipy": scipy.__version__, "pandas": pd.__version__},
        "subjects": s_total, "regions": n,
        "baseline": {"subjects_timed": nb, "seconds_per_subject": base_wall,
                     "cpu_seconds_per_subject": base_cpu,
                     f"seconds_for_{s_total}_subjects (scaled)": baseline_total},
        "batched": {"seconds_best": best, "seconds_all": walls, "cpu_seconds_best": min(cpus),
                    "max_abs_diff_vs_baseline": max_diff, "same_nan_pattern": same_nan},
        "speedup_wall": baseline_total / best,
        "speedup_cpu": base_cpu * s_total / min(cpus),
        "goal_speedup": 30,
        "stage": {"read_seconds": t1 - t0, "coupling_seconds": t2 - t1, "write_seconds": t3 - t2,
                  "total_seconds": t3 - t0, "cpu_seconds": stage_cpu,
                  "read_cpu_seconds": c1 - c0, "coupling_cpu_seconds": c2 - c1, "write_cpu_seconds": stage_cpu - (c2 - c0), "threads": args.threads,
                  "reader": (f"pyarrow {__import__('pyarrow').__version__}, {coupling._BATCH_FILES} files per call"
                             if coupling._BATCH_PARSE else "pandas C parser, per file"),
                  "mib_per_subject_sc_plus_fc": mb, "goal_seconds": 10},
        "per_file_reader": per_file,
    }
    print(json.dumps(result, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(out.read_text()) if out.is_file() else {}
    runs[f"{result['when']}_{s_total}x{n}"] = result
    out.write_text(json.dumps(runs, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
