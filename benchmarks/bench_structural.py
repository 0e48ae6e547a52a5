"""Structural branch of one demo subject: the workflow against a plain script of the same steps.

The workflow (``snakemake --profile profiles/local --cores 2``, as ``make demo`` runs it)
builds the structural branch of one synthetic demo subject: prepare_atlas (BNA246, HOA),
anat_preprocess, anat_atlas, dwi_preprocess, dwi_tensor, dwi_fod, dwi_register, dwi_atlas,
dwi_tractography, dwi_connectome and dwi_qc. The plain script makes the same calls to the
same ``sfc`` functions with the same arguments as the rule scripts (the same MRtrix3
``-nthreads`` as the rules' ``threads``, the same seeds), one step after the other in one
Python process. Both run in the same session, alternately (workflow, plain, workflow, plain,
...), each from an empty output folder (the workflow also from an empty ``.snakemake``);
wall and CPU seconds (the process and all its descendants) are recorded with the load
average, with whether each run's SC matrices equal the first run's (recorded, not asserted:
benchmarks/README.md says when tckgen is reproducible).

    .venv/bin/python benchmarks/bench_structural.py [--repeats 2]

Goal (issue #4): workflow / plain <= 1.05. Results are appended to
benchmarks/results/structural.json (one key per run).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
ATLASES = ["BNA246", "HOA"]


DEMO_PRESET = REPO / "config" / "demo.yaml"


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(overrides: Path | None = None) -> dict:
    """config/config.yaml, the demo preset (config/demo.yaml, as `make demo` runs) and the
    benchmark's own config file on top (as Snakemake merges them)."""
    import yaml

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for layer in (DEMO_PRESET, overrides):
        if layer:
            config = _merge(config, yaml.safe_load(Path(layer).read_text()) or {})
    return config


def subject_paths(out: str, sub: str) -> dict:
    """The workflow's output paths (workflow/rules/structural_common.smk) for one session-less subject."""
    from sfc import paths

    def f(datatype, suffix):
        return paths.subject_file(out, datatype, suffix, sub, None)

    space = "MNI152NLin6Asym"
    p = {
        "t1w": f("anat", "desc-preproc_T1w.nii.gz"),
        "mask": f("anat", "desc-brain_mask.nii.gz"),
        "brain": f("anat", "desc-brain_T1w.nii.gz"),
        "affine": f("anat", f"from-T1w_to-{space}_0GenericAffine.mat"),
        "anat_qc": f("qc", "desc-anat_qc.tsv"),
        "dwi": f("dwi", "space-dwi_desc-preproc_dwi.mif"),
        "dwi_mask": f("dwi", "space-dwi_desc-brain_mask.nii.gz"),
        "b0": f("dwi", "space-dwi_desc-meanb0_dwiref.nii.gz"),
        "info": f("dwi", "desc-validation_dwi.json"),
        "fa": f("dwi", "space-dwi_model-tensor_param-fa_dwimap.nii.gz"),
        "md": f("dwi", "space-dwi_model-tensor_param-md_dwimap.nii.gz"),
        "response": f("dwi", "desc-wm_response.txt"),
        "fod": f("dwi", "space-dwi_model-csd_label-WM_fod.mif"),
        "xfm": f("dwi", "from-T1w_to-dwi_0GenericAffine.mat"),
        "tck": f("dwi", "desc-tracks_tractography.tck"),
        "fa_png": f("qc", "space-dwi_param-fa_dwimap.png"),
        "register_qc": f("qc", "desc-t1wtodwi_qc.tsv"),
        "tracking_qc": f("qc", "desc-tracking_qc.tsv"),
        "summary": f("qc", "desc-structural_qc.tsv"),
    }
    for a in ATLASES:
        p[f"dseg_{a}"] = f("anat", f"space-T1w_atlas-{a}_dseg.nii.gz")
        p[f"anat_png_{a}"] = f("qc", f"space-T1w_atlas-{a}_overlay.png")
        p[f"nodes_{a}"] = f("dwi", f"space-dwi_atlas-{a}_dseg.nii.gz")
        p[f"dwi_png_{a}"] = f("qc", f"space-dwi_atlas-{a}_overlay.png")
        p[f"sc_{a}"] = paths.sc_matrix(out, sub, None, a, "count")
        p[f"atlas_{a}"] = paths.atlas_image(out, a)
        p[f"labels_{a}"] = paths.atlas_labels(out, a)
    return p


def targets(out: str, sub: str) -> list[str]:
    """What the workflow is asked for: the SC matrices, the structural QC summary and the
    T1w-space atlases (anat_atlas is not upstream of the SC matrices, so it is named too)."""
    p = subject_paths(out, sub)
    return [p[f"sc_{a}"] for a in ATLASES] + [p["summary"]] + [p[f"dseg_{a}"] for a in ATLASES]


# --------------------------------------------------------------------------------------
# the plain script: the rule scripts' calls, in one process, one after the other
# --------------------------------------------------------------------------------------

def plain_run(bids: str, out: str, sub: str, configfile: str) -> dict:
    """Every structural rule's calls (workflow/scripts/*.py) with the rule's params and threads.

    Returns the wall seconds of each step.
    """
    import tempfile

    import nibabel as nib
    import numpy as np
    import pandas as pd

    from sfc import anat, atlases, dwi, io, registration
    from sfc.logs import script_logger

    config = load_config(configfile)
    dwi_cfg, tracking, seed = config["dwi"], config["dwi"]["tracking"], config["seed"]
    nthreads = dwi_cfg["nthreads"]  # threads of dwi_preprocess, dwi_tensor, dwi_fod, dwi_tractography
    weights = list(dict.fromkeys([*dwi_cfg["weights"], config["sc_weight"]]))
    p = subject_paths(out, sub)
    raw = f"{bids}/sub-{sub}"
    suffix = "0GenericAffine.mat"
    logs = f"{out}/logs/sub-{sub}"
    steps = {}

    def step(name):
        steps[name] = time.perf_counter()
        for key in ("t1w", "dwi", "fa", "xfm", "fa_png", "sc_HOA", f"atlas_{ATLASES[0]}"):
            Path(p[key]).parent.mkdir(parents=True, exist_ok=True)
        return script_logger(f"{logs}/{name}.log")

    def done(name):
        steps[name] = round(time.perf_counter() - steps[name], 2)

    # prepare_atlas (one job per atlas)
    for a in ATLASES:
        log = step(f"prepare_atlas_atlas-{a}")
        prepared = atlases.prepare_atlas(a, p[f"atlas_{a}"], p[f"labels_{a}"], atlas_dir=config["atlas_dir"],
                                         resolution=config["atlas_resolution"],
                                         allow_download=config["atlas_download"])
        log.info("%s: %d labels written to %s", a, prepared.n_labels, prepared.image)
        done(f"prepare_atlas_atlas-{a}")

    # anat_preprocess (threads 1)
    log = step("anat_preprocess")
    template = anat.load_template(config["anat"]["template_dir"])
    qc = anat.preprocess_t1(f"{raw}/anat/sub-{sub}_T1w.nii.gz", template, p["t1w"], p["mask"], p["brain"],
                            p["affine"][: -len(suffix)], transform=config["anat"]["registration"], seed=seed)
    io.write_tsv(p["anat_qc"], pd.DataFrame([qc]))
    log.info("anat QC: %s", qc)
    done("anat_preprocess")

    # anat_atlas (every atlas in one job, threads 1)
    log = step("anat_atlas")
    for a in ATLASES:
        labels = anat.atlas_to_t1(p[f"atlas_{a}"], p["t1w"], p["affine"][: -len(suffix)], p[f"dseg_{a}"])
        anat.plot_overlay(p["t1w"], p[f"dseg_{a}"], p[f"anat_png_{a}"], f"{a} on T1w (sub-{sub})")
        log.info("%s in T1w space: %d labels present", a, len(set(labels.ravel().tolist()) - {0}))
    done("anat_atlas")

    # dwi_preprocess (threads dwi.nthreads)
    step("dwi_preprocess")
    dwi.preprocess(f"{raw}/dwi/sub-{sub}_dwi.nii.gz", f"{raw}/dwi/sub-{sub}_dwi.bval", f"{raw}/dwi/sub-{sub}_dwi.bvec",
                   p["dwi"], p["dwi_mask"], p["b0"], p["info"], route=config["input"]["dwi"],
                   do_denoise=dwi_cfg["denoise"], do_degibbs=dwi_cfg["degibbs"], eddy=dwi_cfg["eddy"],
                   pe_dir=dwi_cfg["pe_dir"], readout_time=dwi_cfg["readout_time"], bias=dwi_cfg["bias"],
                   nthreads=nthreads, tmpdir=None)
    done("dwi_preprocess")

    # dwi_tensor (threads dwi.nthreads)
    step("dwi_tensor")
    with tempfile.TemporaryDirectory(prefix="sfc_tensor_") as tmp:
        dwi.tensor_metrics(p["dwi"], p["dwi_mask"], Path(tmp) / "tensor.mif", p["fa"], md_out=p["md"],
                           nthreads=nthreads)
    anat.plot_map(p["fa"], p["fa_png"], f"FA (sub-{sub})")
    done("dwi_tensor")

    # dwi_fod (threads dwi.nthreads)
    log = step("dwi_fod")
    info = dwi.DwiInfo.from_json(p["info"])
    plan = dwi.check_tracking(info, tracking.get("algorithm", "iFOD2"), tracking.get("lmax"),
                              act=tracking.get("act", False), seeding=tracking.get("seeding", "dynamic"),
                              weights=tuple(weights), response=dwi_cfg.get("response", "auto"))
    with tempfile.TemporaryDirectory(prefix="sfc_fod_") as tmp:
        responses = dwi.response(p["dwi"], p["dwi_mask"], Path(tmp) / "response_", algorithm=plan["response"],
                                 lmax=plan["lmax"], nthreads=nthreads)
        fods = dwi.fod(p["dwi"], p["dwi_mask"], responses, Path(tmp) / "fod_", algorithm=plan["fod"],
                       lmax=plan["lmax"], nthreads=nthreads)
        Path(p["response"]).write_text(Path(responses[0]).read_text())
        dwi.mrtrix.run(["mrconvert", fods[0], p["fod"]], nthreads=nthreads)
    log.info("FOD: %s with %s response, lmax %d", plan["fod"], plan["response"], plan["lmax"])
    done("dwi_fod")

    # dwi_register (threads 1)
    log = step("dwi_register")
    reg = dwi.register_t1_to_dwi(p["b0"], p["brain"], p["xfm"][: -len(suffix)], dwi_mask=p["dwi_mask"], seed=seed)
    qc = dwi.registration_qc(p["b0"], p["dwi_mask"], p["brain"], p["mask"], reg["fwdtransforms"])
    io.write_tsv(p["register_qc"], pd.DataFrame([qc]))
    log.info("T1w -> DWI: %s", qc)
    done("dwi_register")

    # dwi_atlas (every atlas in one job, threads 1)
    log = step("dwi_atlas")
    to_t1, to_t1_invert = registration.transforms_from_prefix(p["affine"][: -len(suffix)], inverse=True)
    transforms, invert = [p["xfm"]] + to_t1, [False] + to_t1_invert
    for a in ATLASES:
        table = io.read_labels(p[f"labels_{a}"])
        nodes = dwi.atlas_to_dwi(p[f"atlas_{a}"], p["b0"], transforms, invert, table["index"], p[f"nodes_{a}"],
                                 mask=p["dwi_mask"])
        anat.plot_overlay(p["b0"], p[f"nodes_{a}"], p[f"dwi_png_{a}"], f"{a} on mean b0 (sub-{sub})")
        log.info("%s in DWI space: %d of %d regions present", a, len(set(nodes.ravel().tolist()) - {0}), len(table))
    done("dwi_atlas")

    # dwi_tractography (the rule's threads; tracking.act is false in the demo, so no dwi_5tt)
    log = step("dwi_tractography")
    plan = dwi.check_tracking(info, tracking["algorithm"], tracking.get("lmax"), act=tracking["act"],
                              seeding=tracking["seeding"], weights=tuple(weights))
    assert not tracking["act"] and plan["seeding"] != "gmwmi", "the demo tracks without ACT"
    tensor = plan["algorithm"] in dwi.TENSOR_ALGORITHMS
    dwi.track(p["dwi"] if tensor else p["fod"], p["tck"], algorithm=plan["algorithm"], select=tracking["streamlines"],
              seeding=plan["seeding"], mask=p["dwi_mask"], seed_image=None, act=None, seed=seed,
              nthreads=dwi.tracking_threads(tracking, nthreads))
    n = dwi.streamline_count(p["tck"])
    io.write_tsv(p["tracking_qc"], pd.DataFrame([{"algorithm": plan["algorithm"], "seeding": plan["seeding"],
                                                  "act": False, "streamlines": n}]))
    log.info("%d streamlines", n)
    done("dwi_tractography")

    # dwi_connectome (per atlas, threads 1)
    for a in ATLASES:
        log = step(f"dwi_connectome_atlas-{a}")
        n = len(io.read_labels(p[f"labels_{a}"]))
        for weight in weights:
            dwi.connectome(p["tck"], p[f"nodes_{a}"], p[f"sc_{a}"] if weight == "count" else
                           p[f"sc_{a}"].replace("desc-count", f"desc-{weight}"), n_regions=n, weight=weight,
                           tck_weights=None, fa_image=p["fa"], nthreads=1)
        done(f"dwi_connectome_atlas-{a}")

    # the .tck is temp() in the workflow (tracking.keep_tck false): removed after its last consumer
    if not tracking["keep_tck"]:
        os.remove(p["tck"])

    # dwi_qc (threads 1)
    log = step("dwi_qc")
    row = {"participant_id": f"sub-{sub}"}
    for key, path in (("anat", p["anat_qc"]), ("register", p["register_qc"]), ("tracking", p["tracking_qc"])):
        table = pd.read_csv(path, sep="\t")
        row.update({f"{key}_{c}": table.iloc[0][c] for c in table.columns})
    fa = np.asarray(nib.load(p["fa"]).dataobj, dtype=float)
    mask = np.asarray(nib.load(p["dwi_mask"]).dataobj) > 0
    row["fa_median_brain"] = float(np.median(fa[mask]))
    row["fa_p95_brain"] = float(np.percentile(fa[mask], 95))
    io.write_tsv(p["summary"], pd.DataFrame([row]))
    log.info("structural QC: %s", row)
    done("dwi_qc")
    return steps


# --------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------

def timed(cmd, cwd, log_path) -> dict:
    """Wall and CPU seconds (user + system of the command and every descendant it waited for)."""
    load_before = os.getloadavg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        rc = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed (exit {rc}); see {log_path}")
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return {"wall": round(wall, 2), "cpu": round(user + system, 2), "cpu_user": round(user, 2),
            "cpu_system": round(system, 2), "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()]}


def bench_files(out: str) -> dict:
    """The workflow's per-job benchmark files: {job: wall seconds (s column)}."""
    import pandas as pd

    found = {}
    for tsv in sorted(Path(out, "benchmarks").rglob("*.tsv")):
        table = pd.read_csv(tsv, sep="\t")
        name = tsv.stem if tsv.parent.name != "prepare_atlas" else f"prepare_atlas_{tsv.stem}"
        found[name] = {"s": round(float(table["s"].iloc[0]), 2),
                       "cpu_time": round(float(table["cpu_time"].iloc[0]), 2) if "cpu_time" in table else None}
    return found


def drifted_steps(work: Path, run_names: list[str], sub: str) -> list[str]:
    """Deterministic outputs (T1w registration, FA, response) that differ from the first run's."""
    import nibabel as nib
    import numpy as np

    first = subject_paths(str(work / run_names[0] / "out"), sub)
    drift = []
    for name in run_names[1:]:
        other = subject_paths(str(work / name / "out"), sub)
        same = {
            "anat_preprocess": filecmp.cmp(first["affine"], other["affine"], shallow=False),
            "dwi_tensor": np.allclose(nib.load(first["fa"]).get_fdata(), nib.load(other["fa"]).get_fdata(),
                                      atol=1e-6),
            "dwi_fod": np.allclose(np.loadtxt(first["response"], ndmin=2), np.loadtxt(other["response"], ndmin=2),
                                   rtol=1e-6),
        }
        drift += [f"{rule} of {name}" for rule, ok in same.items() if not ok]
    return drift


def versions() -> dict:
    import ants
    import snakemake

    from sfc import mrtrix

    return {"python": platform.python_version(), "snakemake": snakemake.__version__,
            "antspyx": getattr(ants, "__version__", "?"), "mrtrix3": mrtrix.version("tckgen")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each (alternating)")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "structural")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "structural.json")
    parser.add_argument("--dwi-nthreads", type=int, default=None,
                        help="dwi.nthreads for both runs (default: config/config.yaml's)")
    parser.add_argument("--plain", nargs=4, metavar=("BIDS", "OUT", "SUBJECT", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.plain:  # the plain script itself, in its own process
        steps = plain_run(*args.plain)
        Path(args.plain[1], "plain_steps.json").write_text(json.dumps(steps, indent=2) + "\n")
        return

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    bids, truth = work / "bids", work / "truth"
    configfile = work / "config.yaml"
    overrides = {"bids_dir": str(bids), "demo": {"generate": False, "truth_dir": str(truth)}}
    if args.dwi_nthreads:
        overrides["dwi"] = {"nthreads": args.dwi_nthreads}
    configfile.write_text(json.dumps(overrides))
    config = load_config(configfile)
    if not (bids / "participants.tsv").exists():
        from sfc.simulate.images import preset_image_params, simulate_bids_cohort

        shutil.rmtree(bids, ignore_errors=True)
        shutil.rmtree(truth, ignore_errors=True)
        simulate_bids_cohort(bids, truth, atlas_dir=config["atlas_dir"], n_per_group={"TRD": 1, "nTRD": 0, "HC": 0},
                             seed=config["seed"], image_params=preset_image_params("demo"))
    subjects = sorted(d.name[4:] for d in bids.glob("sub-*"))
    assert len(subjects) == 1, subjects
    sub = subjects[0]

    def workflow_cmd(out):
        # as `make demo` runs it: the local profile (its scheduling settings) on 2 cores
        return [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(out.parent), "--profile",
                str(REPO / "profiles" / "local"), "--cores", "2",
                "--configfile", str(DEMO_PRESET), str(configfile), "--config", f"output_dir={out}", "--",
                *targets(str(out), sub)]

    def plain_cmd(out):
        return [sys.executable, str(Path(__file__).resolve()), "--plain", str(bids), str(out), sub, str(configfile)]

    runs, sc = [], {}
    for i in range(args.repeats):
        for kind, make in (("workflow", workflow_cmd), ("plain", plain_cmd)):
            folder = work / f"{kind}{i + 1}"
            shutil.rmtree(folder, ignore_errors=True)  # empty output folder and .snakemake
            folder.mkdir(parents=True)
            out = folder / "out"
            result = timed(make(out), folder, folder / "run.log")
            result.update(kind=kind, repeat=i + 1)
            result["steps"] = bench_files(str(out)) if kind == "workflow" else \
                json.loads((out / "plain_steps.json").read_text())
            missing = [t for t in targets(str(out), sub) if not Path(t).exists()]
            assert not missing, f"{kind} run {i + 1} did not write {missing}"
            sc[f"{kind}{i + 1}"] = {a: subject_paths(str(out), sub)[f"sc_{a}"] for a in ATLASES}
            runs.append(result)
            print(f"{kind} {i + 1}: {result['wall']:.1f} s wall, {result['cpu']:.1f} s CPU, "
                  f"load {result['load_before'][0]:.1f} -> {result['load_after'][0]:.1f}", flush=True)

    # the plain script repeats the rule scripts' calls; if it drifts from them (as it once did:
    # the rules' dwi.response was missing, so plain fitted a tournier response for 98 s where the
    # rules used fa), the runs do different work and the ratio means nothing. The steps up to
    # the FOD are deterministic (one ITK thread, fixed seeds): they must agree in every run.
    drift = drifted_steps(work, [f"{r['kind']}{r['repeat']}" for r in runs], sub)
    assert not drift, f"the plain script no longer does what the rule scripts do: {drift}"
    reference = sc["workflow1"]
    identical = {run: all(filecmp.cmp(reference[a], files[a], shallow=False) for a in ATLASES)
                 for run, files in sc.items()}
    best = {k: min(r["wall"] for r in runs if r["kind"] == k) for k in ("workflow", "plain")}
    cpu = {k: round(sum(r["cpu"] for r in runs if r["kind"] == k), 2) for k in ("workflow", "plain")}
    best_cpu = {k: min(r["cpu"] for r in runs if r["kind"] == k) for k in ("workflow", "plain")}
    record = {
        "benchmark": "structural branch of one demo subject: snakemake --profile profiles/local --cores 2 "
                     "vs a plain sequential script of the same sfc calls",
        "subject": sub,
        "atlases": ATLASES,
        "streamlines": config["dwi"]["tracking"]["streamlines"],
        "dwi_nthreads": config["dwi"]["nthreads"],
        "order": [f"{r['kind']}{r['repeat']}" for r in runs],
        "runs": runs,
        "best_wall": best,
        "ratio_best_wall": round(best["workflow"] / best["plain"], 3),
        "cpu_total": cpu,
        "ratio_cpu_total": round(cpu["workflow"] / cpu["plain"], 3),
        "best_cpu": best_cpu,
        "ratio_best_cpu": round(best_cpu["workflow"] / best_cpu["plain"], 3),
        "sc_identical_to_workflow1": identical,
        "goal_ratio": 1.05,
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "versions": versions(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results[time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())] = record
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
