"""sfc.participants: participants.tsv read one way everywhere. A table saved by a spreadsheet
(BOM, CRLF, reordered columns, spaces, mixed sex codes) reads the same as a clean one; a bad
cell is one clear InputError naming file, line, column and fix."""

import pandas as pd
import pytest

from sfc.errors import InputError
from sfc.participants import read_participants

COLUMNS = ["age", "sex", "site", "education_years", "hamd24_pre", "bsi"]
GROUPS = ["TRD", "nTRD", "HC"]

# --- participants.tsv errors: one message naming file, line/column and fix ---------------

def write_table(tmp_path, text):
    path = tmp_path / "participants.tsv"
    path.write_text(text)
    return path


HEAD = "participant_id\tgroup\tage\tsex\tsite\teducation_years\thamd24_pre\tbsi\n"


def test_unknown_group_names_file_line_value_and_fix(tmp_path):
    path = write_table(tmp_path, HEAD + "sub-01\tTRD\t30\tF\ts1\t12\t31\t4\nsub-02\tMDD\t40\tM\ts1\t12\t30\t2\n")
    with pytest.raises(InputError) as err:
        read_participants(path, "group", GROUPS, COLUMNS)
    message = str(err.value)
    assert message.startswith(str(path))
    assert "line 3 (sub-02), column 'group': unknown group 'MDD'" in message
    assert "Fix: correct the label, or add it to the config key `groups`" in message


def test_missing_configured_column_is_named(tmp_path):
    path = write_table(tmp_path, "participant_id\tgroup\tage\nsub-01\tTRD\t30\n")
    with pytest.raises(InputError, match=r"column\(s\) 'sex', 'site', 'education_years', 'hamd24_pre', 'bsi'"):
        read_participants(path, "group", GROUPS, COLUMNS)


def test_missing_group_column_is_named(tmp_path):
    path = write_table(tmp_path, "participant_id\tdiagnosis\nsub-01\tTRD\n")
    with pytest.raises(InputError, match="column\\(s\\) 'group' named in the config are missing"):
        read_participants(path, "group", GROUPS)


def test_non_numeric_age_names_line_and_column(tmp_path):
    path = write_table(tmp_path, HEAD + "sub-01\tTRD\tthirty\tF\ts1\t12\t31\t4\n")
    with pytest.raises(InputError, match=r"line 2 \(sub-01\), column 'age': 'thirty' is not valid"):
        read_participants(path, "group", GROUPS, COLUMNS)


def test_out_of_range_scale_is_refused(tmp_path):
    path = write_table(tmp_path, HEAD + "sub-01\tTRD\t30\tF\ts1\t12\t31\t99\n")
    with pytest.raises(InputError, match=r"column 'bsi': 99.0 is not valid"):
        read_participants(path, "group", GROUPS, COLUMNS)


def test_bad_participant_id_is_refused(tmp_path):
    path = write_table(tmp_path, HEAD + "01\tTRD\t30\tF\ts1\t12\t31\t4\n")
    with pytest.raises(InputError, match=r"column 'participant_id': '01' is not valid"):
        read_participants(path, "group", GROUPS, COLUMNS)


def test_duplicate_participant_is_refused(tmp_path):
    row = "sub-01\tTRD\t30\tF\ts1\t12\t31\t4\n"
    path = write_table(tmp_path, HEAD + row + row)
    with pytest.raises(InputError, match=r"sub-01 appears more than once \(lines 2, 3\)"):
        read_participants(path, "group", GROUPS, COLUMNS)


def test_ragged_table_is_malformed(tmp_path):
    path = write_table(tmp_path, "participant_id\tgroup\nsub-01\tTRD\textra\tcells\n")
    with pytest.raises(InputError, match="malformed table: line 2 has 4 tab-separated fields, the header has 2"):
        read_participants(path, "group", GROUPS)


def test_comma_separated_table_gets_a_hint(tmp_path):
    path = write_table(tmp_path, "participant_id,group\nsub-01,TRD\n")
    with pytest.raises(InputError, match="no participant_id column \\(it looks comma-separated\\)"):
        read_participants(path, "group", GROUPS)


def test_missing_values_are_na_not_errors(tmp_path):
    path = write_table(tmp_path, HEAD + "sub-01\tHC\t30\tF\ts1\t12\tn/a\tn/a\n")
    table = read_participants(path, "group", GROUPS, COLUMNS)
    assert table.loc["sub-01", "age"] == 30.0 and table["bsi"].isna().all()


def test_missing_participants_file_says_where(tmp_path):
    with pytest.raises(InputError, match="participants table not found"):
        read_participants(tmp_path / "none.tsv")




# --- tables as spreadsheets save them ------------------------------------------------------

CLEAN = [
    ["sub-01", "TRD", "30", "M", "s1", "12", "31", "4"],
    ["sub-02", "nTRD", "41", "F", "s2", "16", "22", "n/a"],
    ["sub-03", "HC", "35", "M", "s1", "18", "n/a", "0"],
]


def test_spreadsheet_saved_table_reads_as_the_clean_one(tmp_path):
    header = HEAD.rstrip("\n").split("\t")
    clean = write_table(tmp_path, "\n".join("\t".join(r) for r in [header, *CLEAN]) + "\n")
    # BOM, CRLF, columns in another order, spaces around cells, sex in three spellings
    order = [3, 0, 7, 1, 6, 2, 5, 4]
    messy_rows = [list(r) for r in CLEAN]
    messy_rows[0][3], messy_rows[1][3], messy_rows[2][3] = "male", " Female", "Male "
    text = "\r\n".join("\t".join(f" {row[i]} " if k % 2 else row[i] for k, i in enumerate(order))
                       for row in [header, *messy_rows]) + "\r\n\r\n"
    messy = tmp_path / "messy.tsv"
    messy.write_bytes(b"\xef\xbb\xbf" + text.encode())
    a = read_participants(clean, "group", GROUPS, COLUMNS)
    b = read_participants(messy, "group", GROUPS, COLUMNS)
    pd.testing.assert_frame_equal(a, b[a.columns])
    assert list(b["sex"]) == ["M", "F", "M"]
    assert b.loc["sub-02", "age"] == 41.0 and pd.isna(b.loc["sub-02", "bsi"])


def test_unknown_code_names_line_column_and_value(tmp_path):
    path = write_table(tmp_path, HEAD + "sub-01\tTRD\t30\tF\ts1\t12\t31\t4\nsub-02\tTRD\t30\tX\ts1\t12\t31\t4\n")
    with pytest.raises(InputError) as err:
        read_participants(path, "group", GROUPS, COLUMNS)
    assert "line 3 (sub-02), column 'sex': 'X' is not a known code" in str(err.value)
    assert "write one of F, M, O" in str(err.value)


def test_study_columns_outside_the_schema_are_numbers_when_every_cell_is(tmp_path):
    path = write_table(tmp_path, "participant_id\tgroup\tmadrs\tscanner\nsub-01\tTRD\t30\tA\n"
                                 "sub-02\tHC\tn/a\tB\n")
    table = read_participants(path, "group", GROUPS)
    assert table["madrs"].dtype == float and table["scanner"].tolist() == ["A", "B"]


def test_text_that_is_not_utf8_is_one_clear_error(tmp_path):
    path = tmp_path / "participants.tsv"
    path.write_bytes(HEAD.encode() + "sub-01\tTRD\t30\tF\tMünchen\t12\t31\t4\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8 text"):
        read_participants(path, "group", GROUPS, COLUMNS)


# --- sessions.tsv: values measured at a session ---------------------------------------------------

def test_sessions_table_reads_like_a_spreadsheet_and_normalises_codes(tmp_path):
    from sfc.participants import read_sessions

    path = tmp_path / "sub-01_sessions.tsv"
    path.write_bytes("\ufeffbsi \t session_id\tsex\r\n 12 \tses-1\tmale\r\nn/a\t2\tF\r\n".encode())
    assert read_sessions(path) == {"1": {"bsi": 12.0, "sex": "M"}, "2": {"sex": "F"}}


def test_bad_sessions_cell_names_file_line_and_column(tmp_path):
    from sfc.participants import read_sessions

    path = tmp_path / "sub-01_sessions.tsv"
    path.write_text("session_id\tage\nses-1\t34\nses-2\t340\n")
    with pytest.raises(InputError, match=r"sub-01_sessions.tsv: line 3 \(ses-2\), column 'age': 340.0 is not valid"):
        read_sessions(path)
    path.write_text("session_id\tsex\nses-1\tmaybe\n")
    with pytest.raises(InputError, match="line 2 \\(ses-1\\), column 'sex': 'maybe' is not a known code"):
        read_sessions(path)


def test_analysed_sessions_values_replace_the_participants_ones(tmp_path):
    from sfc.participants import read_participants, with_session_values

    (tmp_path / "participants.tsv").write_text("participant_id\tgroup\tage\nsub-01\tTRD\t30\nsub-02\tHC\t40\n")
    for subject, rows in (("01", "ses-1\t31\t20\nses-2\t33\t8\n"), ("02", "ses-1\tn/a\t2\n")):
        (tmp_path / f"sub-{subject}").mkdir()
        (tmp_path / f"sub-{subject}" / f"sub-{subject}_sessions.tsv").write_text("session_id\tage\tbsi\n" + rows)
    # bsi is in no participants column: the config may still name it
    table = read_participants(tmp_path / "participants.tsv", columns=["age", "bsi"], session_columns={"bsi"})
    assert table["bsi"].isna().all()
    units = [("01", "2"), ("02", "1")]
    out = with_session_values(table, units, tmp_path, columns=["age", "bsi"])
    assert out.loc["sub-01", "age"] == 33.0 and out.loc["sub-01", "bsi"] == 8.0   # the session's values
    assert out.loc["sub-02", "age"] == 40.0 and out.loc["sub-02", "bsi"] == 2.0   # n/a keeps participants'
    assert out["bsi"].dtype.kind == "f" and list(out.index) == ["sub-01", "sub-02"]
    # a column the config does not name is not taken
    assert "bsi" not in with_session_values(table.drop(columns="bsi"), units, tmp_path, columns=["age"]).columns


def test_a_configured_column_in_neither_table_still_stops(tmp_path):
    from sfc.participants import read_participants

    (tmp_path / "participants.tsv").write_text("participant_id\tgroup\nsub-01\tTRD\n")
    with pytest.raises(InputError, match="'bsi' named in the config are missing"):
        read_participants(tmp_path / "participants.tsv", columns=["bsi"], session_columns={"age"})
