"""Benchmark of sfc.classify: full nested CV + permutations at the study's scale.

224 subjects (72 TRD, 152 nTRD as in the study) x 246 regions (BNA-246), 20
regions shifted in TRD, two covariates and two sites, all six models, the
default settings (outer 5-fold x 10 repeats, inner 3-fold, 1 outer repeat per
permutation, study mode and leave-one-site-out included) on ``--n-jobs`` workers.

    .venv/bin/python benchmarks/bench_classify.py --n-permutations 1000 --n-jobs 2     # the goal run
    nice .venv/bin/python benchmarks/bench_classify.py --n-jobs 1 --extrapolate 40    # CPU cost only

With ``--extrapolate N``, a run with N permutations is timed as well as one with
none; the cost of 1000 is then ``t0 + 1000 * (tN - t0) / N`` (the permutations are
independent tasks of equal expected cost); with ``--n-jobs 1`` the CPU seconds are
exact and their half is the projected wall time on 2 dedicated cores. The goal run
records its wall time, the CPU seconds of the main process and of the workers, and
whether the wall time is under the goal (600 s). Results go to
``benchmarks/results/classify.json`` (appended under a key per run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

import numpy as np  # noqa: E402

from sfc import classify as C  # noqa: E402


def study_scale_dataset(seed: int = 0, shift: float = 0.35) -> C.Dataset:
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(72, int), np.zeros(152, int)]
    X = rng.standard_normal((224, 246))
    X[y == 1, :20] += shift
    cov = np.column_stack([rng.normal(40, 10, 224), rng.integers(0, 2, 224)])
    sites = np.where(rng.random(224) < 0.5, "site1", "site2")
    return C.Dataset(X=X, y=y, regions=[f"region_{i}" for i in range(246)],
                     subjects=[f"sub-{i:03d}" for i in range(224)], covariates=cov,
                     covariate_names=["age", "sex"], sites=sites)


def _children_cpu() -> dict:
    """CPU seconds (user + system) of each live child process (the joblib/loky workers)."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():              # ppid
            out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def timed(ds, n_perm, n_jobs, repeats):
    """Wall seconds, CPU seconds of this process, CPU seconds of its worker processes.

    With ``n_jobs == 1`` all work runs in this process, so its CPU time is exact.
    With workers, their CPU time is read from /proc just after the run (the
    loky workers stay alive between runs, so the difference is taken per pid).
    """
    settings = C.Settings(n_permutations=n_perm, n_jobs=n_jobs, n_repeats=repeats)
    before = _children_cpu()
    t, c = time.perf_counter(), time.process_time()
    res = C.run_classification(ds, settings)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    after = _children_cpu()
    workers = sum(v - before.get(pid, 0.0) for pid, v in after.items())
    return wall, cpu, workers, res


def _versions() -> dict:
    import joblib
    import numpy
    import scipy
    import sklearn
    import xgboost
    return {"python": platform.python_version(), "numpy": numpy.__version__, "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__, "xgboost": xgboost.__version__, "joblib": joblib.__version__}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-permutations", type=int, default=1000)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--n-repeats", type=int, default=10)
    ap.add_argument("--extrapolate", type=int, default=0,
                    help="time N permutations (and 0) and extrapolate to --n-permutations")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "classify.json"))
    ap.add_argument("--label", default=None)
    args = ap.parse_args(argv)
    ds = study_scale_dataset()
    record = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(),
              "cpus_visible": os.cpu_count(), "n_jobs": args.n_jobs,
              "load_average_start": os.getloadavg(), "n_subjects": 224, "n_regions": 246,
              "models": list(C.DEFAULT_MODELS), "n_repeats": args.n_repeats,
              "permutation_repeats": 1, "modes": ["nested", "study", "leave-one-site-out"],
              "versions": _versions()}
    if args.extrapolate:
        t0, c0, _, _ = timed(ds, 0, args.n_jobs, args.n_repeats)
        tn, cn, _, res = timed(ds, args.extrapolate, args.n_jobs, args.n_repeats)
        per = (tn - t0) / args.extrapolate
        record.update(measured_permutations=args.extrapolate, seconds_without_permutations=round(t0, 1),
                      seconds_measured=round(tn, 1), seconds_per_permutation=round(per, 3),
                      n_permutations=args.n_permutations,
                      seconds_extrapolated=round(t0 + args.n_permutations * per, 1), extrapolated=True)
        if args.n_jobs == 1:
            # CPU time is what a dedicated core would need: the load of a shared machine
            # stretches wall time but not (much) CPU time. Permutations are independent
            # equal-cost tasks, so k dedicated cores need about CPU / k.
            cpu_per = (cn - c0) / args.extrapolate
            cpu_total = c0 + args.n_permutations * cpu_per
            record.update(cpu_seconds_without_permutations=round(c0, 1),
                          cpu_seconds_per_permutation=round(cpu_per, 3),
                          cpu_seconds_extrapolated=round(cpu_total, 1),
                          projected_wall_seconds_on_2_dedicated_cores=round(cpu_total / 2, 1))
    else:
        tn, cn, cw, res = timed(ds, args.n_permutations, args.n_jobs, args.n_repeats)
        record.update(n_permutations=args.n_permutations, seconds_measured=round(tn, 1),
                      cpu_seconds_main_process=round(cn, 1), cpu_seconds_workers=round(cw, 1),
                      cpu_seconds_total=round(cn + cw, 1), extrapolated=False,
                      goal_seconds=600, goal_met=bool(tn < 600))
    record["load_average_end"] = os.getloadavg()
    nested = res.summary[res.summary["mode"] == C.NESTED].set_index("model")
    record["auc_nested"] = nested["auc"].round(3).to_dict()
    record["p_permutation"] = nested["p_permutation"].round(4).to_dict()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(out.read_text()) if out.is_file() else {}
    key = args.label or f"n_perm={args.n_permutations},n_jobs={args.n_jobs}" + \
        (f",extrapolated_from={args.extrapolate}" if args.extrapolate else "")
    data[key] = record
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
