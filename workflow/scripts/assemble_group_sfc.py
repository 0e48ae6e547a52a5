"""Rule assemble_group_sfc: one table per atlas and method, participant_id + one column per region."""

from sfc import io, stats
from sfc.logs import script_logger

log = script_logger(snakemake.log[0])
labels = io.read_labels(snakemake.input.labels)
table = stats.assemble(snakemake.params.participant_ids, snakemake.input.tables, labels)
io.write_tsv(snakemake.output[0], table)
log.info("%d subjects x %d regions -> %s", len(table), len(labels), snakemake.output[0])
