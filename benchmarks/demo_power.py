"""Can a cohort of a given size show the planted TRD decoupling as FDR-significant?

Two measurements, written to results/demo_power.json:

1. **Ideal measurement** (seconds, no images): subjects of the demo's simulated brain, each
   measured perfectly except for the finite BOLD run: regional SFC (Spearman, the workflow's
   default method) from the *true* SC and the FC of ``n_volumes`` noise-free, motion-free,
   HRF-convolved volumes at TR 2 s. Swept over subjects per group and volumes. This is the
   ceiling of any imaging pipeline on that data: real processing only loses more.
2. **A finished run** (``--results``/``--truth``, e.g. after ``make demo``): the same TRD vs
   nTRD t statistics from the truth, from measured SC with true FC, true SC with measured FC,
   and the measured SC and FC, to show where the contrast is lost.

For each case: the median and lowest t (TRD - nTRD, two-sample with pooled variance) over the
planted BNA246 regions, and how many planted regions reach |t| > 3.5 (about what Benjamini-
Hochberg at q 0.05 over 246 regions needs with 25 true effects and 5 vs 5 subjects).

    .venv/bin/python benchmarks/demo_power.py [--results results --truth demo/truth]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))

from sfc.simulate import brain  # noqa: E402
from sfc.simulate.connectome import Effects, build_model, simulate_subject  # noqa: E402
from sfc.simulate.images import BURN_VOLUMES, IMAGE_BRAIN_PARAMS, neural_bold  # noqa: E402

ATLAS = "BNA246"
T_NEEDED = 3.5


def contrast(values: np.ndarray, groups: np.ndarray, planted: np.ndarray) -> dict:
    """TRD vs nTRD t per region, summarised over the planted regions."""
    t = np.asarray(stats.ttest_ind(values[groups == "TRD"], values[groups == "nTRD"], axis=0,
                                   nan_policy="omit").statistic, dtype=float)
    return {"t_median": round(float(np.nanmedian(t[planted])), 2), "t_min": round(float(np.nanmin(t[planted])), 2),
            "planted_beyond": int((t[planted] < -T_NEEDED).sum()), "planted": int(planted.sum()),
            "other_beyond": int((np.abs(t[~planted]) > T_NEEDED).sum()),
            "sfc_planted_TRD": round(float(np.nanmean(values[groups == "TRD"][:, planted])), 3),
            "sfc_planted_nTRD": round(float(np.nanmean(values[groups == "nTRD"][:, planted])), 3)}


def ideal(seed: int, n_per_group: int, n_volumes: int, decoupling: float, tr: float = 2.0) -> dict:
    params = replace(IMAGE_BRAIN_PARAMS, n_timepoints=n_volumes + BURN_VOLUMES)
    model = build_model(None, seed, Effects(trd_decoupling=decoupling, hipp_bsi=1.0), False, params, 2)
    planted = model.effect_masks()["trd_decoupling"]
    mixing = model.geometry.signal_mixing(ATLAS)
    groups = np.array(["TRD"] * n_per_group + ["nTRD"] * n_per_group)
    values = {"analytic FC": [], "sampled FC": []}
    for k, group in enumerate(groups):
        sb = simulate_subject(model, k, group, 10.0, k % 2)
        sc = sb.atlas[ATLAS]["sc_true"]
        bold = neural_bold(sb, tr)  # the image generator's BOLD before noise, motion and voxels
        values["analytic FC"].append(brain.sfc_spearman(sc, sb.atlas[ATLAS]["fc_true"], 5))
        values["sampled FC"].append(brain.sfc_spearman(sc, np.corrcoef((bold @ mixing.T).T), 5))
    return {key: contrast(np.array(v), groups, planted) for key, v in values.items()}


def measured(results: Path, truth: Path) -> dict:
    participants = pd.read_csv(truth.parent / "bids" / "participants.tsv", sep="\t").set_index("participant_id")
    table = pd.read_csv(truth / "planted.tsv", sep="\t")
    names = pd.read_csv(results / "atlases" / f"atlas-{ATLAS}_dseg.tsv", sep="\t")["name"]
    planted = names.isin(table.loc[(table.atlas == ATLAS) & (table.effect == "trd_decoupling") & table.planted,
                                   "name"]).to_numpy()
    read = lambda p: np.loadtxt(p, delimiter="\t")  # noqa: E731
    values = {"true SC, true FC": [], "measured SC, true FC": [], "true SC, measured FC": [],
              "measured SC, measured FC": []}
    groups = []
    for sub in sorted(p.name for p in truth.glob("sub-*")):
        sc_path = results / sub / "dwi" / f"{sub}_atlas-{ATLAS}_desc-count_sc.tsv"
        fc_path = results / sub / "func" / f"{sub}_task-rest_atlas-{ATLAS}_desc-corr_fc.tsv"
        if not (sc_path.is_file() and fc_path.is_file()):
            continue
        sc_t, fc_t = (read(truth / sub / f"{sub}_atlas-{ATLAS}_desc-true_{m}.tsv") for m in ("sc", "fc"))
        sc_m, fc_m = read(sc_path), read(fc_path)
        for key, (sc, fc) in zip(values, [(sc_t, fc_t), (sc_m, fc_t), (sc_t, fc_m), (sc_m, fc_m)]):
            values[key].append(brain.sfc_spearman(sc, fc, 5))
        groups.append(participants.loc[sub, "group"])
    groups = np.array(groups)
    return {key: contrast(np.array(v), groups, planted) for key, v in values.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=20260127)
    ap.add_argument("--decoupling", type=float, default=0.9, help="the demo preset's TRD decoupling")
    ap.add_argument("--sizes", default="5,10,20", help="subjects per group (TRD and nTRD each)")
    ap.add_argument("--volumes", default="150,300,600,2000")
    ap.add_argument("--results", type=Path, help="a finished run's output folder (e.g. results)")
    ap.add_argument("--truth", type=Path, help="its ground truth (e.g. demo/truth)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "demo_power.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    record = {"date": time.strftime("%Y-%m-%d"), "seed": args.seed, "decoupling": args.decoupling,
              "t_needed": T_NEEDED, "ideal": []}
    for n in map(int, args.sizes.split(",")):
        for v in map(int, args.volumes.split(",")):
            row = {"n_per_group": n, "n_volumes": v, **ideal(args.seed, n, v, args.decoupling)}
            record["ideal"].append(row)
            s = row["sampled FC"]
            print(f"ideal, {n} vs {n}, {v} volumes: t median {s['t_median']}, min {s['t_min']}, "
                  f"{s['planted_beyond']}/{s['planted']} planted beyond -{T_NEEDED} "
                  f"(analytic FC: median {row['analytic FC']['t_median']})", flush=True)
    if args.results and args.truth:
        record["measured"] = {"results": str(args.results), **measured(args.results, args.truth)}
        for key, s in record["measured"].items():
            if key != "results":
                print(f"{args.results}: {key}: t median {s['t_median']}, min {s['t_min']}, "
                      f"{s['planted_beyond']}/{s['planted']} planted beyond -{T_NEEDED}, "
                      f"{s['other_beyond']} others beyond {T_NEEDED}")
    record["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
