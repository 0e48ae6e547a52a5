"""Rule dwi_connectome: tck2connectome per weight, written as headerless N x N TSV in label order."""

from sfc import dwi, io
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
inp = snakemake.input
n = len(io.read_labels(inp.labels))
for weight in snakemake.params.weights:
    mat = dwi.connectome(inp.tck, inp.nodes, snakemake.output[f"sc_{weight}"], n_regions=n, weight=weight,
                         tck_weights=inp.get("sift2"), fa_image=inp.fa, nthreads=snakemake.threads)
    log.info("%s SC: %d of %d regions connected, %d edges", weight, int((mat.sum(0) > 0).sum()), n,
             int((mat > 0).sum() // 2))
