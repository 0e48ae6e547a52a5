"""Rule func_connectivity: parcellate, denoise, correlate (one subject, every atlas, either route)."""

import nibabel as nib
import numpy as np

from sfc import fmriprep, func, io, registration
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
params, inp, out = snakemake.params, snakemake.input, snakemake.output
settings = func.DenoiseSettings.from_config(params.func)
mask = None
if params.route == "fmriprep":
    run = fmriprep.FmriprepRun(**params.run)
    regressors, keep, fd = fmriprep.load_confounds(run, settings.confounds, settings.fd_threshold,
                                                   settings.scrub_min_segment)
    tr = fmriprep.bold_repetition_time(run)
    bold_path = run.bold
    mask = nib.load(run.mask) if run.mask else None
else:
    regressors, keep, fd = func.builtin_confounds(inp.confounds, settings)
    tr = params.tr
    bold_path = inp.bold
    anat, invert = registration.transforms_from_prefix(params.anat_prefix, inverse=True)
bold = func.load_bold(bold_path)
for k, atlas in enumerate(params.atlases):
    labels = io.read_labels(inp.labels[k])
    atlas_img = nib.load(inp.atlas[k])
    if params.route == "fmriprep":
        labels_img = atlas_img  # NiftiLabelsMasker resamples it (nearest) to the MNI-space BOLD
    else:
        labels_img = func.atlas_to_bold(atlas_img, inp.boldref, [inp.xfm], anat, invert)
    res, summary = func.subject_connectivity(bold, labels_img, labels, tr, regressors, keep, fd, settings,
                                             mask_img=mask, atlas=atlas, path=bold_path)
    fc, table = res.fc, res.timeseries
    io.write_matrix(out.fc[k], fc)
    func.write_timeseries(out.timeseries[k], table)
    func.plot_fc(out.plot[k], fc, f"sub-{snakemake.wildcards.subject} {atlas} "
                                  f"({settings.confounds}, {int(keep.sum())} volumes)")
    log.info("%s: %d/%d regions with signal, %d volumes kept", atlas,
             int(np.isfinite(np.diag(fc)).sum()), len(labels), int(keep.sum()))
