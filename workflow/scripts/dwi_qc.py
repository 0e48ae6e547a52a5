"""Rule dwi_qc: one row of structural QC per subject (preprocessing steps, registration, FA, streamlines)."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from sfc import io
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
inp = snakemake.input
row = {"participant_id": f"sub-{snakemake.wildcards.subject}"}
for key in ("anat", "register", "tracking"):
    table = pd.read_csv(inp[key], sep="\t")
    row.update({f"{key}_{c}": table.iloc[0][c] for c in table.columns})
# the preprocessing steps that ran (dwi.eddy: auto runs eddy only where FSL's eddy exists)
# (the validation JSON of dwi_preprocess, read as JSON: sfc.dwi would pull antspyx into this env)
steps = json.loads(Path(inp.info).read_text()).get("steps", {})
row.update({f"dwi_{step}": value for step, value in steps.items()})
fa = np.asarray(nib.load(inp.fa).dataobj, dtype=float)
mask = np.asarray(nib.load(inp.mask).dataobj) > 0
row["fa_median_brain"] = float(np.median(fa[mask]))
row["fa_p95_brain"] = float(np.percentile(fa[mask], 95))
io.write_tsv(snakemake.output.qc, pd.DataFrame([row]))
log.info("structural QC: %s", row)
