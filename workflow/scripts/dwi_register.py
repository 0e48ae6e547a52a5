"""Rule dwi_register: rigid T1w -> mean b0 (antspyx, mutual information) and its QC numbers
(NMI, mask Dice, and the distance to a second start: registration.second_start)."""

import pandas as pd

from sfc import dwi, io
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
inp = snakemake.input
suffix = "0GenericAffine.mat"
reg = dwi.register_t1_to_dwi(inp.b0, inp.t1_brain, snakemake.output.xfm[: -len(suffix)], dwi_mask=inp.mask,
                             seed=snakemake.params.seed)
qc = dwi.registration_qc(inp.b0, inp.mask, inp.t1_brain, inp.t1_mask, reg["fwdtransforms"])
qc.update(dwi.check_t1_to_dwi(inp.b0, inp.t1_brain, reg["fwdtransforms"][0], inp.mask, seed=snakemake.params.seed))
io.write_tsv(snakemake.output.qc, pd.DataFrame([qc]))
log.info("T1w -> DWI: %s", qc)
