"""Rule cross_atlas: gyri (and hemisphere) with a significant group difference in every atlas."""

import pandas as pd

from sfc import io, stats
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
results = {atlas: (pd.read_csv(table, sep="\t", na_values=["n/a"]), io.read_labels(labels))
           for atlas, table, labels in zip(snakemake.params.atlases, snakemake.input.stats, snakemake.input.labels)}
table = stats.replicated_regions(results, column=snakemake.params.column, alpha=snakemake.params.alpha)
io.write_tsv(snakemake.output[0], table)
log.info("%d anatomical units significant in at least one atlas, %d in all (%s)", len(table),
         int(table["replicated"].sum()), snakemake.params.column)
