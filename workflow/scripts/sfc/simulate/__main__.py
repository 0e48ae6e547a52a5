"""Command line: ``python -m sfc.simulate {connectomes,images,evaluate} ... [options]``.

Examples
--------
Study-scale connectomes (308 subjects, BNA246 + HOA) with the planted effects, and the
same without any effect::

    python -m sfc.simulate connectomes results/sim --preset large
    python -m sfc.simulate connectomes results/sim_null --preset large --null

The small BIDS demo (T1w, DWI, BOLD; truth in a sibling folder)::

    python -m sfc.simulate images demo/bids --truth-dir demo/truth --preset demo

How close a workflow run on that cohort came to the truth (registration, SC, motion, FC)::

    python -m sfc.simulate evaluate results demo/truth --out results/group/demo_truth.tsv
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from . import PRESETS


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="group sizes and effect sizes: demo (5/5/2, strong effects), large "
                        "(the study's 72/152/84) or study (large with 3 sites and a moderate TRD decoupling: "
                        "the study-scale demo of `make demo`)")
    p.add_argument("--n-trd", type=int, help="TRD subjects (overrides the preset)")
    p.add_argument("--n-ntrd", type=int, help="nTRD subjects")
    p.add_argument("--n-hc", type=int, help="healthy controls")
    p.add_argument("--null", action="store_true", help="plant no effect at all (leakage guard)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0); output is deterministic")
    p.add_argument("--trd-decoupling", type=float,
                   help="share (0..1) of the TRD-planted regions' functional input that is non-structural")
    p.add_argument("--hipp-bsi", type=float,
                   help="nTRD: non-structural share of Hipp_L_2_1 input at BSI 0 (falls to 0 at BSI 30)")
    p.add_argument("--n-sites", type=int, default=None, help="acquisition sites (default: the preset's, else 2)")
    p.add_argument("--atlas-dir", default=None,
                   help="folder with the atlas images (default $SFC_ATLAS_DIR, then the download cache, where "
                        "missing ones are downloaded and verified: from $SFC_ATLAS_MIRROR when set)")
    p.add_argument("--no-download", action="store_true", help="never download a missing atlas image")
    p.add_argument("--truth-dir", default=None, help="where the ground truth goes")


def _settings(args, default_preset: str):
    from .connectome import Effects

    preset = dict(PRESETS[args.preset or default_preset])
    sizes = dict(preset["n_per_group"])
    for key, group in (("n_trd", "TRD"), ("n_ntrd", "nTRD"), ("n_hc", "HC")):
        if getattr(args, key) is not None:
            sizes[group] = getattr(args, key)
    effects = Effects(trd_decoupling=args.trd_decoupling if args.trd_decoupling is not None
                      else preset["trd_decoupling"],
                      hipp_bsi=args.hipp_bsi if args.hipp_bsi is not None else preset["hipp_bsi"])
    if args.n_sites is None:
        args.n_sites = preset.get("n_sites", 2)
    return sizes, effects


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfc.simulate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="level", required=True)
    pc = sub.add_parser("connectomes", help="per-subject SC/FC matrices in the workflow's output layout")
    pc.add_argument("out_dir")
    _common(pc)
    pc.add_argument("--atlases", nargs="+", default=["BNA246", "HOA"])
    pc.add_argument("--weights", nargs="+", default=["count", "sift2"], help="SC weights to write")
    pc.add_argument("--timepoints", type=int, default=200, help="BOLD volumes behind each FC")
    pi = sub.add_parser("images", help="a BIDS dataset: T1w, DWI (+bval/bvec/json), resting BOLD")
    pi.add_argument("bids_dir")
    _common(pi)
    pi.add_argument("--t1-voxel", type=float, default=None, help="T1w voxel size in mm (default: the preset's)")
    pi.add_argument("--dwi-voxel", type=float, default=2.5, help="DWI voxel size in mm (default 2.5)")
    pi.add_argument("--bold-voxel", type=float, default=4.0, help="BOLD voxel size in mm (default 4)")
    pi.add_argument("--volumes", type=int, default=150, help="BOLD volumes (default 150)")
    pi.add_argument("--tr", type=float, default=2.0, help="BOLD repetition time in s")
    pi.add_argument("--directions", type=int, default=32, help="DWI directions at b=1000 (default 32)")
    pi.add_argument("--b0", type=int, default=2, help="b=0 volumes (default 2)")
    pi.add_argument("-j", "--jobs", type=int, default=1,
                    help="subjects simulated in parallel (default 1); the output does not depend on it")
    pe = sub.add_parser("evaluate", help="compare a workflow run on an image-level cohort with its truth")
    pe.add_argument("output_dir", help="the workflow's output_dir")
    pe.add_argument("truth_dir", help="the cohort's truth folder")
    pe.add_argument("--atlases", nargs="+", default=None, help="default: the atlases of the truth")
    pe.add_argument("--out", default=None, help="write the table here (TSV) as well as to stdout")
    args = parser.parse_args(argv)
    from ..errors import InputError

    try:
        return _run(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    t0 = time.perf_counter()
    if args.level == "evaluate":
        from .evaluate import evaluate_run

        table = evaluate_run(args.output_dir, args.truth_dir, atlases=args.atlases)
        if args.out:
            table.to_csv(args.out, sep="\t", index=False, float_format="%.4g", na_rep="n/a")
        sys.stdout.write(table.to_string(index=False, float_format=lambda v: f"{v:.3f}") + "\n")
        return 0
    from .. import atlases
    from .connectome import ATLASES

    atlases.ensure_available(ATLASES, args.atlas_dir, allow_download=not args.no_download)
    if args.level == "connectomes":
        from dataclasses import replace

        from .connectome import BrainParams, simulate_connectome_cohort

        sizes, effects = _settings(args, "large")
        res = simulate_connectome_cohort(args.out_dir, atlas_dir=args.atlas_dir, n_per_group=sizes,
                                         atlases=args.atlases, null=args.null, seed=args.seed,
                                         effects=effects, n_sites=args.n_sites,
                                         params=replace(BrainParams(), n_timepoints=args.timepoints),
                                         truth_dir=args.truth_dir, weights=args.weights)
        summary = dict(out_dir=str(res.out_dir), truth_dir=str(res.truth_dir), subjects=len(res.subjects),
                       planted=res.planted, seconds=round(res.seconds, 1))
    else:
        from .images import preset_image_params, simulate_bids_cohort

        sizes, effects = _settings(args, "demo")
        image_params = preset_image_params(args.preset or "demo", t1_voxel=args.t1_voxel, dwi_voxel=args.dwi_voxel,
                                           bold_voxel=args.bold_voxel, n_volumes=args.volumes, tr=args.tr,
                                           n_directions=args.directions, n_b0=args.b0)
        res = simulate_bids_cohort(args.bids_dir, truth_dir=args.truth_dir, atlas_dir=args.atlas_dir,
                                   n_per_group=sizes, null=args.null, seed=args.seed, effects=effects,
                                   n_sites=args.n_sites, image_params=image_params, n_jobs=args.jobs)
        summary = dict(bids_dir=str(res.bids_dir), truth_dir=str(res.truth_dir), subjects=len(res.subjects),
                       planted=res.planted, megabytes=round(res.megabytes, 1), seconds=round(res.seconds, 1))
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    json.dump(summary, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
