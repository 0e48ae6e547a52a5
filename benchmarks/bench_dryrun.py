"""Dry run of 1000 subjects: the workflow against a bare Snakefile with the same job graph.

The bare Snakefile is generated from the workflow's own job graph (``snakemake
--dag``): one rule per workflow rule, the same wildcards, the same jobs and the
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
NODE = re.compile(r'^\s*(\d+)\[label = "([^"]*)"', re.M)
EDGE = re.compile(r"^\s*(\d+) -> (\d+)", re.M)


def parse_dag(dot: str):
    """Jobs as {id: (rule, {wildcard: value})} and edges as (upstream, downstream)."""
    jobs = {}
    for node_id, label in NODE.findall(dot):
        rule, *lines = label.split("\\n")
        jobs[node_id] = (rule, dict(line.split(": ", 1) for line in lines if ": " in line))
    return jobs, EDGE.findall(dot)


def bare_snakefile(jobs, edges) -> str:
    """A Snakefile whose jobs and edges are those of the parsed DAG, with plain patterns."""
    wildcards = {}
    for rule, wc in jobs.values():
        wildcards.setdefault(rule, sorted(wc))

    def pattern(rule, escape=False):
        names = wildcards[rule]
        fmt = "{{{{{}}}}}" if escape else "{{{}}}"
        return f"bare/{rule}/" + ("/".join(fmt.format(n) for n in names) if names else "done") + ".out"

    # For every downstream rule and upstream rule: the upstream wildcard values that are not
    # shared with the downstream rule (expanded literally), per downstream job.
    upstream = defaultdict(lambda: defaultdict(set))
    for up, down in edges:
        up_rule, up_wc = jobs[up]
        down_rule, down_wc = jobs[down]
        extra = tuple(sorted((k, v) for k, v in up_wc.items() if k not in down_wc))
        upstream[(down_rule, tuple(sorted(down_wc.items())))][up_rule].add(extra)
    inputs = defaultdict(dict)
    for (down_rule, _), by_rule in upstream.items():
        for up_rule, extras in by_rule.items():
            previous = inputs[down_rule].get(up_rule)
            extras = sorted(extras)
            assert previous in (None, extras), f"{down_rule} <- {up_rule}: job-dependent fan-in"
            inputs[down_rule][up_rule] = extras

    lines = []
    rules = list(dict.fromkeys(rule for rule, _ in jobs.values()))
    rules.sort(key=lambda r: r != "all")
    for rule in rules:
        lines.append(f"rule {rule}:")
        ins = []
        for up_rule, extras in inputs.get(rule, {}).items():
            shared = [n for n in wildcards[up_rule] if n in wildcards[rule]]
            for extra in extras:
                values = dict(extra)
                parts = [f"{{{n}}}" if n in shared else values[n] for n in wildcards[up_rule]]
                ins.append(f"bare/{up_rule}/" + ("/".join(parts) if parts else "done") + ".out")
        if ins:
            lines.append("    input:")
            lines += [f"        {path!r}," for path in ins]
        if rule != "all":
            lines.append("    output:")
            lines.append(f"        {pattern(rule)!r},")
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

    _, dag = timed([SNAKEMAKE, "--dag", *config], REPO)
    jobs, edges = parse_dag(dag.stdout)
    bare_dir = args.work / "bare"
    bare_dir.mkdir(parents=True, exist_ok=True)
    (bare_dir / "Snakefile").write_text(bare_snakefile(jobs, edges))
    bare_cmd = [SNAKEMAKE, "-n", "--quiet", "rules", "-s", str(bare_dir / "Snakefile"), "-d", str(bare_dir)]

    times = {"workflow": [], "bare": []}
    for _ in range(args.repeats):
        for name, cmd, cwd in (("workflow", workflow_cmd, REPO), ("bare", bare_cmd, bare_dir)):
            elapsed, _ = timed(cmd, cwd)
            times[name].append(round(elapsed, 3))
    _, full = timed([SNAKEMAKE, "-n", *config], REPO)
    _, bare_full = timed([SNAKEMAKE, "-n", "-s", str(bare_dir / "Snakefile"), "-d", str(bare_dir)], bare_dir)
    record = {
        "benchmark": "dry run, workflow vs bare Snakefile with the same job graph",
        "subjects": args.subjects,
        "jobs_workflow": n_jobs(full.stdout),
        "jobs_bare": n_jobs(bare_full.stdout),
        "seconds_workflow": times["workflow"],
        "seconds_bare": times["bare"],
        "best_workflow": min(times["workflow"]),
        "best_bare": min(times["bare"]),
        "ratio": round(min(times["workflow"]) / min(times["bare"]), 3),
        "goal_ratio": 1.5,
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    assert record["jobs_workflow"] == record["jobs_bare"], "the bare graph must have the same jobs"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
