"""participants.tsv: the one reader every stage uses (discovery, statistics, classification, report).

Tables arrive as spreadsheets save them: a UTF-8 byte-order mark, CRLF line ends,
columns in any order, spaces around cells. Each is read the same as a clean table.
Coded columns are normalised through :data:`CODES`, so ``M``, ``male`` and ``Male``
are one level of ``sex`` in the ANCOVA and the classifier's confound model, not three.
Every cell is checked against workflow/schemas/participants.schema.yaml; the first bad
cell stops the run with its line, column and value.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from .errors import InputError

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "participants.schema.yaml"
ID = "participant_id"
MISSING = ("n/a", "")

# The documented map of coded columns (config/README.md, "participants.tsv"): the key is
# the cell lower-cased, the value what every stage sees. A cell not in the map stops the run.
CODES = {
    "sex": {"m": "M", "male": "M", "f": "F", "female": "F", "o": "O", "other": "O"},
}


def _schema() -> dict:
    with open(SCHEMA) as handle:
        return yaml.safe_load(handle)


def _text(path: Path) -> str:
    """The file's text without a byte-order mark and with ``\\n`` line ends."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(path, f"not UTF-8 text (byte {error.start})",
                         "save the table as UTF-8 text (tab-separated)") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_participants(path, group_column: str = "group", groups=None, columns=()) -> pd.DataFrame:
    """Read, normalise and validate participants.tsv.

    Parameters
    ----------
    path : path-like
        The BIDS participants table (tab-separated, ``n/a`` for missing values).
    group_column : str
        The column holding each participant's group.
    groups : list of str, optional
        The allowed group labels (config ``groups``).
    columns : iterable of str
        Further columns the config relies on (covariates, site, clinical scales).

    Returns
    -------
    pandas.DataFrame indexed by ``participant_id`` (kept as a column too): numeric
    columns of the schema, and other columns whose every cell is a number (except the
    group column), as floats; coded columns normalised; other cells stripped text;
    missing values NaN.
    """
    import jsonschema

    path = Path(path)
    fix_format = "write it as a BIDS participants.tsv: tab-separated, one header row, n/a for missing values"
    if not path.is_file():
        raise InputError(path, "participants table not found",
                         "set the config key `participants` or put participants.tsv at the top of bids_dir")
    lines = _text(path).split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or not lines[0].strip():
        raise InputError(path, "the file is empty or starts with a blank line", fix_format)
    header = [c.strip() for c in lines[0].split("\t")]
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(header):
            raise InputError(path, f"malformed table: line {number} has {len(cells)} "
                             f"tab-separated fields, the header has {len(header)}", fix_format)
        rows.append((number, [c.strip() for c in cells]))
    if ID not in header:
        sep_hint = " (it looks comma-separated)" if "," in lines[0] else ""
        raise InputError(path, f"no participant_id column{sep_hint}", fix_format)
    needed = [group_column, *columns]
    missing = [c for c in dict.fromkeys(needed) if c and c not in header]
    if missing:
        raise InputError(path, f"column(s) {', '.join(repr(c) for c in missing)} named in the config are "
                         f"missing (the table has: {', '.join(header)})",
                         "add the column(s) to participants.tsv, or change group_column / covariates / "
                         "site_column / clinical_scales in the config")
    schema = _schema()
    numeric = {c for c, spec in schema["properties"].items() if spec.get("type") == "number"}
    validator = jsonschema.Draft202012Validator(schema)
    records, seen = [], {}
    for line, cells in rows:
        record = {}
        for column, value in zip(header, cells):
            if value in MISSING:
                continue
            if column in CODES:
                code = CODES[column].get(value.lower())
                if code is None:
                    raise InputError(path, f"line {line} ({cells[header.index(ID)]}), column '{column}': "
                                     f"{value!r} is not a known code",
                                     f"write one of {', '.join(sorted(set(CODES[column].values())))} "
                                     f"(also read: {', '.join(sorted(CODES[column]))}), or n/a")
                value = code
            elif column in numeric:
                try:
                    value = float(value)
                except ValueError:
                    pass  # the schema reports it with the column name
            record[column] = value
        errors = sorted(validator.iter_errors(record), key=lambda e: list(e.path))
        if errors:
            err = errors[0]
            column = err.path[0] if err.path else (err.validator_value[0] if err.validator == "required" else "?")
            value = record.get(column, "n/a") if err.path else "n/a"
            hint = schema["properties"].get(column, {}).get("description",
                                                            "see workflow/schemas/participants.schema.yaml")
            raise InputError(path, f"line {line} ({record.get(ID, '?')}), column '{column}': "
                             f"{value!r} is not valid ({err.message})", f"correct the value: {hint}")
        pid = record[ID]
        if pid in seen:
            raise InputError(path, f"participant_id {pid} appears more than once (lines {seen[pid]}, {line})",
                             "keep one row per participant")
        seen[pid] = line
        if groups is not None and record.get(group_column) not in groups:
            raise InputError(path, f"line {line} ({pid}), column '{group_column}': unknown group "
                             f"{record.get(group_column, 'n/a')!r} (configured groups: {', '.join(groups)})",
                             "correct the label, or add it to the config key `groups`")
        records.append(record)
    out = pd.DataFrame.from_records(records, columns=header)
    # Columns the schema does not type (a study's own scales) are numbers when every cell is,
    # as every stage used to infer; the group column stays labels.
    for column in header:
        if column in schema["properties"] or column == group_column or not out[column].notna().any():
            continue
        as_number = pd.to_numeric(out[column], errors="coerce")
        if as_number.notna().sum() == out[column].notna().sum():
            out[column] = as_number.astype(float)
    return out.set_index(ID, drop=False)
