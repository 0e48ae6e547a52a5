"""Rule write_excluded: group/excluded.tsv (participant_id, [session,] reason).

Subjects left out at discovery (from params) and subjects a QC stage excluded (the
per-subject QC tables in the input whose ``include`` is false).
"""

import pandas as pd

from sfc.io import write_tsv
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
columns = ["participant_id", "session", "reason"] if snakemake.params.has_sessions else ["participant_id", "reason"]
rows = list(snakemake.params.records)
for path in snakemake.input.qc:
    qc = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    for row in qc.itertuples(index=False):
        if row.include.strip().lower() != "true":
            rows.append({"participant_id": row.participant_id, "session": getattr(row, "session", None),
                         "reason": f"QC: {row.reason}"})
table = pd.DataFrame(rows, columns=columns)
write_tsv(snakemake.output[0], table)
log.info("%d subject(s) left out (%d at discovery, %d by QC)", len(table), len(snakemake.params.records),
         len(table) - len(snakemake.params.records))
