"""Rule dwi_5tt (ACT): the T1w 5TT image aligned with the DWI (T1w->DWI rigid, T1w voxel size)."""

from sfc import dwi
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
dwi.five_tt_to_dwi(snakemake.input.five_tt, snakemake.input.b0, [snakemake.input.xfm], snakemake.output.five_tt)
dwi.mrtrix.run(["5ttcheck", snakemake.output.five_tt], nthreads=1)
