"""Rule coupling: regional SFC of every included subject for one atlas and one method.

One job per (atlas, method) computes all subjects at once (batched Spearman:
seconds for a thousand subjects; SDI needs the group-average SC anyway) and
writes one ``index, name, sfc`` table per subject. Units in group/excluded.tsv (QC)
are not computed and shape nothing here (sfc.coupling.compute_units); their tables
hold n/a, and the listing names only the computed ones.
"""

import os

import numpy as np
import pandas as pd

from sfc import coupling, io
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
params = snakemake.params
labels = io.read_labels(snakemake.input.labels)
excluded = io.excluded_units(snakemake.input.excluded)
ids = list(params.participant_ids)
for pid in ids:
    if pid in excluded:
        log.info("%s not computed: excluded (%s)", pid, excluded[pid])
result = coupling.compute_units(
    params.method, ids, excluded, labels, snakemake.input.sc, snakemake.input.fc, snakemake.input.timeseries,
    image=snakemake.input.image or None, min_neighbours=params.min_neighbours,
    path_transform=params.path_transform, distance=params.distance,
    threads=max(1, int(snakemake.threads)),
)
values = result.values[result.kept]
if result.cutoff is not None:
    log.info("SDI: group-average SC of %d subjects, %d of %d harmonics below the median-energy cut-off",
             len(result.kept), result.cutoff, len(labels))
few = coupling.n_neighbours(result.sc) < params.min_neighbours
log.info("%s / %s: %d subjects x %d regions; mean %.3f; %d region values NaN (%d with fewer than %d "
         "structural neighbours)", snakemake.wildcards.atlas, params.method, len(values), len(labels),
         np.nanmean(values), int(np.isnan(values).sum()), int(few.sum()), params.min_neighbours)
# the per-subject tables are the unnamed outputs, in participant_ids order; then the listing
tables = [path for path in snakemake.output if path != snakemake.output.listing]
if len(tables) != len(ids):
    raise ValueError(f"{len(ids)} subjects but {len(tables)} outputs")
coupling.write_region_tables(tables, result.values, labels)
# paths relative to the listing's folder: the output folder stays movable (a copied project, or
# two runs of the same inputs into two folders, hold the same bytes)
folder = os.path.dirname(snakemake.output.listing)
io.write_tsv(snakemake.output.listing, pd.DataFrame({"participant_id": [ids[i] for i in result.kept],
                                                     "path": [os.path.relpath(tables[i], folder)
                                                              for i in result.kept]}))
