"""One synthetic subject at a real study's size through every per-subject rule (issue #19).

Generates one subject with ``python -m sfc.simulate images`` (default: T1w 1 mm; DWI 2 mm,
64 directions at b=1000 + 6 b=0; BOLD 2.5 mm, 300 volumes, TR 2 s), writes its own config
with the real-data settings spelled out (denoise + degibbs, response auto, count + SIFT2
weights, iFOD2, dynamic seeding, 1 million streamlines, no ACT, sc_weight sift2,
covariates []), and runs the workflow on it, asking only for the outputs of the per-subject
jobs (so the 1-subject cohort never reaches the group rules):

1. a dry run of the default target lists every job; the outputs of the jobs with a
   ``subject`` wildcard become the targets (their upstream prepare_atlas jobs come along);
2. ``snakemake -s Snakefile -d <work>/work <targets> --cores 2 --configfile <config>``;
   for every job: wall s, CPU s and peak RSS from Snakemake's own ``benchmark:`` file, the
   declared threads / mem_mb / runtime as Snakemake printed them when it started the job
   (first attempt; the dry run's listing when a job was not started), and the wall seconds
   of each command the job logged (``$ tool ...`` / ``# exit 0 after N s``);
3. tractography scaling on the same FOD: the tckgen and tcksift2 command lines the rules
   logged, run directly under ``/usr/bin/time -v`` at ``--scaling`` streamline counts
   (default 100k and 300k; the workflow's own 1M run is the third point), a least-squares
   line (time and peak memory vs streamlines) extrapolated to 10 million, and the .tck
   size per million streamlines;
4. with ``dwi.tracking.chunks`` in the schema: the tractography again with each further
   ``--chunks`` value (``--forcerun dwi_tractography --rerun-triggers mtime``: the same
   FOD, the tractography and its downstream jobs rerun).

Snakemake samples a job's process tree every 0.5 s for its first ~15 s and every 30 s
after that, so for long jobs its peak RSS can miss a short peak and its CPU seconds miss
the last part of each finished child process. The benchmark therefore also samples every
job's process tree itself every 0.5 s (``sampler_*``: RSS summed over the tree as
Snakemake does, CPU of the tree including reaped children); the goals are judged on
Snakemake's numbers, and a job whose own-sampler peak exceeds its declared memory is
flagged.

Goals per job: declared >= measured on the first attempt (``mem_mib >= max_rss``, both MiB;
``runtime * 60 >= s``), and declared <= 3x measured where the job uses more than 1 GB
(memory) or more than 10 minutes (runtime).

Run (one command; data and outputs under --work). The recorded run took 1 h 45 min on the
2-core development VM at load 3-8 (tckgen alone: 33 CPU-minutes for 1 million streamlines on
one chunk, 2 x 17.6 on two); ``--streamlines 300000 --scaling 100000`` takes about half:

    export SFC_ATLAS_DIR=... SFC_TEMPLATE_DIR=...
    .venv/bin/python benchmarks/bench_realscale.py [--work /tmp/realscale] [--chunks 1 2] [--fresh-subject]
    .venv/bin/python benchmarks/bench_realscale.py --markdown      # the tables of the results file

Results overwrite benchmarks/results/realscale.json (machine, date, load, versions, sizes,
per-job measured and declared values, goals, scaling fit and extrapolation).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")
RESULTS = REPO / "benchmarks" / "results" / "realscale.json"
SCRIPT_RE = re.compile(r"\.snakemake/scripts/tmp[^/]*?\.([A-Za-z0-9_]+)\.py$")


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------
# subject
# --------------------------------------------------------------------------------------

def parse_time_v(text: str) -> dict:
    """Wall s, user + sys CPU s and peak RSS (MiB) from GNU time -v's report."""
    def field(name):
        m = re.search(rf"^\s*{re.escape(name)}: (.+)$", text, re.M)
        return m.group(1).strip() if m else None

    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)")
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    return {"wall_s": round(secs, 2),
            "cpu_s": round(float(field("User time (seconds)")) + float(field("System time (seconds)")), 2),
            "peak_rss_mb": round(int(field("Maximum resident set size (kbytes)")) / 1024, 1),
            "exit": int(field("Exit status"))}


def timed(cmd: list[str], *, env=None, cwd=None, log_path: Path | None = None) -> dict:
    """``cmd`` under ``/usr/bin/time -v``; its measures (max RSS of the largest process)."""
    tfile = Path(log_path or "/tmp/realscale_time.txt").with_suffix(".time")
    with open(log_path or os.devnull, "w") as out:
        rc = subprocess.call(["/usr/bin/time", "-v", "-o", str(tfile), *cmd], stdout=out, stderr=subprocess.STDOUT,
                             env=env, cwd=cwd)
    if rc != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({rc}); see {log_path}")
    return parse_time_v(tfile.read_text())


def simulate(args, bids: Path, truth: Path) -> dict:
    sim = [str(BIN / "python"), "-m", "sfc.simulate", "images", str(bids), "--truth-dir", str(truth),
           "--preset", "demo", "--n-trd", "1", "--n-ntrd", "0", "--n-hc", "0", "--seed", str(args.seed),
           "--t1-voxel", str(args.t1_voxel), "--dwi-voxel", str(args.dwi_voxel), "--bold-voxel", str(args.bold_voxel),
           "--volumes", str(args.volumes), "--tr", str(args.tr), "--directions", str(args.directions),
           "--b0", str(args.b0)]
    record = {"command": shlex.join(sim)}
    if bids.is_dir() and not args.fresh_subject:
        log(f"subject: reusing {bids} (--fresh-subject to regenerate)")
        record["reused"] = True
        prev = bids.parent / "simulate.json"
        if prev.is_file():
            record.update({k: v for k, v in json.loads(prev.read_text()).items() if k != "command"})
        return record
    shutil.rmtree(bids, ignore_errors=True)
    shutil.rmtree(truth, ignore_errors=True)
    log("subject: simulating")
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow" / "scripts"))
    record.update(timed(sim, env=env, log_path=bids.parent / "simulate.log"))
    (bids.parent / "simulate.json").write_text(json.dumps(record, indent=1))
    record["reused"] = False
    return record


def image_size(path: Path) -> dict:
    size = subprocess.check_output(["mrinfo", "-size", str(path)], text=True, stderr=subprocess.DEVNULL).split()
    spacing = subprocess.check_output(["mrinfo", "-spacing", str(path)], text=True,
                                      stderr=subprocess.DEVNULL).split()
    dims = [int(x) for x in size]
    return {"dims": dims, "voxel_mm": [round(float(x), 3) for x in spacing[:3]],
            "voxels_3d": int(math.prod(dims[:3])), "volumes": dims[3] if len(dims) > 3 else 1,
            "file_mb": round(path.stat().st_size / 2 ** 20, 1)}


def subject_sizes(bids: Path, sub: str) -> dict:
    d = bids / f"sub-{sub}"
    t1 = image_size(d / "anat" / f"sub-{sub}_T1w.nii.gz")
    dwi = image_size(d / "dwi" / f"sub-{sub}_dwi.nii.gz")
    bvals = [float(b) for b in (d / "dwi" / f"sub-{sub}_dwi.bval").read_text().split()]
    dwi.update(n_b0=sum(b < 50 for b in bvals), n_directions=sum(b >= 50 for b in bvals),
               bvalues=sorted({round(b) for b in bvals if b >= 50}))
    bold = image_size(d / "func" / f"sub-{sub}_task-rest_bold.nii.gz")
    bold["tr_s"] = json.loads((d / "func" / f"sub-{sub}_task-rest_bold.json").read_text())["RepetitionTime"]
    return {"subject": f"sub-{sub}", "T1w": t1, "dwi": dwi, "bold": bold}


# --------------------------------------------------------------------------------------
# config, job listing, running
# --------------------------------------------------------------------------------------

def schema_has_chunks() -> bool:
    import yaml

    schema = yaml.safe_load(SCHEMA.read_text())
    props = schema["properties"]["dwi"]["properties"]["tracking"]["properties"]
    return "chunks" in props


def write_config(path: Path, args, bids: Path, truth: Path, out: Path, chunks: int | None) -> dict:
    import yaml

    tracking = {"algorithm": "iFOD2", "lmax": None, "streamlines": args.streamlines, "seeding": "dynamic",
                "act": False, "keep_tck": True, "reproducible": True}
    if chunks is not None:
        tracking["chunks"] = chunks
    cfg = {
        "bids_dir": str(bids), "participants": None, "output_dir": str(out),
        "input": {"dwi": "bids", "func": "bids"},
        "covariates": [],
        "demo": {"generate": False, "preset": "demo", "truth_dir": str(truth)},
        "atlases": ["BNA246", "HOA"],
        "anat": {"template_dir": None, "registration": "SyN", "use_fsl": True},
        "dwi": {"denoise": True, "degibbs": True, "eddy": False, "bias": "n4", "nthreads": args.nthreads,
                "response": "auto", "weights": ["count", "sift2"], "tracking": tracking},
        "sc_weight": "sift2",
        "seed": args.seed_workflow,
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cfg


def parse_jobs(text: str) -> list[dict]:
    """Every job block of a Snakemake job listing (dry run or run log)."""
    jobs, cur = [], None
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):\s*$", line)
        if m:
            cur = {"rule": m.group(1), "threads": 1, "wildcards": {}, "resources": {}}
            jobs.append(cur)
            continue
        if cur is None:
            continue
        m = re.match(r"^    (\w+): (.*)$", line)
        if not m:
            if line and not line.startswith("    "):
                cur = None
            continue
        key, value = m.groups()
        if key == "wildcards":
            cur["wildcards"] = dict(kv.split("=", 1) for kv in value.split(", ") if "=" in kv)
        elif key == "resources":
            for kv in value.split(", "):
                if "=" in kv:
                    k, v = kv.split("=", 1)
                    try:
                        cur["resources"][k] = int(v)
                    except ValueError:
                        try:
                            cur["resources"][k] = float(v)
                        except ValueError:
                            cur["resources"][k] = v
        elif key == "threads":
            cur["threads"] = int(value)
        elif key == "jobid":
            cur["jobid"] = int(value)
        elif key in ("output", "log", "benchmark", "input"):
            cur[key] = [p for p in value.split(", ") if p]
    return jobs


def job_key(job: dict) -> str:
    wc = ",".join(f"{k}={v}" for k, v in sorted(job["wildcards"].items()))
    return f"{job['rule']}[{wc}]"


def snakemake_cmd(config: Path, work: Path, targets: list[str], extra: list[str] = ()) -> list[str]:
    # targets before --configfile (which takes every word after it)
    return [SNAKEMAKE, "-s", str(SNAKEFILE), "-d", str(work), *targets, "--cores", str(2), *extra,
            "--configfile", str(config)]


def dry_run(config: Path, work: Path, targets=(), extra=(), retries: int = 6) -> tuple[list[dict], str]:
    """The job listing of a dry run; retried (a half-finished edit of the workflow by someone else)."""
    for attempt in range(retries):
        proc = subprocess.run(snakemake_cmd(config, work, list(targets), ["-n", *extra]), capture_output=True,
                              text=True)
        text = proc.stdout + proc.stderr
        if proc.returncode == 0:
            return parse_jobs(text), text
        log(f"dry run failed (attempt {attempt + 1}/{retries}), retrying in 120 s:\n{text[-1500:]}")
        time.sleep(120)
    raise RuntimeError("dry run keeps failing:\n" + text[-3000:])


class TreeSampler(threading.Thread):
    """Every ``interval`` s: each Snakemake job's process tree (script process = python running
    ``.snakemake/scripts/tmp*.<rule>.py``): RSS summed over the tree, CPU of the tree (own time of
    live processes plus their reaped children), and the peak RSS of each command in it."""

    def __init__(self, root_pid: int, interval: float = 0.5):
        super().__init__(daemon=True)
        self.root_pid, self.interval = root_pid, interval
        self.jobs: dict[int, dict] = {}   # script pid -> record
        self.stop_event = threading.Event()

    def run(self):
        import psutil

        try:
            root = psutil.Process(self.root_pid)
        except psutil.Error:
            return
        while not self.stop_event.is_set():
            t = time.monotonic()
            try:
                procs = root.children(recursive=True)
            except psutil.Error:
                break
            matches = {}
            for p in procs:
                try:
                    cmd = p.cmdline()
                except psutil.Error:
                    continue
                rule = next((m.group(1) for c in cmd if (m := SCRIPT_RE.search(c.strip()))), None)
                if rule is not None:
                    matches[p.pid] = (p, rule)
            for pid, (p, rule) in matches.items():
                try:
                    # the topmost matching process of a job (a shell and the python it starts both match)
                    if any(a.pid in matches for a in p.parents()):
                        continue
                except psutil.Error:
                    continue
                self._sample(p, rule, t)
            self.stop_event.wait(max(0.0, self.interval - (time.monotonic() - t)))

    def _sample(self, p, rule, t):
        import psutil

        rec = self.jobs.setdefault(p.pid, {"rule": rule, "start": t, "end": t, "peak_rss_mb": 0.0, "cpu_s": 0.0,
                                           "commands": {}})
        rss, cpu = 0, 0.0
        try:
            tree = [p, *p.children(recursive=True)]
        except psutil.Error:
            return
        for q in tree:
            try:
                with q.oneshot():
                    mem = q.memory_info().rss
                    ct = q.cpu_times()
                    name = q.name()
            except psutil.Error:
                continue
            rss += mem
            cpu += ct.user + ct.system + ct.children_user + ct.children_system
            if q.pid != p.pid:
                cmd = rec["commands"].setdefault(q.pid, {"name": name, "peak_rss_mb": 0.0, "cpu_s": 0.0})
                cmd["name"] = name   # the latest name: a first sample between fork and exec says "python"
                cmd["peak_rss_mb"] = max(cmd["peak_rss_mb"], round(mem / 2 ** 20, 1))
                cmd["cpu_s"] = max(cmd["cpu_s"], round(ct.user + ct.system, 2))
        rec["peak_rss_mb"] = max(rec["peak_rss_mb"], round(rss / 2 ** 20, 1))
        rec["cpu_s"] = max(rec["cpu_s"], round(cpu, 2))
        rec["end"] = t

    def stop(self):
        self.stop_event.set()
        self.join(timeout=5)
        for rec in self.jobs.values():
            # per command name: the largest process's peak RSS, the CPU of all its processes (last sample)
            per_name = {}
            for c in rec["commands"].values():
                agg = per_name.setdefault(c["name"], {"peak_rss_mb": 0.0, "cpu_s": 0.0, "processes": 0})
                agg["peak_rss_mb"] = max(agg["peak_rss_mb"], c["peak_rss_mb"])
                agg["cpu_s"] = round(agg["cpu_s"] + c["cpu_s"], 2)
                agg["processes"] += 1
            rec["commands"] = per_name


def workflow_fingerprint() -> str:
    """sha1 of the rules, the schema and the sfc library as they are now (the declared resources
    come from whatever the working tree holds when a run starts; it may be edited meanwhile)."""
    import hashlib

    h = hashlib.sha1()
    files = sorted([*(REPO / "workflow" / "rules").glob("*.smk"), SCHEMA, SNAKEFILE,
                    *(REPO / "workflow" / "scripts" / "sfc").glob("*.py")])
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def run_workflow(config: Path, work: Path, targets: list[str], extra: list[str], log_path: Path) -> dict:
    cmd = snakemake_cmd(config, work, targets, list(extra))
    fingerprint = workflow_fingerprint()
    load_before = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        rc = proc.wait()
        sampler.stop()
    wall = time.perf_counter() - t0
    text = log_path.read_text()
    if rc != 0:
        raise RuntimeError(f"snakemake failed ({rc}); see {log_path}:\n{text[-3000:]}")
    return {"command": shlex.join(cmd[:4]) + " <targets> " + shlex.join(cmd[4 + len(targets):]),
            "wall_s": round(wall, 1), "load_before": load_before, "workflow_sha1_at_start": fingerprint,
            "load_after": [round(x, 2) for x in os.getloadavg()], "started": parse_jobs(text),
            "sampler": list(sampler.jobs.values())}


def read_benchmark(path: str) -> dict:
    lines = Path(path).read_text().splitlines()
    head, row = lines[0].split("\t"), lines[-1].split("\t")
    rec = {}
    for k, v in zip(head, row):
        try:
            rec[k] = float(v)
        except ValueError:
            rec[k] = v
    return rec


def command_times(log_file: str) -> list[dict]:
    """The commands a job logged through sfc.mrtrix.run (``$ tool ...``) and their wall seconds
    (``# exit N after S s``). Commands that ran side by side (tracking chunks) get the exits in
    the order they were logged, so their individual walls may be swapped."""
    out, open_cmds = [], []
    try:
        text = Path(log_file).read_text(errors="replace")
    except OSError:
        return out
    last = None
    for line in text.splitlines():
        m = re.search(r"(?:^|\s)\$ (\S+)(.*)$", line)
        if m:
            full = (m.group(1) + m.group(2)).split("  [")[0]
            if full == last:      # the same command logged twice (log stream and logger)
                continue
            last = full
            cur = {"tool": Path(m.group(1)).name}
            out.append(cur)
            open_cmds.append(cur)
            continue
        m = re.search(r"# exit (-?\d+) after ([\d.]+) s", line)
        if m and open_cmds:
            cur = open_cmds.pop(0)
            cur["wall_s"] = float(m.group(2))
            cur["exit"] = int(m.group(1))
    return out


def mb_declared(res: dict) -> float | None:
    """Declared memory in MiB (Snakemake's mem_mib; else mem_mb converted)."""
    if isinstance(res.get("mem_mib"), (int, float)):
        return float(res["mem_mib"])
    if isinstance(res.get("mem_mb"), (int, float)):
        return res["mem_mb"] * 1e6 / 2 ** 20
    return None


def judge(job: dict) -> dict:
    """The issue's goals for one job, on Snakemake's measures."""
    m, d = job["measured"], job["declared"]
    mem, runtime = mb_declared(d), d.get("runtime")
    rss, wall = m.get("max_rss"), m.get("s")
    g = {}
    if isinstance(mem, float) and isinstance(rss, float):
        g["mem_covers"] = mem >= rss
        g["mem_heavy"] = rss > 1000 * 1e6 / 2 ** 20   # uses more than 1 GB
        g["mem_tight"] = (mem <= 3 * rss) if g["mem_heavy"] else None
        g["mem_ratio"] = round(mem / rss, 2) if rss > 0 else None
    if isinstance(runtime, (int, float)) and isinstance(wall, float):
        g["runtime_covers"] = runtime * 60 >= wall
        g["runtime_heavy"] = wall > 600
        g["runtime_tight"] = (runtime * 60 <= 3 * wall) if g["runtime_heavy"] else None
        g["runtime_ratio"] = round(runtime * 60 / wall, 2) if wall > 0 else None
    checks = [g.get(k) for k in ("mem_covers", "runtime_covers", "mem_tight", "runtime_tight")]
    g["met"] = all(c is not False for c in checks) and None not in checks[:2]
    # the stricter reading: both resources within 3x for a job heavy in either
    heavy = g.get("mem_heavy") or g.get("runtime_heavy")
    g["met_strict_reading"] = g["met"] and (not heavy or (
        (g.get("mem_ratio") or 0) <= 3 and (g.get("runtime_ratio") or 0) <= 3))
    s_peak = job.get("sampler", {}).get("peak_rss_mb")
    if isinstance(mem, float) and s_peak:
        g["sampler_peak_within_declared"] = s_peak <= mem
    return g


def collect(run: dict, dry_jobs: list[dict], only_rules=None) -> list[dict]:
    """Per job: Snakemake's benchmark, the declared resources, the logged commands and the own sampler."""
    started = {job_key(j): j for j in run["started"]}
    by_rule: dict[str, list] = {}
    for s in run["sampler"]:
        by_rule.setdefault(s["rule"], []).append(s)
    rows = []
    for j in dry_jobs:
        if j["rule"] == "all" or (only_rules and j["rule"] not in only_rules) or not j.get("benchmark"):
            continue
        key = job_key(j)
        src = started.get(key)
        declared_from = "run log" if src else "dry run"
        src = src or j
        bench = read_benchmark(j["benchmark"][0])
        res = {k: v for k, v in src["resources"].items() if k in ("mem_mb", "mem_mib", "runtime", "disk_mb")}
        row = {"job": key, "rule": j["rule"], "wildcards": j["wildcards"], "per_subject": "subject" in j["wildcards"],
               "measured": {k: bench.get(k) for k in ("s", "cpu_time", "max_rss", "max_vms", "max_uss", "max_pss",
                                                       "io_in", "io_out", "mean_load")},
               "declared": {"threads": src["threads"], **res, "from": declared_from},
               "commands": command_times(j["log"][0]) if j.get("log") else []}
        samples = by_rule.get(j["rule"], [])
        if samples:
            # several jobs of one rule (per atlas): the sampler cannot tell them apart; the largest
            best = max(samples, key=lambda s: s["peak_rss_mb"])
            row["sampler"] = {"peak_rss_mb": best["peak_rss_mb"], "cpu_s": max(s["cpu_s"] for s in samples),
                              "seen_s": round(best["end"] - best["start"], 1), "instances": len(samples),
                              "commands": best["commands"]}
        row["goal"] = judge(row)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------
# tractography scaling
# --------------------------------------------------------------------------------------

def logged_command(log_file: str, tool: str) -> list[str]:
    for line in Path(log_file).read_text(errors="replace").splitlines():
        m = re.search(rf"\$ ({re.escape(tool)} .*)$", line)
        if m:
            return shlex.split(m.group(1).split("  [")[0])
    raise RuntimeError(f"no '$ {tool}' line in {log_file}")


def replace_arg(cmd: list[str], old: str, new: str) -> list[str]:
    return [new if c == old else c for c in cmd]


def scaling(counts: list[int], tck_log: str, sift_log: str, scratch: Path, seed: int, cwd: Path) -> list[dict]:
    tckgen = logged_command(tck_log, "tckgen")
    sift = logged_command(sift_log, "tcksift2")
    select = tckgen[tckgen.index("-select") + 1]
    tck_out, weights_out = tckgen[2], sift[3]
    scratch.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MRTRIX_RNG_SEED=str(seed), OMP_NUM_THREADS="1")
    points = []
    for n in counts:
        tck = scratch / f"tracks_{n}.tck"
        tck.unlink(missing_ok=True)
        cmd = replace_arg(tckgen, tck_out, str(tck))
        cmd[cmd.index("-select") + 1] = str(n)
        log(f"scaling: tckgen {n}")
        t = timed(cmd, env=env, cwd=cwd, log_path=scratch / f"tckgen_{n}.log")
        weights = scratch / f"sift2_{n}.txt"
        weights.unlink(missing_ok=True)
        scmd = replace_arg(replace_arg(sift, sift[1], str(tck)), weights_out, str(weights))
        log(f"scaling: tcksift2 {n}")
        s = timed(scmd, env=dict(os.environ), cwd=cwd, log_path=scratch / f"tcksift2_{n}.log")
        points.append({"streamlines": n, "source": "direct (/usr/bin/time -v)", "tckgen": t, "tcksift2": s,
                       "tck_bytes": tck.stat().st_size,
                       "tckgen_command": shlex.join(cmd), "tcksift2_command": shlex.join(scmd)})
        tck.unlink()
    log(f"scaling: the workflow's run used -select {select}")
    return points


def fit_line(xs, ys) -> dict:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    icpt = my - slope * mx
    resid = [y - (icpt + slope * x) for x, y in zip(xs, ys)]
    return {"intercept": icpt, "per_million": slope * 1e6, "at_10M": icpt + slope * 1e7,
            "max_abs_residual": max(abs(r) for r in resid)}


def workflow_point(rows: list[dict], tck_path: str, n: int) -> dict | None:
    """The workflow's own tckgen / tcksift2 at its streamline count (1 chunk): each command's
    wall from its log line, peak RSS from the own 0.5 s sampler (the command alone)."""
    def cmd_of(rule, tool):
        row = next((r for r in rows if r["rule"] == rule), None)
        if row is None:
            return None
        walls = [c.get("wall_s") for c in row["commands"] if c["tool"] == tool]
        cmd = row.get("sampler", {}).get("commands", {}).get(tool, {})
        return {"wall_s": walls[0] if len(walls) == 1 else None, "peak_rss_mb": cmd.get("peak_rss_mb"),
                "cpu_s": cmd.get("cpu_s"),
                "job_wall_s": row["measured"]["s"], "job_cpu_s": row["measured"]["cpu_time"],
                "job_max_rss_snakemake": row["measured"]["max_rss"]}

    t, s = cmd_of("dwi_tractography", "tckgen"), cmd_of("dwi_sift2", "tcksift2")
    if not t or not s:
        return None
    return {"streamlines": n, "source": "workflow run, 1 chunk (command wall from the job log, peak RSS from "
                                        "the 0.5 s sampler)",
            "tckgen": t, "tcksift2": s, "tck_bytes": Path(tck_path).stat().st_size if Path(tck_path).exists() else None}


def scaling_summary(points: list[dict]) -> dict:
    pts = [p for p in points if p["tckgen"].get("wall_s") and p["tcksift2"].get("wall_s")]
    xs = [p["streamlines"] for p in pts]
    out = {"points": points}
    if len(set(xs)) >= 2:
        out["fit_10M"] = {
            f"{tool}_{m}": fit_line(xs, [p[tool][m] for p in pts])
            for tool in ("tckgen", "tcksift2") for m in ("wall_s", "cpu_s", "peak_rss_mb")
            if all(p[tool].get(m) is not None for p in pts)}
        for v in out["fit_10M"].values():
            for k in list(v):
                v[k] = round(v[k], 2)
    sized = [p for p in points if p.get("tck_bytes")]
    if sized:
        out["tck_mb_per_million"] = {str(p["streamlines"]): round(p["tck_bytes"] / 2 ** 20 / (p["streamlines"] / 1e6), 1)
                                     for p in sized}
    return out


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------

def versions() -> dict:
    import ants
    import nibabel
    import numpy
    import snakemake

    mr = subprocess.run(["mrinfo", "-version"], capture_output=True, text=True).stdout.splitlines()
    return {"python": platform.python_version(), "snakemake": snakemake.__version__,
            "mrtrix3": mr[0].strip("= ").strip() if mr else "?", "antspyx": getattr(ants, "__version__", "?"),
            "numpy": numpy.__version__, "nibabel": nibabel.__version__}


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
               if ln.startswith("MemTotal"))
    flags = Path("/proc/cpuinfo").read_text()
    return {"node": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem / 2 ** 20, 1),
            "avx512": "avx512f" in flags, "kernel": platform.release()}


def git_state() -> dict:
    def g(*a):
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return {"commit": g("rev-parse", "--short", "HEAD"),
            "modified": [ln[3:] for ln in g("status", "--short").splitlines()
                         if ln[3:].startswith(("workflow/", "config/", "Snakefile"))]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/realscale", help="scratch folder: subject, outputs, logs")
    ap.add_argument("--t1-voxel", type=float, default=1.0)
    ap.add_argument("--dwi-voxel", type=float, default=2.0)
    ap.add_argument("--bold-voxel", type=float, default=2.5)
    ap.add_argument("--volumes", type=int, default=300, help="BOLD volumes")
    ap.add_argument("--tr", type=float, default=2.0)
    ap.add_argument("--directions", type=int, default=64, help="DWI directions at b=1000")
    ap.add_argument("--b0", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0, help="simulation seed")
    ap.add_argument("--seed-workflow", type=int, default=20260127, help="the workflow's seed (config key seed)")
    ap.add_argument("--fresh-subject", action="store_true", help="regenerate the subject even if it exists")
    ap.add_argument("--streamlines", type=int, default=1_000_000, help="dwi.tracking.streamlines of the workflow runs")
    ap.add_argument("--nthreads", type=int, default=2, help="dwi.nthreads (threads of the multi-threaded MRtrix jobs)")
    ap.add_argument("--chunks", type=int, nargs="+", default=[1, 2],
                    help="dwi.tracking.chunks values; the first runs the whole subject, the others rerun the "
                         "tractography (ignored, and reported, when the schema has no chunks key)")
    ap.add_argument("--scaling", type=int, nargs="*", default=[100_000, 300_000],
                    help="streamline counts for the direct tckgen/tcksift2 runs (the workflow's count is added)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--markdown", action="store_true", help="only print the tables of an existing --out file")
    ap.add_argument("--judge-current", action="store_true",
                    help="only judge today's sfc.resources formulas against an existing --out file (written back)")
    args = ap.parse_args(argv)
    if args.judge_current:
        result = json.loads(Path(args.out).read_text())
        result["judged_by_current_formulas"] = judge_current(result)
        _write(args.out, result)
        for name, run in result["judged_by_current_formulas"]["runs"].items():
            for r in run["jobs"]:
                d, g = r["declared"], r["goal"]
                print(f"{name:9s} {r['job']:42s} {d['mem_mb']:6d} MB {d['runtime']:4d} min {d['threads']} thr  "
                      f"mem x{g.get('mem_ratio')} time x{g.get('runtime_ratio')} met {g['met']} "
                      f"(sampler peaks: {g['sampler_goal_met']})")
        return 0
    if args.markdown:
        print(markdown(json.loads(Path(args.out).read_text())))
        return 0

    for var in ("SFC_ATLAS_DIR", "SFC_TEMPLATE_DIR"):
        if not os.environ.get(var):
            log(f"warning: {var} is not set (atlases/templates may be downloaded or missing)")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bids, truth, out, smk_dir = work / "bids", work / "truth", work / "out", work / "work"
    started = datetime.now(timezone.utc)
    result = {"date": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
              "load_at_start": [round(x, 2) for x in os.getloadavg()], "versions": versions(), "git": git_state(),
              "command": "benchmarks/bench_realscale.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    result["simulate"] = simulate(args, bids, truth)
    result["sizes"] = subject_sizes(bids, "001")
    log(f"sizes: {json.dumps(result['sizes'])}")

    chunked = schema_has_chunks()
    chunk_values = args.chunks if chunked else [None]
    result["chunks_in_schema"] = chunked
    if not chunked:
        result["todo"] = ("dwi.tracking.chunks is not in workflow/schemas/config.schema.yaml yet: only the "
                          f"unchunked run was measured; rerun with --chunks {' '.join(map(str, args.chunks))} "
                          "once it exists")
        log(result["todo"])

    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(smk_dir / ".snakemake", ignore_errors=True)
    smk_dir.mkdir(parents=True, exist_ok=True)
    config = work / f"config_chunks-{chunk_values[0]}.yaml"
    result["config"] = write_config(config, args, bids, truth, out, chunk_values[0])

    # 1. the per-subject jobs, from a dry run of the default target
    all_jobs, _ = dry_run(config, smk_dir)
    per_subject = [j for j in all_jobs if "subject" in j["wildcards"]]
    targets = sorted({o for j in per_subject for o in j.get("output", [])})
    result["per_subject_rules"] = sorted({j["rule"] for j in per_subject})
    log(f"{len(per_subject)} per-subject jobs ({', '.join(result['per_subject_rules'])}); {len(targets)} targets")
    dry_jobs, dry_text = dry_run(config, smk_dir, targets)
    (work / "dryrun_chunks-1.txt").write_text(dry_text)

    # 2. the workflow run
    log("workflow run (first chunks value): every per-subject job")
    run = run_workflow(config, smk_dir, targets, [], work / f"snakemake_chunks-{chunk_values[0]}.log")
    rows = collect(run, dry_jobs)
    runs = {f"chunks={chunk_values[0]}": {"config": str(config), **{k: v for k, v in run.items()
                                                                    if k not in ("started", "sampler")},
                                          "jobs": rows}}
    log(f"workflow run: {run['wall_s']} s")
    _print_table(rows)
    result["runs"] = runs
    _write(args.out, result)

    tck_job = next(j for j in dry_jobs if j["rule"] == "dwi_tractography")
    sift_job = next(j for j in dry_jobs if j["rule"] == "dwi_sift2")
    tck_path = next(o for o in tck_job["output"] if o.endswith(".tck"))
    point = workflow_point(rows, tck_path, args.streamlines) if chunk_values[0] in (None, 1) else None

    # 3. scaling, on the workflow's FOD with the rules' logged command lines
    points = scaling(sorted(set(args.scaling) - {args.streamlines}), tck_job["log"][0], sift_job["log"][0],
                     work / "scaling", args.seed_workflow, smk_dir)
    if point:
        points.append(point)
    points.sort(key=lambda p: p["streamlines"])
    result["scaling"] = scaling_summary(points)
    _write(args.out, result)

    # 4. the tractography again with each further chunks value (same FOD)
    for chunks in chunk_values[1:]:
        config_c = work / f"config_chunks-{chunks}.yaml"
        write_config(config_c, args, bids, truth, out, chunks)
        extra = ["--forcerun", "dwi_tractography", "--rerun-triggers", "mtime"]
        dry_c, text_c = dry_run(config_c, smk_dir, targets, extra)
        (work / f"dryrun_chunks-{chunks}.txt").write_text(text_c)
        rerun = sorted({j["rule"] for j in dry_c if j["rule"] != "all"})
        log(f"workflow run chunks={chunks}: rerunning {', '.join(rerun)}")
        run_c = run_workflow(config_c, smk_dir, targets, extra, work / f"snakemake_chunks-{chunks}.log")
        rows_c = collect(run_c, dry_c, only_rules=set(rerun))
        runs[f"chunks={chunks}"] = {"config": str(config_c), "rerun_rules": rerun,
                                    **{k: v for k, v in run_c.items() if k not in ("started", "sampler")},
                                    "jobs": rows_c}
        _print_table(rows_c)
        _write(args.out, result)

    result["goals"] = {name: {"all_met": all(r["goal"]["met"] for r in r_["jobs"]),
                              "not_met": [r["job"] for r in r_["jobs"] if not r["goal"]["met"]],
                              "not_met_strict_reading": [r["job"] for r in r_["jobs"]
                                                         if not r["goal"]["met_strict_reading"]],
                              "sampler_peak_above_declared": [r["job"] for r in r_["jobs"] if r["goal"].get(
                                  "sampler_peak_within_declared") is False]}
                       for name, r_ in runs.items()}
    result["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["total_wall_s"] = round((datetime.now(timezone.utc) - started).total_seconds(), 1)
    _write(args.out, result)
    log(f"wrote {args.out}")
    return 0


def markdown(result: dict) -> str:
    """The per-job tables and the scaling summary of a results file, as Markdown."""
    lines = []
    for name, run in result.get("runs", {}).items():
        lines += [f"**{name}** (workflow wall {run['wall_s']} s, load {run['load_before']} -> {run['load_after']})", "",
                  "| job | wall s | CPU s (Snakemake / 0.5 s sampler) | peak RSS MiB (Snakemake / sampler) "
                  "| declared mem_mb (MiB) / runtime min / threads | mem ratio | runtime ratio | goal |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in run["jobs"]:
            m, d, g, smp = r["measured"], r["declared"], r["goal"], r.get("sampler", {})
            lines.append(
                f"| {r['job']} | {m['s']:.1f} | {m['cpu_time'] or 0:.1f} / {smp.get('cpu_s', float('nan')):.1f} | "
                f"{m['max_rss'] or 0:.0f} / {smp.get('peak_rss_mb', float('nan')):.0f} | {d.get('mem_mb')} "
                f"({d.get('mem_mib')}) / {d.get('runtime')} / {d['threads']} | {g.get('mem_ratio')} | "
                f"{g.get('runtime_ratio')} | {'met' if g['met'] else 'NOT met'} |")
        lines.append("")
    sc = result.get("scaling", {})
    if sc:
        lines += ["| streamlines | source | tckgen wall s / CPU s / peak MiB | tcksift2 wall s / CPU s / peak MiB "
                  "| .tck MiB |", "|---|---|---|---|---|"]
        for p in sc["points"]:
            t, s_ = p["tckgen"], p["tcksift2"]
            lines.append(f"| {p['streamlines']} | {p['source'].split(' (')[0]} | {t.get('wall_s')} / {t.get('cpu_s')} / "
                         f"{t.get('peak_rss_mb')} | {s_.get('wall_s')} / {s_.get('cpu_s')} / {s_.get('peak_rss_mb')} | "
                         f"{round(p['tck_bytes'] / 2 ** 20, 1) if p.get('tck_bytes') else ''} |")
        lines.append("")
        for k, v in sc.get("fit_10M", {}).items():
            lines.append(f"- {k}: {v['intercept']} + {v['per_million']} per million -> {v['at_10M']} at 10 M "
                         f"(max residual {v['max_abs_residual']})")
        if sc.get("tck_mb_per_million"):
            lines.append(f"- .tck MiB per million streamlines: {sc['tck_mb_per_million']}")
    return "\n".join(lines)


def judge_current(result: dict) -> dict:
    """Today's sfc.resources requests for every recorded job, judged against its measurements.

    The runs record what the workflow declared when each started; the formulas were fitted to
    these very measurements afterwards, so this re-derives each job's request (its rule, the
    subject's sizes, the run's streamlines and chunks, the job's threads) and applies
    :func:`judge` to it. Judged on Snakemake's numbers and, as a check, on the 0.5 s sampler's.
    """
    sys.path.insert(0, str(REPO / "workflow" / "scripts"))
    from sfc import resources

    s = result["sizes"]
    judged = {}
    for name, run in result["runs"].items():
        chunks = int(name.split("=")[1]) if "=" in name else 1
        work = resources.Work(t1_voxels=s["T1w"]["voxels_3d"], dwi_voxels=s["dwi"]["voxels_3d"],
                              dwi_volumes=s["dwi"]["volumes"], bold_voxels=s["bold"]["voxels_3d"],
                              bold_volumes=s["bold"]["volumes"],
                              streamlines=result["config"]["dwi"]["tracking"]["streamlines"], chunks=chunks)
        rows = []
        for job in run["jobs"]:
            if job["rule"] not in resources.COSTS:
                continue
            threads = job["declared"]["threads"]
            declared = {"threads": threads, "mem_mb": resources.mem_mb(job["rule"], work, threads),
                        "runtime": resources.runtime(job["rule"], work, threads)}
            declared["mem_mib"] = declared["mem_mb"] * 1e6 / 2 ** 20
            goal = judge({"measured": job["measured"], "declared": declared})
            sampled = {**job["measured"], "max_rss": job.get("sampler", {}).get("peak_rss_mb")}
            goal["sampler_goal_met"] = judge({"measured": sampled, "declared": declared})["met"]
            rows.append({"job": job["job"], "declared": declared, "goal": goal})
        judged[name] = {"jobs": rows, "all_met": all(r["goal"]["met"] for r in rows),
                        "not_met": [r["job"] for r in rows if not r["goal"]["met"]],
                        "not_met_on_sampler_peaks": [r["job"] for r in rows if not r["goal"]["sampler_goal_met"]]}
    return {"note": "today's sfc.resources formulas (fitted to these measurements) against the recorded "
                    "measurements; `runs` keeps what each job declared when it ran",
            "git": git_state(), "runs": judged}


def _write(path, result) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=1, default=str) + "\n")


def _print_table(rows: list[dict]) -> None:
    print(f"{'job':44s} {'wall s':>8s} {'cpu s':>8s} {'smp cpu':>8s} {'rss MB':>8s} {'smp MB':>8s} {'mem_mib':>8s} "
          f"{'rt min':>6s} {'thr':>3s}  goal")
    for r in rows:
        m, d = r["measured"], r["declared"]
        smp = r.get("sampler", {})
        print(f"{r['job'][:44]:44s} {m['s']:8.1f} {m['cpu_time'] or 0:8.1f} {smp.get('cpu_s', 0):8.1f} "
              f"{m['max_rss'] or 0:8.1f} {smp.get('peak_rss_mb', 0):8.1f} {mb_declared(d) or 0:8.0f} "
              f"{d.get('runtime', 0):6} {d['threads']:3d}  {r['goal']['met']}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
