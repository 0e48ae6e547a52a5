"""Rule dwi_tensor: tensor fit (dwi2tensor) and FA (tensor2metric), with a QC picture."""

import tempfile
from pathlib import Path

from sfc import anat, dwi
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
with tempfile.TemporaryDirectory(prefix="sfc_tensor_") as tmp:
    dwi.tensor_metrics(snakemake.input.dwi, snakemake.input.mask, Path(tmp) / "tensor.mif", snakemake.output.fa,
                       md_out=snakemake.output.md, nthreads=snakemake.threads)
anat.plot_map(snakemake.output.fa, snakemake.output.png, f"FA (sub-{snakemake.wildcards.subject})")
