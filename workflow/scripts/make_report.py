"""Rule report: the self-contained report.html from the group outputs (sfc.report).

The output folder is the one holding report.html (sfc.paths.report)."""

import os
from pathlib import Path

from sfc import report
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
p = snakemake.params
spec = report.ReportSpec(
    output_dir=str(Path(snakemake.output.html).parent), participants=snakemake.input.participants, atlases=list(p.atlases),
    methods=list(p.methods), groups=list(p.groups), group_column=p.group_column,
    covariates=list(p.covariates), site_column=p.site_column, clinical_scales=list(p.clinical_scales),
    alpha=p.alpha, classification=bool(snakemake.input.classification), sc_weight=p.sc_weight,
    units=[report.Unit(**u) for u in p.units], gallery_subjects=p.gallery_subjects,
    max_region_plots=p.max_region_plots, figures_dir=snakemake.output.figures, config=dict(p.config),
    command=os.environ.get("SFC_COMMAND_LINE", ""), route=p.route, positive=p.positive)
summary = report.build_report(snakemake.output.html, spec)
log.info("%s: %d figures, %.1f MB", snakemake.output.html, summary["n_figures"], summary["bytes"] / 1e6)
for key, names in summary["significant"].items():
    log.info("%s: %d FDR-significant regions: %s", key, len(names), ", ".join(names))
