"""Rule dwi_atlas: atlas (template space) -> T1w -> DWI with nearest neighbour; nodes 1..N in label order."""

from sfc import anat, dwi, io, registration
from sfc.logs import script_logger

log = script_logger(snakemake.log[0])
inp = snakemake.input
suffix = "0GenericAffine.mat"
to_t1, to_t1_invert = registration.transforms_from_prefix(inp.anat_affine[: -len(suffix)], inverse=True)
transforms, invert = [inp.xfm] + to_t1, [False] + to_t1_invert  # T1w->DWI after MNI->T1w
table = io.read_labels(inp.labels)
nodes = dwi.atlas_to_dwi(inp.atlas, inp.b0, transforms, invert, table["index"], snakemake.output.nodes,
                         mask=inp.mask)
anat.plot_overlay(inp.b0, snakemake.output.nodes, snakemake.output.png,
                  f"{snakemake.wildcards.atlas} on mean b0 (sub-{snakemake.wildcards.subject})")
present = len(set(nodes.ravel().tolist()) - {0})
log.info("%s in DWI space: %d of %d regions present", snakemake.wildcards.atlas, present, len(table))
