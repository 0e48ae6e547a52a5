"""Rule anat_5tt: five-tissue-type image (5ttgen fsl if FSL is installed, else antspyx k-means)."""

from sfc import anat
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
how = anat.five_tt(snakemake.input.t1w, snakemake.input.brain, snakemake.input.mask, snakemake.output.five_tt,
                   use_fsl=snakemake.params.use_fsl, seed=snakemake.params.seed, nthreads=snakemake.threads)
log.info("5TT written with %s", how)
