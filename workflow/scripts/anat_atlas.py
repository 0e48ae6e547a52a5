"""Rule anat_atlas: every atlas into T1w space (nearest neighbour), each with a QC picture."""

from sfc import anat
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
inp, out = snakemake.input, snakemake.output
suffix = "0GenericAffine.mat"
prefix = inp.affine[: -len(suffix)]
for atlas, image, dseg, png in zip(snakemake.params.atlases, inp.atlas, out.dseg, out.png):
    labels = anat.atlas_to_t1(image, inp.t1w, prefix, dseg)
    anat.plot_overlay(inp.t1w, dseg, png, f"{atlas} on T1w (sub-{snakemake.wildcards.subject})")
    log.info("%s in T1w space: %d labels present", atlas, len(set(labels.ravel().tolist()) - {0}))
