"""Rule session_participants: participants.tsv with each participant's values at the analysed session.

For datasets whose sub-<s>_sessions.tsv give configured columns (age at the scan, the visit's
symptom scale): the group statistics, clinical correlations, classification and report read
this table instead of participants.tsv (sfc.participants.with_session_values).
"""

from sfc.io import write_tsv
from sfc.logs import script_logger
from sfc.participants import read_participants, with_session_values

log = script_logger(snakemake.log[0], job=snakemake)
p = snakemake.params
table = read_participants(snakemake.input.participants, p.group_column, p.groups, p.columns,
                          session_columns=p.session_columns)
units = [tuple(u) for u in p.units]
table = with_session_values(table, units, p.bids_dir, columns=p.session_columns)
write_tsv(snakemake.output[0], table)
log.info("%d participants; per-session values of %s taken from %d analysed session(s)", len(table),
         ", ".join(p.session_columns), sum(1 for _, t in units if t))
