"""Rule group_stats: ComBat across sites (if configured), then ANCOVA + post hoc + FDR per region."""

from sfc import harmonize, io, stats
from sfc.participants import read_participants
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
p = snakemake.params
labels = io.read_labels(snakemake.input.labels)
sfc = stats.read_group_table(snakemake.input.sfc)
site = p.site_column if p.harmonize else None
# without harmonisation the site enters the ANCOVA as a covariate instead
covariates = stats.model_covariates(p.covariates, p.site_column, p.harmonize)
columns = [*covariates, *([site] if site else [])]
participants = read_participants(snakemake.input.participants, p.group_column, p.groups, columns)
info = stats.merge_participants(sfc, participants, p.group_column, p.groups, columns)
sfc = harmonize.harmonize_table(sfc.loc[info.index], info, site, p.group_column, p.covariates)
table = stats.ancova(sfc, participants, p.group_column, p.groups, covariates, labels, alpha=p.alpha)
io.write_tsv(snakemake.output.table, table)
io.write_json(snakemake.output.sidecar, stats.groupstats_sidecar(table, p.groups, covariates, site))
