"""Rule assemble_group_sfc: one table per atlas and method, participant_id + one column per region.

Subjects listed in group/excluded.tsv (e.g. by the functional QC) are left out.
"""

import os

import pandas as pd

from sfc import io, paths, stats
from sfc.logs import script_logger

log = script_logger(snakemake.log[0])
labels = io.read_labels(snakemake.input.labels)
excluded = pd.read_csv(snakemake.input.excluded, sep="\t", dtype=str, keep_default_na=False)
drop = {paths.unit_id(pid.removeprefix("sub-"), ses if ses not in ("", "n/a") else None)
        for pid, ses in zip(excluded["participant_id"], excluded.get("session", [""] * len(excluded)))}
# the coupling job's list of the tables it wrote, one per participant_id, in the same order
listing = pd.read_csv(snakemake.input.listing, sep="\t", dtype=str)
if list(listing["participant_id"]) != list(snakemake.params.participant_ids):
    raise ValueError(f"{snakemake.input.listing} lists other subjects than this run: rerun its coupling job")
folder = os.path.dirname(snakemake.input.listing)  # the listing's paths are relative to its folder
pairs = [(pid, os.path.join(folder, table)) for pid, table in zip(listing["participant_id"], listing["path"])
         if pid not in drop]
table = stats.assemble([p for p, _ in pairs], [t for _, t in pairs], labels)
io.write_tsv(snakemake.output[0], table)
log.info("%d subjects x %d regions -> %s (%d left out by exclusions)", len(table), len(labels),
         snakemake.output[0], len(snakemake.params.participant_ids) - len(pairs))
