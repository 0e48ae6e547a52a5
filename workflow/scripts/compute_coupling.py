"""Rule coupling: regional SFC of every included subject for one atlas and one method.

One job per (atlas, method) computes all subjects at once (batched Spearman:
seconds for a thousand subjects; SDI needs the group-average SC anyway) and
writes one ``index, name, sfc`` table per subject.
"""

import os

import numpy as np
import pandas as pd

from sfc import coupling, io
from sfc.logs import script_logger

log = script_logger(snakemake.log[0])
method = snakemake.params.method
labels = io.read_labels(snakemake.input.labels)
n = len(labels)
threads = max(1, int(snakemake.threads))
params = snakemake.params

sc = coupling.read_sc(snakemake.input.sc, n, threads=threads)
if method == "spearman":
    fc = coupling.read_fc(snakemake.input.fc, n, threads=threads)
    values = coupling.spearman(sc, fc, min_neighbours=params.min_neighbours, threads=threads)
elif method == "communication":
    fc = coupling.read_fc(snakemake.input.fc, n, threads=threads)
    distance = coupling.region_distance(labels, distance=params.distance or None, image=snakemake.input.image)
    values = coupling.communication(sc, fc, distance, path_transform=params.path_transform)
elif method == "sdi":
    series = [coupling.read_timeseries(p, labels) for p in snakemake.input.timeseries]
    values, cutoff = coupling.group_sdi(series, coupling.group_average_sc(sc), log2=params.sdi_log2)
    log.info("SDI: group-average SC of %d subjects, %d of %d harmonics below the median-energy cut-off",
             len(series), cutoff, n)
else:
    raise ValueError(f"unknown coupling method {method!r}")

few = coupling.n_neighbours(sc) < params.min_neighbours
log.info("%s / %s: %d subjects x %d regions; mean %.3f; %d region values NaN (%d with fewer than %d "
         "structural neighbours)", snakemake.wildcards.atlas, method, len(values), n, np.nanmean(values),
         int(np.isnan(values).sum()), int(few.sum()), params.min_neighbours)
# the per-subject tables are the unnamed outputs, in participant_ids order; then the listing
tables = [path for path in snakemake.output if path != snakemake.output.listing]
if len(tables) != len(values):
    raise ValueError(f"{len(values)} subjects computed but {len(tables)} outputs")
coupling.write_region_tables(tables, values, labels)
# paths relative to the listing's folder: the output folder stays movable (a copied project, or
# two runs of the same inputs into two folders, hold the same bytes)
folder = os.path.dirname(snakemake.output.listing)
io.write_tsv(snakemake.output.listing, pd.DataFrame({"participant_id": params.participant_ids,
                                                     "path": [os.path.relpath(t, folder) for t in tables]}))
