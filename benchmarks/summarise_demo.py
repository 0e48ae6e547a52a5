"""Summarise a finished part of ``make demo`` into results/demo.json (one record per part).

Reads every Snakemake ``benchmark:`` file under ``<output_dir>/benchmarks`` and writes, per
rule, the number of jobs, median and maximum wall time, summed wall and CPU time and the
peak resident memory. The phase times of the run (generation, workflow, evaluation) and the
CPU time of the whole ``make demo`` (``/usr/bin/time``: user + system, children included)
are measured outside the workflow and passed on the command line, so the file says how
they were obtained.

    .venv/bin/python benchmarks/summarise_demo.py --part images --generate-s 116 \
        --workflow-s 1900 --evaluate-s 20 --total-s 2040 --total-cpu-s 3400 \
        --machine "2 vCPUs, idle" --note "..."
    .venv/bin/python benchmarks/summarise_demo.py --part study --generate-s 60 \
        --workflow-s 150 --total-s 210 --total-cpu-s 240 --machine "2 vCPUs, idle"

Snakemake's per-job ``cpu_time`` samples the job's process tree while it runs, so child
processes that start and end between samples (most MRtrix3 commands) are under-counted:
the sum over jobs is a lower bound, the ``/usr/bin/time`` total the real figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
from datetime import date
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results" / "demo.json"


def rule_of(path: Path, bench_dir: Path) -> str:
    """Rule name of a benchmark file (per-subject files: ``sub-X_<rule>[_atlas-Y].tsv``)."""
    rel = path.relative_to(bench_dir)
    stem = path.stem
    if rel.parts[0].startswith("sub-"):
        stem = re.sub(r"^sub-[^_]+_", "", stem)
        stem = re.sub(r"(_ses-[^_]+)", "", stem)
        return re.sub(r"_atlas-.*$", "", stem)
    if rel.parts[0] == "group":  # group/<step>_atlas-..._desc-...
        return "group:" + stem.split("_")[0]
    if len(rel.parts) > 1:  # classify/, coupling/, prepare_atlas/
        return rel.parts[0]
    return stem


def per_rule(output_dir: Path) -> tuple[list[dict], int]:
    bench_dir = output_dir / "benchmarks"
    rows = []
    for f in sorted(bench_dir.rglob("*.tsv")):
        t = pd.read_csv(f, sep="\t")
        rows.append(dict(rule=rule_of(f, bench_dir), s=float(t["s"].iloc[0]),
                         cpu=float(t["cpu_time"].iloc[0]), rss=float(t["max_rss"].iloc[0])))
    df = pd.DataFrame(rows)
    out = []
    for rule, g in df.groupby("rule"):
        out.append(dict(rule=rule, jobs=int(len(g)), median_s=round(g.s.median(), 1), max_s=round(g.s.max(), 1),
                        sum_s=round(g.s.sum(), 1), sum_cpu_s=round(g.cpu.sum(), 1),
                        max_rss_mb=round(g.rss.max(), 1)))
    out.sort(key=lambda r: -r["sum_s"])
    return out, len(df)


PARTS = {
    "images": dict(command="make demo-images", output_dir="results",
                   cohort="12 subjects (5 TRD, 5 nTRD, 2 HC), T1w 2 mm, DWI 2.5 mm x 32 dirs + 2 b0, BOLD 4 mm x 150 vols",
                   settings="config/config.yaml defaults: SyN, no mrdegibbs, dwi.response fa, iFOD2 20000 streamlines "
                            "mask-seeded (1 thread), 24P+WM+CSF band-pass, both atlases, 3 coupling methods, default "
                            "classification"),
    "study": dict(command="make demo-study", output_dir="results/study",
                  cohort="308 subjects (72 TRD, 152 nTRD, 84 HC, 3 sites), connectome level (sfc.simulate preset study)",
                  settings="config/study.yaml over the defaults: input connectomes, spearman only, both atlases, "
                           "classification with 50 permutations and 5 outer repeats"),
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=sorted(PARTS), required=True,
                    help="images: make demo-images (results/); study: make demo-study (results/study/)")
    ap.add_argument("--output-dir", type=Path, default=None, help="default: the part's output folder")
    ap.add_argument("--generate-s", type=float, required=True)
    ap.add_argument("--workflow-s", type=float, required=True)
    ap.add_argument("--evaluate-s", type=float, default=None)
    ap.add_argument("--total-s", type=float, required=True, help="wall time of the part's make target")
    ap.add_argument("--total-cpu-s", type=float, required=True, help="user + system CPU of the part's make target")
    ap.add_argument("--snakemake-cpu-s", type=float, default=None, help="CPU of the main Snakemake process")
    ap.add_argument("--machine", required=True)
    ap.add_argument("--note", default="")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    part = PARTS[a.part]
    rules, n_jobs = per_rule(a.output_dir or Path(part["output_dir"]))
    record = dict(date=str(date.today()), command=f"{part['command']} (fresh clone, after make setup)",
                  machine=f"{platform.machine()}, {a.machine}", cohort=part["cohort"], settings=part["settings"],
                  wall_s=dict(generate=a.generate_s, workflow=a.workflow_s, evaluate=a.evaluate_s, total=a.total_s),
                  cpu_s=dict(total=a.total_cpu_s, snakemake_main_process=a.snakemake_cpu_s,
                             sum_job_cpu_time_lower_bound=round(sum(r["sum_cpu_s"] for r in rules), 1)),
                  jobs=n_jobs, sum_job_wall_s=round(sum(r["sum_s"] for r in rules), 1), note=a.note,
                  per_rule=rules)
    # one record per part of `make demo`; the other part's record is kept
    previous = json.loads(a.out.read_text()) if a.out.is_file() else {}
    recorded = {k: v for k, v in previous.items() if k in PARTS}
    recorded[a.part] = record
    a.out.write_text(json.dumps(recorded, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "per_rule"}, indent=1))


if __name__ == "__main__":
    main()
