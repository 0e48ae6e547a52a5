"""Synthetic cohorts with known ground truth: the demo dataset and the yardstick of the tests.

Two levels share one simulated brain (:mod:`sfc.simulate.brain`):

- :func:`sfc.simulate.connectome.simulate_connectome_cohort` writes per-subject SC and FC
  matrices for BNA-246 and HOA straight into the workflow's output layout (study scale,
  seconds);
- :func:`sfc.simulate.images.simulate_bids_cohort` writes a small BIDS dataset (T1w, DWI,
  resting BOLD) whose every real processing step has real work to do.

Both plant the study's findings (Ye et al. 2026, npj Mental Health Research 5:27): in TRD,
structure-function decoupling in right MFG, left IPL, left PrG and right STG; in nTRD,
left rostral hippocampus coupling that rises with BSI. ``null=True`` plants nothing.
The command line is ``python -m sfc.simulate --help``.
"""

PRESETS = {
    # subjects per group and effect sizes; images: voxel sizes, volumes, directions
    # demo images: T1w at 2 mm (the issue allows 1-2 mm; half the registration cost of 1.5 mm),
    # DWI 2.5 mm x 32 directions, BOLD 4 mm x 150 volumes (the ImageParams defaults)
    # 5 TRD and 5 nTRD: the fewest the default classification (5 outer x 3 inner folds) accepts
    "demo": dict(n_per_group={"TRD": 5, "nTRD": 5, "HC": 2}, trd_decoupling=0.9, hipp_bsi=1.0,
                 images={"t1_voxel": 2.0}),
    "large": dict(n_per_group={"TRD": 72, "nTRD": 152, "HC": 84}, trd_decoupling=0.7, hipp_bsi=1.0),
    # the study-scale demo of `make demo` (config/study.yaml): the study's sizes and three sites,
    # with a moderate decoupling (0.3). At 0.7 a decoupled region changes its neighbours' FC so
    # much that many unplanted regions differ between TRD and nTRD as well (seed 0, BNA246
    # Spearman, post hoc TRD vs nTRD FDR-significant regions outside every planted set: 12 at 0.7
    # in a workflow run, 6 at 0.45 and 2 at 0.3 without ComBat, all four planted gyri found each
    # time; the workflow's report at 0.3, omnibus F after ComBat: 11 regions, all planted) and
    # every classifier sits near AUC 0.99; at 0.3 the nested AUC is 0.87-0.89.
    "study": dict(n_per_group={"TRD": 72, "nTRD": 152, "HC": 84}, trd_decoupling=0.3, hipp_bsi=1.0, n_sites=3),
}
