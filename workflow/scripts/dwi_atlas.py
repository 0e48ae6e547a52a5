"""Rule dwi_atlas: every atlas (template space) -> T1w -> DWI with nearest neighbour; nodes 1..N in label order."""

from sfc import anat, dwi, io, registration
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
inp, out = snakemake.input, snakemake.output
suffix = "0GenericAffine.mat"
to_t1, to_t1_invert = registration.transforms_from_prefix(inp.anat_affine[: -len(suffix)], inverse=True)
transforms, invert = [inp.xfm] + to_t1, [False] + to_t1_invert  # T1w->DWI after MNI->T1w
for atlas, image, labels, nodes_path, png in zip(snakemake.params.atlases, inp.atlas, inp.labels, out.nodes,
                                                 out.png):
    table = io.read_labels(labels)
    nodes = dwi.atlas_to_dwi(image, inp.b0, transforms, invert, table["index"], nodes_path, mask=inp.mask)
    anat.plot_overlay(inp.b0, nodes_path, png, f"{atlas} on mean b0 (sub-{snakemake.wildcards.subject})")
    present = len(set(nodes.ravel().tolist()) - {0})
    log.info("%s in DWI space: %d of %d regions present", atlas, present, len(table))
