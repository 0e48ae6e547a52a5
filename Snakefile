# Structure-function coupling from raw BIDS to group statistics.
# Read README.md first; config/README.md documents every key.

import os

from snakemake.utils import min_version

min_version("9.0")


# The defaults live beside this file, so `snakemake -s <repo>/Snakefile -d <project>` works from anywhere.
configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/atlases.smk"
include: "workflow/rules/anat.smk"
include: "workflow/rules/dwi.smk"
include: "workflow/rules/func.smk"
include: "workflow/rules/coupling.smk"
include: "workflow/rules/group.smk"
include: "workflow/rules/classify.smk"
include: "workflow/rules/report.smk"


# A subject whose job stopped on its own bad input is recorded (sfc.failures); say how to go on.
onerror:
    say_recorded_failures()


rule all:
    input:
        final_targets,
    default_target: True


# Consortium scale (benchmarks/README.md, config/README.md): the per-subject final outputs
# only, so `snakemake subjects --batch subjects=1/10` plans a tenth of the subjects at a
# time; the group stage then runs on the finished connectomes with `input: connectomes`.
# An input function, so nothing is computed unless this rule is asked for.
rule subjects:
    input:
        lambda wildcards: [t for t in final_targets(wildcards) if os.path.relpath(t, OUT).startswith("sub-")],
