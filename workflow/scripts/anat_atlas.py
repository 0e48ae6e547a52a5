"""Rule anat_atlas: atlas labels into T1w space (nearest neighbour) and a QC picture."""

from sfc import anat
from sfc.logs import script_logger

log = script_logger(snakemake.log[0])
suffix = "0GenericAffine.mat"
prefix = snakemake.input.affine[: -len(suffix)]
labels = anat.atlas_to_t1(snakemake.input.atlas, snakemake.input.t1w, prefix, snakemake.output.dseg)
anat.plot_overlay(snakemake.input.t1w, snakemake.output.dseg, snakemake.output.png,
                  f"{snakemake.wildcards.atlas} on T1w (sub-{snakemake.wildcards.subject})")
log.info("%s in T1w space: %d labels present", snakemake.wildcards.atlas, len(set(labels.ravel().tolist()) - {0}))
