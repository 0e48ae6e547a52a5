"""Rule dwi_tractography: tckgen (algorithm, count, seeding, ACT from the config)."""

import tempfile
from pathlib import Path

import pandas as pd

from sfc import dwi, io
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
p, inp = snakemake.params, snakemake.input
info = dwi.DwiInfo.from_json(inp.info)
plan = dwi.check_tracking(info, p.tracking["algorithm"], p.tracking.get("lmax"), act=p.tracking["act"],
                          seeding=p.tracking["seeding"], weights=tuple(p.weights))
tensor = plan["algorithm"] in dwi.TENSOR_ALGORITHMS
act = inp.get("five_tt") if p.tracking["act"] else None
with tempfile.TemporaryDirectory(prefix="sfc_tck_") as tmp:
    seed_image = None
    if plan["seeding"] == "gmwmi":
        seed_image = dwi.gmwm_interface(act, Path(tmp) / "gmwmi.mif", nthreads=snakemake.threads)
    options = dict(algorithm=plan["algorithm"], seeding=plan["seeding"], mask=inp.mask, seed_image=seed_image,
                   act=act)
    source = inp.dwi if tensor else inp.fod
    if p.tracking.get("reproducible", True):
        chunks = p.tracking["chunks"]
        dwi.track_chunks(source, snakemake.output.tck, select=p.tracking["streamlines"], chunks=chunks,
                         seed=p.seed, workers=snakemake.threads, **options)
    else:
        chunks = 1
        dwi.track(source, snakemake.output.tck, select=p.tracking["streamlines"], seed=p.seed,
                  nthreads=snakemake.threads, **options)
n = dwi.streamline_count(snakemake.output.tck)
io.write_tsv(snakemake.output.qc, pd.DataFrame([{"algorithm": plan["algorithm"], "seeding": plan["seeding"],
                                                 "act": bool(act), "streamlines": n, "chunks": chunks}]))
log.info("%d streamlines (%s, %s seeding, %d chunk(s) on %d thread(s))", n, plan["algorithm"], plan["seeding"],
         chunks, snakemake.threads)
