# Structure-function coupling from raw BIDS to group statistics.
# Read README.md first; config/README.md documents every key.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/atlases.smk"


rule all:
    input:
        final_targets,
    default_target: True
