"""Rule dwi_sift2: per-streamline SIFT2 weights."""

from sfc import dwi
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
dwi.sift2(snakemake.input.tck, snakemake.input.fod, snakemake.output.weights, act=snakemake.input.get("five_tt"),
          nthreads=snakemake.threads)
