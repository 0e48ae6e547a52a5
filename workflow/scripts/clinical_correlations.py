"""Rule clinical_correlations: partial Pearson / Spearman of regional SFC with clinical scales,
within each patient group (covariates partialled out), FDR within group, scale and method."""

import pandas as pd

from sfc import harmonize, io, stats
from sfc.participants import read_participants
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
p = snakemake.params
labels = io.read_labels(snakemake.input.labels)
sfc = stats.read_group_table(snakemake.input.sfc)
site = p.site_column if p.harmonize else None
# without harmonisation the site is partialled out with the covariates instead
covariates = stats.model_covariates(p.covariates, p.site_column, p.harmonize)
columns = [*covariates, *([site] if site else [])]
participants = read_participants(snakemake.input.participants, p.group_column, p.groups,
                                 [*columns, *p.scales])
info = stats.merge_participants(sfc, participants, p.group_column, p.groups, columns)
sfc = harmonize.harmonize_table(sfc.loc[info.index], info, site, p.group_column, p.covariates)
regions = None
if p.regions == "significant":
    groupstats = pd.read_csv(snakemake.input.groupstats, sep="\t", na_values=["n/a"])
    regions = stats.significant_regions(groupstats, "p_fdr", p.alpha)
    log.info("testing the %d regions with group-comparison p_fdr < %g", len(regions), p.alpha)
table = stats.clinical_correlations(sfc, participants, p.group_column, p.patient_groups, p.scales, covariates,
                                    labels, regions=regions, methods=p.methods)
io.write_tsv(snakemake.output.table, table)
io.write_json(snakemake.output.sidecar, stats.clinical_sidecar(table, covariates, site))
log.info("%d tests, %d with p_fdr < %g", len(table), int((table["p_fdr"] < p.alpha).sum()), p.alpha)
