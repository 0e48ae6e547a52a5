"""Dry runs at scale: the workflow against a bare Snakefile, and wall time and peak memory per cohort size.

Three measurements, chosen with ``--run`` (any of them; default ``compare``):

``compare``: a dry run of ``--subjects`` (1000) fake BIDS subjects, the workflow against
bare Snakefiles generated from the workflow's own job graph (the jobs, their inputs and
outputs as a dry run lists them): one rule per workflow rule, the same wildcards, the same
jobs and the same edges, but plain wildcard patterns instead of input functions, and no
config validation or BIDS discovery. Both are dry-run in the same session, in alternation,
and the best of ``--repeats`` runs of each is compared. Goal: workflow / bare <= 1.5.

``scale``: wall time and peak memory (peak RSS of the snakemake process and its reaped
children, from ``wait4``) of one dry run of the whole workflow per cohort size in
``--scale-subjects`` (1000 2000 10000), smallest first. Before each size, the two largest
sizes measured so far predict its time (power law) and memory (linear); a size predicted
over ``--max-minutes`` (25) or ``--max-gb`` (12) is not run but extrapolated, after
measuring ``--fallback`` (4000) if it is not measured yet, and marked so in the record.
Goal at 10000 subjects: <= 5 min, <= 4 GB, time ratio 10000/1000 about 10 (linear).

``batched``: the consortium-scale way. One per-subject batch of ``--batch-subjects``
(10000) subjects (``snakemake subjects --batch subjects=1/<--batches>``), the parse-only
floor of the same cohort (a dry run asking for one atlas label table: config validation,
BIDS discovery and the rule definitions, no subject jobs), and the group stage alone
(``input: connectomes``) on fake connectome folders (empty SC/FC/time-series files, which
is all discovery and a dry run look at) of ``--group-subjects`` (1000 2000 10000) subjects,
with the same prediction rule as ``scale``.

    .venv/bin/python benchmarks/bench_dryrun.py [--run compare scale batched] [--subjects 1000] [--repeats 3]

Results go to benchmarks/results/dryrun.json: ``compare`` writes the top-level keys as
before, ``scale`` and ``batched`` their own keys; each run keeps the others' keys.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

from sfc import testing  # noqa: E402

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
JOB = re.compile(r"^(?:local)?rule (\w+):\n((?:    .*\n?)*)", re.M)


def parse_dry_run(text: str):
    """Jobs as {jobid: (rule, {wildcard: value})} and edges as (upstream, downstream),
    from a dry run's job listing (inputs and outputs of every job)."""
    jobs, inputs, producer = {}, {}, {}
    for rule, body in JOB.findall(text):
        fields = {}
        for line in body.splitlines():
            key, _, value = line.strip().partition(": ")
            fields[key] = value
        job_id = fields["jobid"]
        wildcards = dict(item.split("=", 1) for item in fields.get("wildcards", "").split(", ") if "=" in item)
        jobs[job_id] = (rule, wildcards)
        inputs[job_id] = [f for f in fields.get("input", "").split(", ") if f]
        for path in fields.get("output", "").split(", "):
            if path:
                producer[path] = job_id
    edges = [(producer[f], job) for job, files in inputs.items() for f in files if f in producer]
    return jobs, edges


DECLARATIONS = """\
    log:
        {log!r},
    benchmark:
        {bench!r}
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 1000 * attempt,
        runtime=lambda wildcards, attempt: 10 * attempt,
    conda:
        "env.yaml"
    script:
        "touch_outputs.py"
"""


def bare_snakefile(jobs, edges, declared: bool = False) -> str:
    """A Snakefile whose jobs and edges are those of the parsed graph, with plain patterns.

    ``declared=False``: each rule only touches its output (shell). ``declared=True``: each
    rule also carries what every workflow rule declares (log, benchmark, threads, resources
    scaled by attempt, conda, script), so the comparison isolates what the bare file lacks
    by definition: input functions, config validation and BIDS discovery.

    Jobs of one workflow rule whose inputs come from different upstream jobs' rules or
    wildcards become separate bare rules (``<rule>__2``, ...), so no input function is needed.
    """
    names = {}
    for rule, wc in jobs.values():
        names.setdefault(rule, sorted(wc))
    upstream = defaultdict(list)
    for up, down in edges:
        upstream[down].append(up)
    downstream = defaultdict(list)
    for up, down in edges:
        downstream[up].append(down)

    # Kahn's order, so every job's upstream variants are known before the job itself.
    pending = {j: len(set(upstream[j])) for j in jobs}
    order = [j for j, n in pending.items() if n == 0]
    for j in order:
        for d in set(downstream[j]):
            pending[d] -= 1
            if pending[d] == 0:
                order.append(d)
    assert len(order) == len(jobs), "the job graph has a cycle"

    variant_of, variant_inputs, variant_names, signatures = {}, {}, {}, {}
    for j in order:
        rule, wc = jobs[j]
        deps = defaultdict(set)
        for u in set(upstream[j]):
            u_variant = variant_of[u]
            u_wc = jobs[u][1]
            assert all(u_wc[n] == wc[n] for n in u_wc if n in wc), "shared wildcards must agree"
            deps[u_variant].add(tuple((n, u_wc[n]) for n in variant_names[u_variant] if n not in wc))
        signature = tuple(sorted((v, tuple(sorted(extras))) for v, extras in deps.items()))
        key = (rule, signature)
        if key not in signatures:
            count = sum(1 for r, _ in signatures if r == rule)
            signatures[key] = rule if count == 0 else f"{rule}__{count + 1}"
            variant = signatures[key]
            variant_names[variant] = names[rule]
            variant_inputs[variant] = signature
        variant_of[j] = signatures[key]

    def pattern(variant, literal=None):
        parts = [(literal or {}).get(n, f"{{{n}}}") for n in variant_names[variant]]
        return f"bare/{variant}/" + ("/".join(parts) if parts else "done") + ".out"

    lines = []
    variants = sorted(variant_inputs, key=lambda v: v != "all")
    for variant in variants:
        lines.append(f"rule {variant}:")
        ins = [pattern(up, dict(extra)) for up, extras in variant_inputs[variant] for extra in extras]
        if ins:
            lines.append("    input:")
            lines += [f"        {path!r}," for path in ins]
        if variant != "all":
            lines.append("    output:")
            lines.append(f"        {pattern(variant)!r},")
            if declared:
                stem = pattern(variant)[len("bare/"):-len(".out")]
                lines.append(DECLARATIONS.format(log=f"bare/logs/{stem}.log", bench=f"bare/bench/{stem}.tsv").rstrip())
            else:
                lines.append('    shell:\n        "touch {output}"')
        lines.append("")
    return "\n".join(lines)


def timed(cmd, cwd) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return elapsed, result


def n_jobs(stdout: str) -> int:
    return int(re.search(r"^total\s+(\d+)$", stdout, re.M).group(1))


def machine() -> dict:
    """Where and when: machine, load average, date, code version (the tree may be dirty)."""
    def git(*a):
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()
    import snakemake
    return {
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}, "
                   f"Snakemake {snakemake.__version__}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""),
    }


def measured(cmd, cwd, log: Path) -> dict:
    """Wall seconds and peak RSS of ``cmd`` (the process and its reaped children: ``wait4``'s
    ``ru_maxrss``, the largest single process, as ``/usr/bin/time -v`` reports it).
    Output goes to ``log``; the job count comes from the dry run's summary table."""
    log.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed (log {log}):\n{text[-3000:]}")
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    match = re.search(r"^total\s+(\d+)$", text, re.M)
    return {
        "seconds": round(elapsed, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_gb": round(peak / 1e9, 3),
        "jobs": int(match.group(1)) if match else 0,
        "load_before": round(load, 2),
    }


def bids_dataset(work: Path, n: int) -> Path:
    folder = work / f"bids{n}"
    if not (folder / "participants.tsv").exists():
        print(f"making {n} fake BIDS subjects in {folder}", flush=True)
        testing.make_dataset(folder, n)
    return folder


def connectome_folder(work: Path, n: int, atlases, weight: str) -> Path:
    """``n`` subjects' SC, FC and regional time series (empty files: discovery checks that
    they exist, a dry run reads nothing) and their participants.tsv, as an imaging run's
    output folder holds them."""
    from sfc import paths

    folder = work / f"connectomes{n}"
    if (folder / "participants.tsv").exists():
        return folder
    print(f"making {n} fake connectome sets in {folder}", flush=True)
    rows = []
    for i in range(n):
        subject = f"{i + 1:04d}"
        for a in atlases:
            for path in (paths.sc_matrix(folder, subject, None, a, weight), paths.fc_matrix(folder, subject, None, a),
                         paths.timeseries(folder, subject, None, a)):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).touch()
        rows.append(testing.participant_row(i, subject))
    testing.write_participants(folder, rows)
    return folder


def predict(points: dict, n: int) -> dict | None:
    """Time (power law through the two largest measured sizes) and peak memory (straight line
    through them) at ``n`` subjects; None with fewer than two measured sizes."""
    sizes = sorted(k for k, v in points.items() if not v.get("extrapolated"))
    if len(sizes) < 2:
        return None
    (n1, p1), (n2, p2) = [(s, points[s]) for s in sizes[-2:]]
    exponent = math.log(p2["seconds"] / p1["seconds"]) / math.log(n2 / n1)
    cpu_exponent = math.log(p2["cpu_seconds"] / p1["cpu_seconds"]) / math.log(n2 / n1)
    slope = (p2["peak_rss_gb"] - p1["peak_rss_gb"]) / (n2 - n1)
    return {
        "seconds": round(p2["seconds"] * (n / n2) ** exponent, 1),
        "cpu_seconds": round(p2["cpu_seconds"] * (n / n2) ** cpu_exponent, 1),
        "peak_rss_gb": round(p2["peak_rss_gb"] + slope * (n - n2), 3),
        "jobs": round(p2["jobs"] + (p2["jobs"] - p1["jobs"]) / (n2 - n1) * (n - n2)),
        "extrapolated": True,
        "from": f"{n1} and {n2} subjects: time ~ subjects^{exponent:.2f}, memory linear ({slope * 1000:.3f} GB per 1000)",
    }


def series(sizes, fallback: int, args, run_one) -> dict:
    """``run_one(n)`` for each size, smallest first, unless the prediction from the sizes
    measured so far exceeds the limits: then measure ``fallback`` (if not yet) and extrapolate."""
    points = {}
    for n in sorted(sizes):
        guess = predict(points, n)
        too_big = guess and (guess["seconds"] > 60 * args.max_minutes or guess["peak_rss_gb"] > args.max_gb)
        if too_big and fallback not in points and fallback < n:
            print(f"{n} subjects: predicted {guess['seconds']:.0f} s, {guess['peak_rss_gb']:.1f} GB: "
                  f"measuring {fallback} first", flush=True)
            points[fallback] = run_one(fallback)
            print(f"{fallback} subjects: {json.dumps(points[fallback])}", flush=True)
            guess = predict(points, n)
            too_big = guess["seconds"] > 60 * args.max_minutes or guess["peak_rss_gb"] > args.max_gb
        if too_big:
            print(f"{n} subjects: predicted {guess['seconds']:.0f} s, {guess['peak_rss_gb']:.1f} GB: extrapolated, not run",
                  flush=True)
            points[n] = guess
            continue
        if guess:
            print(f"{n} subjects: predicted {guess['seconds']:.0f} s, {guess['peak_rss_gb']:.1f} GB", flush=True)
        points[n] = run_one(n)
        if guess:
            points[n]["predicted_seconds"] = guess["seconds"]
        print(f"{n} subjects: {json.dumps(points[n])}", flush=True)
    return {str(n): points[n] for n in sorted(points)}


def workflow_config(args) -> dict:
    import yaml

    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def run_scale(args) -> dict:
    out_dir = args.work / "out"

    def one(n):
        bids = bids_dataset(args.work, n)
        cmd = [SNAKEMAKE, "-n", "--quiet", "rules", "--config", f"bids_dir={bids}", f"output_dir={out_dir}"]
        return measured(cmd, REPO, args.work / "logs" / f"scale{n}.log")

    points = series(args.scale_subjects, args.fallback, args, one)
    small, large = str(min(args.scale_subjects)), str(max(args.scale_subjects))
    top = points[large]
    return {
        "benchmark": "dry run of the whole workflow (snakemake -n --quiet rules), wall time and peak RSS per cohort size",
        "command": "snakemake -n --quiet rules --config bids_dir=<fake BIDS> output_dir=<empty>",
        "points": points,
        f"time_ratio_{large}_{small}": round(top["seconds"] / points[small]["seconds"], 2),
        f"cpu_time_ratio_{large}_{small}": round(top["cpu_seconds"] / points[small]["cpu_seconds"], 2),
        "subjects_ratio": int(large) // int(small),
        "goal": {"subjects": int(large), "max_seconds": 300, "max_peak_rss_gb": 4, "time_ratio": "about 10 (linear)"},
        "goal_met": top["seconds"] <= 300 and top["peak_rss_gb"] <= 4,
        "largest_extrapolated": bool(top.get("extrapolated")),
        "limits_for_running": {"max_minutes": args.max_minutes, "max_gb": args.max_gb},
        "note": args.note,
        "peak_rss": "wait4 ru_maxrss of the snakemake process (largest single process among it and its reaped children)",
        **machine(),
    }


def run_batched(args) -> dict:
    n, batches = args.batch_subjects, args.batches
    bids = bids_dataset(args.work, n)
    out_dir = args.work / "out"
    config = ["--config", f"bids_dir={bids}", f"output_dir={out_dir}"]
    defaults = workflow_config(args)
    atlases, weight = defaults["atlases"], defaults["sc_weight"]
    from sfc import paths

    batch = measured([SNAKEMAKE, "subjects", "--batch", f"subjects=1/{batches}", "-n", "--quiet", "rules", *config],
                     REPO, args.work / "logs" / f"batch1of{batches}_{n}.log")
    print(f"batch 1/{batches} of {n}: {json.dumps(batch)}", flush=True)
    floor = measured([SNAKEMAKE, paths.atlas_labels(out_dir, atlases[0]), "-n", "--quiet", "rules", *config],
                     REPO, args.work / "logs" / f"parse_only_{n}.log")
    print(f"parse only, {n}: {json.dumps(floor)}", flush=True)

    def group(m):
        folder = connectome_folder(args.work, m, atlases, weight)
        cmd = [SNAKEMAKE, "-n", "--quiet", "rules", "--config", "input=connectomes", f"connectomes_dirs=[{folder}]",
               f"participants={folder / 'participants.tsv'}", f"output_dir={args.work / 'group_out'}"]
        return measured(cmd, REPO, args.work / "logs" / f"group{m}.log")

    group_points = series(args.group_subjects, args.fallback, args, group)
    large = group_points[str(max(args.group_subjects))]
    within = lambda p: p["seconds"] <= 300 and p["peak_rss_gb"] <= 4  # noqa: E731
    return {
        "benchmark": f"consortium-scale way at {n} subjects: per-subject stage in {batches} batches, group stage on the connectomes",
        "per_subject_batch": {
            "command": f"snakemake subjects --batch subjects=1/{batches} -n --quiet rules --config bids_dir=<{n} fake subjects> output_dir=<empty>",
            "subjects": n, "batches": batches, **batch,
            "all_batches_seconds": round(batch["seconds"] * batches, 1),
        },
        "parse_only": {
            "command": "snakemake -n --quiet rules --config bids_dir=<same> output_dir=<empty> <one atlas label table>",
            "note": "config validation, BIDS discovery of every subject and the rule definitions, no subject jobs: "
                    "the floor below which no batch of this cohort can plan",
            "subjects": n, **floor,
        },
        "group_stage": {
            "command": "snakemake -n --quiet rules --config input=connectomes connectomes_dirs=[<folder>] "
                       "participants=<folder>/participants.tsv output_dir=<empty>",
            "note": "fake connectome folders: empty SC (sc_weight), FC and time-series files per subject and atlas",
            "points": group_points,
        },
        "goal": {"max_seconds": 300, "max_peak_rss_gb": 4, "per": "snakemake invocation"},
        "goal_met": {"per_subject_batch": within(batch), f"group_stage_{max(args.group_subjects)}": within(large)},
        "note": args.note,
        "peak_rss": "wait4 ru_maxrss of the snakemake process (largest single process among it and its reaped children)",
        **machine(),
    }


def run_compare(args) -> dict:
    bids_dir = bids_dataset(args.work, args.subjects)
    out_dir = args.work / "out"
    config = ["--config", f"bids_dir={bids_dir}", f"output_dir={out_dir}"]
    workflow_cmd = [SNAKEMAKE, "-n", "--quiet", "rules", *config]

    # The job graph, from a dry run's listing of every job's inputs and outputs (`--dag`
    # labels drop the wildcards of most jobs, so they cannot rebuild the graph).
    _, listing = timed([SNAKEMAKE, "-n", *config], REPO)
    jobs, edges = parse_dry_run(listing.stdout)
    bares = {}
    for name, declared in (("bare", False), ("bare_declared", True)):
        folder = args.work / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "Snakefile").write_text(bare_snakefile(jobs, edges, declared))
        (folder / "env.yaml").write_text("channels: [conda-forge]\ndependencies: [python=3.11]\n")
        (folder / "touch_outputs.py").write_text("from pathlib import Path\nfor f in snakemake.output: Path(f).touch()\n")
        bares[name] = folder

    def bare_cmd(name, *extra):
        return [SNAKEMAKE, "-n", *extra, "-s", str(bares[name] / "Snakefile"), "-d", str(bares[name])]

    runs = [("workflow", workflow_cmd, REPO)] + [(n, bare_cmd(n, "--quiet", "rules"), bares[n]) for n in bares]
    times = {name: [] for name, _, _ in runs}
    for _ in range(args.repeats):
        for name, cmd, cwd in runs:
            elapsed, _ = timed(cmd, cwd)
            times[name].append(round(elapsed, 3))
    full = listing
    best = {name: min(t) for name, t in times.items()}
    record = {
        "benchmark": "dry run, workflow vs bare Snakefiles with the same job graph",
        "subjects": args.subjects,
        "jobs_workflow": n_jobs(full.stdout),
        "jobs_bare": {n: n_jobs(timed(bare_cmd(n), bares[n])[1].stdout) for n in bares},
        "seconds": times,
        "best": best,
        "ratio_to_bare_declared": round(best["workflow"] / best["bare_declared"], 3),
        "ratio_to_bare_minimal": round(best["workflow"] / best["bare"], 3),
        "goal_ratio": 1.5,
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    assert set(record["jobs_bare"].values()) == {record["jobs_workflow"]}, "the bare graphs must have the same jobs"
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", nargs="+", choices=("compare", "scale", "batched"), default=["compare"])
    parser.add_argument("--subjects", type=int, default=1000, help="compare: cohort size")
    parser.add_argument("--repeats", type=int, default=3, help="compare: runs of each, best kept")
    parser.add_argument("--scale-subjects", type=int, nargs="+", default=[1000, 2000, 10000])
    parser.add_argument("--batch-subjects", type=int, default=10000, help="batched: cohort size")
    parser.add_argument("--batches", type=int, default=10, help="batched: number of per-subject batches")
    parser.add_argument("--group-subjects", type=int, nargs="+", default=[1000, 2000, 10000])
    parser.add_argument("--fallback", type=int, default=4000,
                        help="size measured before extrapolating a size predicted over the limits")
    parser.add_argument("--max-minutes", type=float, default=25, help="do not run a size predicted to take longer")
    parser.add_argument("--max-gb", type=float, default=12, help="do not run a size predicted to need more memory")
    parser.add_argument("--note", default="", help="recorded with scale and batched (e.g. what else ran)")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "dryrun")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "dryrun.json")
    args = parser.parse_args()

    def save(update: dict) -> None:
        """Merge into the results file: the other measurements' keys stay."""
        record = json.loads(args.output.read_text()) if args.output.exists() else {}
        record.update(update)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps(update, indent=2), flush=True)

    if "compare" in args.run:
        save(run_compare(args))
    if "scale" in args.run:
        save({"scale": run_scale(args)})
    if "batched" in args.run:
        save({"batched": run_batched(args)})


if __name__ == "__main__":
    main()
