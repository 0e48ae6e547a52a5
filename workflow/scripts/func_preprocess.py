"""Rule func_preprocess (built-in route): dummy volumes, motion correction, BOLD->T1w, confounds."""

import os

os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(snakemake.threads)  # before antspyx loads

import nibabel as nib  # noqa: E402
import pandas as pd  # noqa: E402

from sfc import func, io  # noqa: E402
from sfc.logs import script_logger  # noqa: E402

log = script_logger(snakemake.log[0], job=snakemake)
params = snakemake.params
suffix = "0GenericAffine.mat"
xfm = str(snakemake.output.xfm)
assert xfm.endswith(suffix), xfm
pre = func.preprocess(
    snakemake.input.bold,
    snakemake.input.t1w,
    snakemake.input.dseg,
    xfm[: -len(suffix)],
    dummy_volumes=params.dummy_volumes,
    seed=params.seed,
    wm_labels=tuple(params.wm_labels),
    csf_labels=tuple(params.csf_labels),
    fd_radius=params.fd_radius,
    t1w_mask=snakemake.input.mask,
)
nib.save(pre.corrected, snakemake.output.bold)
nib.save(pre.reference, snakemake.output.boldref)
nib.save(pre.dseg, snakemake.output.dseg)
io.write_tsv(snakemake.output.confounds, pre.confounds)
io.write_tsv(snakemake.output.register, pd.DataFrame([pre.registration_check]))
log.info("wrote %s (%d volumes, %d confound columns)", snakemake.output.bold, pre.corrected.shape[3],
         pre.confounds.shape[1])
