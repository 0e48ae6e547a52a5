"""Rule prepare_atlas: verified atlas image (values 1..N in label order) and its label table."""

from sfc import atlases
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
atlas = snakemake.wildcards.atlas
prepared = atlases.prepare_atlas(
    atlas,
    snakemake.output.image,
    snakemake.output.labels,
    atlas_dir=snakemake.params.atlas_dir,
    resolution=snakemake.params.resolution,
    allow_download=snakemake.params.download,
    # not a param: where a verified file comes from changes no result, so changing it reruns nothing
    mirror=snakemake.config["atlas_mirror"],
)
log.info("%s: %d labels written to %s (%s)", atlas, prepared.n_labels, prepared.image, atlases.citation(atlas))
