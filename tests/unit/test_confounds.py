"""sfc.confounds: FD (Power 2012), fMRIPrep-style expansions, strategies, scrubbing."""

import numpy as np
import pandas as pd
import pytest

from sfc import confounds as conf
from sfc.errors import InputError


def motion_table(values):
    return pd.DataFrame(np.asarray(values, float), columns=conf.MOTION_COLUMNS)


def test_fd_matches_power_formula_written_out():
    # volume 1: translations move by (0.1, -0.2, 0.3) mm, rotations by (0.001, 0, -0.002) rad
    # FD_1 = 0.1 + 0.2 + 0.3 + 50 * (0.001 + 0 + 0.002) = 0.75
    # volume 2: back to the start: same absolute differences, FD_2 = 0.75
    m = motion_table([[0, 0, 0, 0, 0, 0],
                      [0.1, -0.2, 0.3, 0.001, 0.0, -0.002],
                      [0, 0, 0, 0, 0, 0]])
    np.testing.assert_allclose(conf.framewise_displacement(m), [0.0, 0.75, 0.75])


def test_fd_rotation_is_arc_length_on_50mm_sphere():
    m = motion_table([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0.01, 0, 0]])
    assert conf.framewise_displacement(m)[1] == pytest.approx(0.5)
    assert conf.framewise_displacement(m, radius=80)[1] == pytest.approx(0.8)


def test_fd_reads_columns_by_name_not_position():
    m = motion_table([[0, 0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0, 0]])
    shuffled = m[["rot_z", "trans_x", "rot_x", "trans_z", "rot_y", "trans_y"]]
    np.testing.assert_allclose(conf.framewise_displacement(shuffled), [0, 1.0])


def test_expand_regressors_uses_fmriprep_names_and_backward_difference():
    out = conf.expand_regressors(pd.DataFrame({"csf": [1.0, 3.0, 2.0]}))
    assert list(out.columns) == ["csf", "csf_derivative1", "csf_power2", "csf_derivative1_power2"]
    np.testing.assert_allclose(out["csf_derivative1"].to_numpy()[1:], [2.0, -1.0])
    assert np.isnan(out["csf_derivative1"].iloc[0])  # fMRIPrep writes n/a there
    np.testing.assert_allclose(out["csf_power2"], [1, 9, 4])
    np.testing.assert_allclose(out["csf_derivative1_power2"].to_numpy()[1:], [4, 1])


@pytest.mark.parametrize("name, n", [("none", 0), ("6P", 6), ("24P", 24), ("24P+WM+CSF", 26), ("36P", 36)])
def test_strategy_regressor_counts(name, n):
    rng = np.random.default_rng(0)
    table = conf.confounds_table(motion_table(rng.normal(size=(20, 6))), white_matter=rng.normal(size=20),
                                 csf=rng.normal(size=20), global_signal=rng.normal(size=20))
    sel = conf.select_confounds(table, name)
    assert (0 if sel is None else sel.shape[1]) == n
    if sel is not None:
        assert not sel.isna().to_numpy().any()
        np.testing.assert_allclose(sel.mean().to_numpy(), 0, atol=1e-12)


def test_select_confounds_fills_first_row_from_second_like_nilearn():
    rng = np.random.default_rng(1)
    table = conf.confounds_table(motion_table(rng.normal(size=(10, 6))))
    sel = conf.select_confounds(table, "24P", demean=False)
    assert sel["trans_x_derivative1"].iloc[0] == table["trans_x_derivative1"].iloc[1]


def test_strategy_names_are_case_insensitive_and_unknown_names_fail():
    assert conf.strategy("36p").name == "36P"
    with pytest.raises(ValueError, match="unknown confound strategy"):
        conf.strategy("72P")


def test_missing_confound_column_is_input_error_naming_file_and_columns(tmp_path):
    rng = np.random.default_rng(2)
    table = conf.confounds_table(motion_table(rng.normal(size=(10, 6))))  # no WM/CSF
    path = tmp_path / "sub-01_desc-confounds_timeseries.tsv"
    with pytest.raises(InputError) as err:
        conf.select_confounds(table, "24P+WM+CSF", path=path)
    msg = str(err.value)
    assert str(path) in msg and "csf" in msg and "white_matter" in msg and "Fix:" in msg


def test_acompcor_on_builtin_confounds_is_refused_with_a_way_out():
    rng = np.random.default_rng(3)
    table = conf.confounds_table(motion_table(rng.normal(size=(10, 6))))
    with pytest.raises(InputError, match="fmriprep"):
        conf.select_confounds(table, "aCompCor")


def test_confounds_table_fd_column_is_nan_first_then_power_fd():
    m = motion_table(np.cumsum(np.random.default_rng(4).normal(0, 0.05, (15, 6)), axis=0))
    table = conf.confounds_table(m)
    fd = conf.framewise_displacement(m)
    assert np.isnan(table["framewise_displacement"].iloc[0])
    np.testing.assert_allclose(table["framewise_displacement"].to_numpy()[1:], fd[1:])


def test_scrub_mask_censors_above_threshold_only():
    fd = np.array([np.nan, 0.1, 0.6, 0.5, 0.2, 0.51])
    np.testing.assert_array_equal(conf.scrub_mask(fd, 0.5), [1, 1, 0, 1, 1, 0])
    assert conf.scrub_mask(fd, None).all()


def test_scrub_mask_drops_short_kept_segments():
    # kept runs: [0..2] (3 volumes), [4] (1), [6..12] (7); min_segment 5 keeps only the last
    fd = np.zeros(13)
    fd[[3, 5]] = 1.0
    keep = conf.scrub_mask(fd, 0.5, min_segment=5)
    np.testing.assert_array_equal(np.nonzero(keep)[0], np.arange(6, 13))
