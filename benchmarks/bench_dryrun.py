"""Dry run of 1000 subjects: the workflow against a bare Snakefile with the same job graph.

The bare Snakefile is generated from the workflow's own job graph (the jobs, their
inputs and outputs as a dry run lists them): one rule per workflow rule, the same wildcards, the same jobs and the
same edges, but plain wildcard patterns instead of input functions, and no
config validation or BIDS discovery. Both are dry-run in the same session, in
alternation, and the best of ``--repeats`` runs of each is compared.

    .venv/bin/python benchmarks/bench_dryrun.py [--subjects 1000] [--repeats 3]

Goal: workflow / bare <= 1.5. Results go to benchmarks/results/dryrun.json.
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "dryrun")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "dryrun.json")
    args = parser.parse_args()

    bids_dir = args.work / f"bids{args.subjects}"
    if not (bids_dir / "participants.tsv").exists():
        testing.make_dataset(bids_dir, args.subjects)
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
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
