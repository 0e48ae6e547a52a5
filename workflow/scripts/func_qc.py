"""Rule func_qc: motion summary, include/exclude decision, FD and carpet plots (one subject)."""

import nibabel as nib
import pandas as pd

from sfc import confounds as conf
from sfc import fmriprep, func, io
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
params, inp, out = snakemake.params, snakemake.input, snakemake.output
settings = func.DenoiseSettings.from_config(params.func)
session = snakemake.wildcards.get("session")
mask = None
if params.route == "fmriprep":
    run = fmriprep.FmriprepRun(**params.run)
    _, keep, fd = fmriprep.load_confounds(run, "none", settings.fd_threshold, settings.scrub_min_segment)
    tr = fmriprep.bold_repetition_time(run)
    table = fmriprep.read_confounds_tsv(run.confounds)
    bold_path, n_dummy = run.bold, 0
    mask = nib.load(run.mask) if run.mask else None
else:
    _, keep, fd = func.builtin_confounds(inp.confounds, func.DenoiseSettings(**{**settings.__dict__,
                                                                                  "confounds": "none"}))
    table = pd.read_csv(inp.confounds, sep="\t", na_values=["n/a"])
    tr, bold_path, n_dummy = params.tr, inp.bold, params.dummy_volumes
    mask = nib.load(inp.dseg)  # T1w tissue labels on the BOLD grid: > 0 is brain
summary = func.qc_summary(fd, keep, tr, settings, n_dummy=n_dummy, subject=snakemake.wildcards.subject,
                          session=session)
func.write_qc(out.summary, summary)
motion = table[[c for c in conf.MOTION_COLUMNS if c in table.columns]].assign(framewise_displacement=fd,
                                                                               kept=keep.astype(int))
io.write_tsv(out.motion, motion)
func.plot_fd(out.fd_plot, fd, keep, settings.fd_threshold)
func.plot_carpet(out.carpet, func.load_bold(bold_path), mask_img=mask, fd=fd)
log.info("include=%s (%s); mean FD %.3f mm, %d/%d volumes kept", summary["include"], summary["reason"],
         summary["mean_fd"], summary["n_kept"], summary["n_volumes"])
