"""Rule assemble_group_sfc: one table per atlas and method, participant_id + one column per region.

Subjects listed in group/excluded.tsv (e.g. by the functional QC) are left out.
"""

import os

import pandas as pd

from sfc import io, stats
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
labels = io.read_labels(snakemake.input.labels)
drop = io.excluded_units(snakemake.input.excluded)
# the coupling job's list of the tables it computed (excluded units are not computed), in order
listing = pd.read_csv(snakemake.input.listing, sep="\t", dtype=str)
expected = [pid for pid in snakemake.params.participant_ids if pid not in drop]
if list(listing["participant_id"]) != expected:
    raise ValueError(f"{snakemake.input.listing} lists other subjects than this run: rerun its coupling job")
folder = os.path.dirname(snakemake.input.listing)  # the listing's paths are relative to its folder
pairs = [(pid, os.path.join(folder, table)) for pid, table in zip(listing["participant_id"], listing["path"])
         if pid not in drop]
table = stats.assemble([p for p, _ in pairs], [t for _, t in pairs], labels)
if snakemake.params.log2:
    table = stats.log2_values(table)
    log.info("log2 of the ratios (stats.sdi_log2)")
io.write_tsv(snakemake.output[0], table)
log.info("%d subjects x %d regions -> %s (%d left out by exclusions)", len(table), len(labels),
         snakemake.output[0], len(snakemake.params.participant_ids) - len(pairs))
