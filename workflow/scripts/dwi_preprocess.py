"""Rule dwi_preprocess: validate the DWI, then MRtrix3 preprocessing (or import QSIPrep's)."""

from sfc import dwi
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
p, out = snakemake.params, snakemake.output
info, plan = dwi.preprocess(
    snakemake.input.dwi, snakemake.input.bval, snakemake.input.bvec,
    out.dwi, out.mask, out.b0, out.info,
    route=p.route, do_denoise=p.denoise, do_degibbs=p.degibbs,
    eddy=p.eddy, pe_dir=p.pe_dir, readout_time=p.readout_time, bias=p.bias,
    nthreads=snakemake.threads, tmpdir=snakemake.resources.get("tmpdir"),
)
