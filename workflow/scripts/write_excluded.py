"""Rule write_excluded: group/excluded.tsv from discovery (participant_id, reason)."""

import pandas as pd

from sfc.io import write_tsv
from sfc.logs import script_logger

log = script_logger(snakemake.log[0])
columns = ["participant_id", "session", "reason"] if snakemake.params.has_sessions else ["participant_id", "reason"]
table = pd.DataFrame(snakemake.params.records, columns=columns)
write_tsv(snakemake.output[0], table)
log.info("%d subject(s) left out", len(table))
