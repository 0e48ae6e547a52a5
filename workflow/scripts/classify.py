"""Rules classify and classification_summary: TRD vs nTRD from regional SFC (sfc.classify).

classify (one atlas x coupling method): nested CV, study mode, leave-one-site-out;
writes the five per-atlas tables. classification_summary: group/classification.tsv
(all rows) and group/classification_atlases.tsv (atlases side by side).
"""

from sfc import classify
from sfc.io import write_tsv
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)

if snakemake.rule == "classification_summary":
    table = classify.combine_tables(snakemake.input.tables)
    write_tsv(snakemake.output.table, table)
    write_tsv(snakemake.output.atlases, classify.cross_atlas_summary(table))
    log.info("%d rows from %d atlas x method tables", len(table), len(snakemake.input.tables))
else:
    p = snakemake.params
    ds = classify.load_dataset(snakemake.input.sfc, snakemake.input.participants,
                               group_column=p.group_column, positive=p.positive, negative=p.negative,
                               covariates=p.covariates, site_column=p.site_column)
    settings = classify.Settings(**p.settings, seed=p.seed, n_jobs=snakemake.threads)
    log.info("%s: %d %s vs %d %s, %d regions; %s", snakemake.input.sfc, ds.y.sum(), ds.positive,
             len(ds.y) - ds.y.sum(), ds.negative, len(ds.regions), settings)
    result = classify.run_classification(ds, settings)
    classify.write_outputs(result, dict(snakemake.output.items()), snakemake.wildcards.atlas,
                           snakemake.wildcards.method)
    for row in result.summary.itertuples():
        log.info("%-14s %-45.45s AUC %.3f [%.3f, %.3f] p=%s", row.model, row.mode, row.auc,
                 row.auc_ci_low, row.auc_ci_high, row.p_permutation)
