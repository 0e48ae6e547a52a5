"""sfc.io and sfc.paths: matrices round-trip, malformed matrices name their file, paths follow INTERFACES.md."""

import numpy as np
import pytest

from sfc import io, paths
from sfc.errors import InputError


def test_matrix_round_trip_keeps_values_and_nan(tmp_path):
    m = np.array([[0, 1.5, np.nan], [1.5, 0, 2e-9], [np.nan, 2e-9, 0]])
    io.write_matrix(tmp_path / "m.tsv", m)
    assert (tmp_path / "m.tsv").read_text().splitlines()[0] == "0\t1.5\tn/a"
    np.testing.assert_array_equal(io.read_matrix(tmp_path / "m.tsv"), m)


@pytest.mark.parametrize("text, kwargs, message", [
    ("1\t2\t3\n4\t5\t6\n", {}, "matrix is 2 x 3, not square"),
    ("0\t1\n1\t0\n", {"n_regions": 3}, "has 2 regions but the atlas has 3"),
    ("0\t1\n2\t0\n", {"symmetric": True, "kind": "SC"}, "SC matrix is not symmetric"),
    ("0\tn/a\nn/a\t0\n", {"allow_nan": False, "kind": "SC"}, "SC matrix contains NaN (rows 1, 2, 1-based)"),
    ("0\tabc\n1\t0\n", {}, "cannot be read as numbers"),
])
def test_malformed_matrix_is_refused_naming_the_file(tmp_path, text, kwargs, message):
    path = tmp_path / "sub-01_sc.tsv"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        io.read_matrix(path, **kwargs)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_paths_follow_interfaces():
    assert paths.sc_matrix("out", "01", None, "BNA246", "sift2") == "out/sub-01/dwi/sub-01_atlas-BNA246_desc-sift2_sc.tsv"
    assert paths.fc_matrix("out", "01", "2", "HOA") == \
        "out/sub-01/ses-2/func/sub-01_ses-2_task-rest_atlas-HOA_desc-corr_fc.tsv"
    assert paths.timeseries("out", "01", None, "HOA") == "out/sub-01/func/sub-01_task-rest_atlas-HOA_timeseries.tsv"
    assert paths.sfc_table("out", "01", None, "HOA", "sdi") == "out/sub-01/coupling/sub-01_atlas-HOA_desc-sdi_sfc.tsv"
    assert paths.group_stats("out", "HOA", "spearman") == "out/group/atlas-HOA_desc-spearman_groupstats.tsv"
    assert paths.excluded("out") == "out/group/excluded.tsv"
    assert paths.sc_matrix("out", "{subject}", "{session}", "{atlas}", "{weight}") == \
        "out/sub-{subject}/ses-{session}/dwi/sub-{subject}_ses-{session}_atlas-{atlas}_desc-{weight}_sc.tsv"
