"""Rule dwi_fod: response function(s) and FOD (CSD single-shell, MSMT-CSD multi-shell)."""

import tempfile
from pathlib import Path

from sfc import dwi
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
p, out = snakemake.params, snakemake.output
info = dwi.DwiInfo.from_json(snakemake.input.info)
plan = dwi.check_tracking(info, p.tracking.get("algorithm", "iFOD2"), p.tracking.get("lmax"),
                          act=p.tracking.get("act", False), seeding=p.tracking.get("seeding", "dynamic"),
                          weights=tuple(p.weights), response=p.response)
with tempfile.TemporaryDirectory(prefix="sfc_fod_") as tmp:
    responses = dwi.response(snakemake.input.dwi, snakemake.input.mask, Path(tmp) / "response_",
                             algorithm=plan["response"], lmax=plan["lmax"], nthreads=snakemake.threads)
    fods = dwi.fod(snakemake.input.dwi, snakemake.input.mask, responses, Path(tmp) / "fod_", algorithm=plan["fod"],
                   lmax=plan["lmax"], nthreads=snakemake.threads)
    Path(out.response).write_text(Path(responses[0]).read_text())
    dwi.mrtrix.run(["mrconvert", fods[0], out.fod], nthreads=snakemake.threads)
log.info("FOD: %s with %s response, lmax %d", plan["fod"], plan["response"], plan["lmax"])
