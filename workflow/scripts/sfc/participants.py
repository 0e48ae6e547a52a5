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


def read_participants(path, group_column: str = "group", groups=None, columns=(),
                      session_columns=()) -> pd.DataFrame:
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
    session_columns : iterable of str
        Columns the dataset's ``sub-<s>_sessions.tsv`` tables hold: a configured column
        among them may be absent here (it is then added, all missing, for
        :func:`with_session_values` to fill per analysed session).

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
    header, rows = _table(path, ID, fix_format)
    needed = [group_column, *[c for c in columns if c not in set(session_columns)]]
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
                value = _code(path, line, cells[header.index(ID)], column, value)
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
    extra = [c for c in dict.fromkeys(columns) if c not in header]  # to come from sessions.tsv
    out = pd.DataFrame.from_records(records, columns=header + extra)
    # Columns the schema does not type (a study's own scales) are numbers when every cell is,
    # as every stage used to infer; the group column stays labels.
    _numbers(out, skip={*schema["properties"], group_column})
    return out.set_index(ID, drop=False)


def _numbers(table: pd.DataFrame, skip=()) -> None:
    """Columns (not in ``skip``) whose every given cell is a number become floats, in place."""
    for column in table.columns:
        if column in skip or not table[column].notna().any():
            continue
        as_number = pd.to_numeric(table[column], errors="coerce")
        if as_number.notna().sum() == table[column].notna().sum():
            table[column] = as_number.astype(float)


def _code(path, line: int, row_id: str, column: str, value: str) -> str:
    """A coded cell through :data:`CODES`, or the error naming line, column and value."""
    code = CODES[column].get(value.lower())
    if code is None:
        raise InputError(path, f"line {line} ({row_id}), column '{column}': {value!r} is not a known code",
                         f"write one of {', '.join(sorted(set(CODES[column].values())))} "
                         f"(also read: {', '.join(sorted(CODES[column]))}), or n/a")
    return code


def _table(path: Path, id_column: str, fix_format: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line number, cells)]) of a BIDS tabular file, cells stripped; checks its shape."""
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
    if id_column not in header:
        sep_hint = " (it looks comma-separated)" if "," in lines[0] else ""
        raise InputError(path, f"no {id_column} column{sep_hint}", fix_format)
    return header, rows


# --- sessions.tsv: values measured at each session ---------------------------------------------

SESSION_ID = "session_id"


def sessions_path(bids_dir, subject: str) -> str:
    """``<bids_dir>/sub-<s>/sub-<s>_sessions.tsv`` (BIDS)."""
    return f"{bids_dir}/sub-{subject}/sub-{subject}_sessions.tsv"


def sessions_header(path) -> list[str]:
    """The columns of a sessions.tsv (its first line), or [] where there is none."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            first = handle.readline()
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [c.strip() for c in first.rstrip("\r\n").split("\t") if c.strip()]


def read_sessions(path) -> dict[str, dict]:
    """One subject's sessions.tsv as ``{session label: {column: value}}``.

    Read like participants.tsv (BOM, CRLF, spaces, any column order; ``n/a`` missing and
    left out; coded columns through :data:`CODES`, numbers as floats). ``session_id`` may be
    written ``ses-1`` or ``1``.
    """
    path = Path(path)
    fix_format = "write it as a BIDS sessions.tsv: tab-separated, a session_id column, n/a for missing values"
    import jsonschema

    header, rows = _table(path, SESSION_ID, fix_format)
    schema = _schema()
    validator = jsonschema.Draft202012Validator(schema)
    out = {}
    for line, cells in rows:
        label = cells[header.index(SESSION_ID)].removeprefix("ses-")
        if label in out:
            raise InputError(path, f"session_id ses-{label} appears more than once (line {line})",
                             "keep one row per session")
        values = {}
        for column, value in zip(header, cells):
            if column == SESSION_ID or value in MISSING:
                continue
            if column in CODES:
                value = _code(path, line, f"ses-{label}", column, value)
            else:
                try:
                    value = float(value)
                except ValueError:
                    pass
            values[column] = value
        # the participants schema's checks (age 0-120, ...) hold for values measured at a session
        for err in validator.iter_errors({ID: "sub-0", **values}):
            column = err.path[0] if err.path else "?"
            raise InputError(path, f"line {line} (ses-{label}), column '{column}': "
                             f"{values.get(column, 'n/a')!r} is not valid ({err.message})",
                             f"correct the value: {schema['properties'].get(column, {}).get('description', '')}")
        out[label] = values
    return out


def with_session_values(participants: pd.DataFrame, units, bids_dir, columns=None) -> pd.DataFrame:
    """participants.tsv with each participant's values at the analysed session.

    ``units``: the analysed (subject, session) pairs, one per participant. For each, the
    row of its ``sub-<s>_sessions.tsv`` (where the file exists) replaces the participant's
    value of every column it gives (age at that scan, the symptom scale of that visit); a
    cell ``n/a`` there keeps the participants.tsv value. ``columns``: only these columns are
    taken from sessions.tsv (default: all of them). One row per participant, as before.
    """
    table, touched = participants.copy(), set()
    for subject, session in units:
        if session is None:
            continue
        path = sessions_path(bids_dir, subject)
        if not Path(path).is_file():
            continue
        values = read_sessions(path).get(session, {})
        for column, value in values.items():
            if columns is not None and column not in columns:
                continue
            if column not in table.columns:
                table[column] = pd.Series(pd.NA, index=table.index, dtype=object)
            if table[column].dtype.kind == "f" and not isinstance(value, float):
                table[column] = table[column].astype(object)
            table.loc[f"sub-{subject}", column] = value
            touched.add(column)
    _numbers(table, skip=set(table.columns) - touched)
    return table
