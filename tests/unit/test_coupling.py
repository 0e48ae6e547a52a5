"""sfc.coupling: each measure against a plain, independent implementation.

The references here are written the slow, obvious way (one region at a time,
scipy / numpy calls, Floyd-Warshall by hand, scipy.linalg.expm) so that the
vectorised code in sfc.coupling is checked against something it does not share.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import scipy.stats

from sfc import coupling, io
from sfc.errors import InputError

SHARED = Path(os.environ.get("SFC_SHARED_DATA", "/work/shared/data"))
LOCAL_SCFC = SHARED / "connectomes" / "local_scfc" / "hcp_group_mtrx-400.mat"
ENIGMA = SHARED / "connectomes" / "enigma_hcp"


# --- independent references -------------------------------------------------------------

def spearman_loop(sc, fc, min_neighbours=3):
    """Baum et al. 2020, one region at a time with scipy.stats.spearmanr."""
    n = len(sc)
    out = np.full(n, np.nan)
    for i in range(n):
        keep = (sc[i] > 0) & np.isfinite(fc[i])
        keep[i] = False
        if keep.sum() >= min_neighbours:
            with np.errstate(invalid="ignore"):
                out[i] = scipy.stats.spearmanr(sc[i, keep], fc[i, keep]).statistic
    return out


def floyd_warshall(length):
    n = len(length)
    d = np.where(length > 0, length, np.inf)
    np.fill_diagonal(d, 0.0)
    for k in range(n):
        d = np.minimum(d, d[:, [k]] + d[[k], :])
    return d


def communication_loop(sc, fc, dist):
    """Vázquez-Rodríguez et al. 2019 by hand: 1/w lengths, expm of D^-1/2 W D^-1/2, lstsq per region."""
    n = len(sc)
    with np.errstate(divide="ignore"):
        spl = floyd_warshall(np.where(sc > 0, 1.0 / sc, 0.0))
    s = sc.sum(axis=1)
    dinv = np.diag(np.where(s > 0, 1.0 / np.sqrt(np.where(s > 0, s, 1.0)), 0.0))
    com = scipy.linalg.expm(dinv @ sc @ dinv)
    out = np.full(n, np.nan)
    for i in range(n):
        keep = np.isfinite(fc[i]) & np.isfinite(spl[i])
        keep[i] = False
        if keep.sum() < 10:
            continue
        x = np.column_stack([np.ones(keep.sum()), dist[i, keep], spl[i, keep], com[i, keep]])
        y = fc[i, keep]
        beta = np.linalg.lstsq(x, y, rcond=None)[0]
        r2 = 1 - ((y - x @ beta) ** 2).sum() / ((y - y.mean()) ** 2).sum()
        m = keep.sum()
        out[i] = 1 - (1 - r2) * (m - 1) / (m - 3 - 1)
    return out


def random_pair(rng, n=40, density=0.4, integer=False):
    a = rng.random((n, n)) < density
    a = np.triu(a, 1)
    a = a | a.T
    w = rng.integers(1, 6, (n, n)).astype(float) if integer else rng.gamma(1.0, 10.0, (n, n))
    w = np.triu(w, 1)
    sc = np.where(a, w + w.T, 0.0)
    f = rng.standard_normal((n, n))
    fc = np.tanh((f + f.T) / 3.0)
    np.fill_diagonal(fc, 1.0)
    return sc, fc


# --- spearman -------------------------------------------------------------------------------

def test_spearman_matches_scipy_loop_on_random_matrices():
    rng = np.random.default_rng(0)
    sc, fc = random_pair(rng)
    np.testing.assert_allclose(coupling.spearman(sc, fc), spearman_loop(sc, fc), atol=1e-12)


def test_spearman_matches_scipy_on_ties_in_sc_and_fc():
    rng = np.random.default_rng(1)
    sc, fc = random_pair(rng, integer=True)           # SC weights 1..5: many ties
    fc = np.round(fc, 1)                               # FC ties too, including 0.0 and -0.0
    fc[fc == 0] = -0.0
    fc[0, 1:10] = 0.0
    expected = spearman_loop(sc, fc)
    assert np.isfinite(expected).sum() > 30
    np.testing.assert_allclose(coupling.spearman(sc, fc), expected, atol=1e-12)


def test_spearman_matches_scipy_with_ties_in_only_one_of_sc_and_fc():
    rng = np.random.default_rng(13)
    sc, fc = random_pair(rng, n=40)
    fc_tied = np.round(fc, 1)                          # continuous SC, tied FC (some rows only)
    fc_tied[:20] = fc[:20]
    fc_tied[:, :20] = fc[:, :20]
    np.testing.assert_allclose(coupling.spearman(sc, fc_tied), spearman_loop(sc, fc_tied), atol=1e-12)
    sc_int, _ = random_pair(rng, n=40, integer=True)   # tied SC, continuous FC
    np.testing.assert_allclose(coupling.spearman(sc_int, fc), spearman_loop(sc_int, fc), atol=1e-12)


def test_spearman_handles_zeros_disconnected_regions_and_nan_rows():
    rng = np.random.default_rng(2)
    sc, fc = random_pair(rng, n=30)
    sc[4, :] = sc[:, 4] = 0.0                          # disconnected region
    fc[7, :] = fc[:, 7] = np.nan                       # region without signal
    fc[9, 3] = fc[3, 9] = np.nan                       # one missing FC edge
    sc[11, :] = sc[:, 11] = 0.0
    sc[11, 12] = sc[12, 11] = 1.0                      # a single neighbour: below the minimum
    got = coupling.spearman(sc, fc, min_neighbours=3)
    want = spearman_loop(sc, fc, min_neighbours=3)
    assert np.isnan(got[[4, 7, 11]]).all()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_spearman_constant_fc_row_gives_nan_like_scipy():
    rng = np.random.default_rng(3)
    sc, fc = random_pair(rng, n=20, density=0.8)
    fc[5, :] = fc[:, 5] = 0.3
    got = coupling.spearman(sc, fc)
    assert np.isnan(got[5])
    assert np.isfinite(np.delete(got, 5)).all()


def test_spearman_batch_equals_one_subject_at_a_time():
    rng = np.random.default_rng(4)
    pairs = [random_pair(rng, n=25, integer=bool(k % 2)) for k in range(7)]
    sc = np.stack([p[0] for p in pairs])
    fc = np.stack([p[1] for p in pairs])
    batch = coupling.spearman(sc, fc)
    assert batch.shape == (7, 25)
    for k in range(7):
        np.testing.assert_allclose(batch[k], spearman_loop(sc[k], fc[k]), atol=1e-12)


def test_spearman_is_perfect_when_fc_is_a_monotone_function_of_sc():
    rng = np.random.default_rng(5)
    sc, _ = random_pair(rng, n=30, density=0.6)
    fc = np.log1p(sc) - 3.0                            # monotone in SC on every row
    got = coupling.spearman(sc, fc)
    np.testing.assert_allclose(got[np.isfinite(got)], 1.0, atol=1e-12)
    np.testing.assert_allclose(coupling.spearman(sc, -fc)[np.isfinite(got)], -1.0, atol=1e-12)


def test_spearman_rejects_nan_in_sc():
    sc = np.ones((5, 5))
    sc[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        coupling.spearman(sc, np.zeros((5, 5)))


@pytest.mark.skipif(not ENIGMA.is_dir(), reason=f"ENIGMA HCP connectomes not found under {ENIGMA}")
def test_spearman_on_enigma_hcp_group_connectome_matches_reported_values():
    sc = np.loadtxt(ENIGMA / "strucMatrix_with_sctx.csv", delimiter=",")
    fc = np.loadtxt(ENIGMA / "funcMatrix_with_sctx.csv", delimiter=",")
    got = coupling.spearman(sc, fc)
    # Reported for this pair (shared/data/SOURCES.md): mean 0.445, median 0.415.
    assert np.nanmean(got) == pytest.approx(0.445, abs=5e-4)
    assert np.nanmedian(got) == pytest.approx(0.415, abs=5e-4)
    np.testing.assert_allclose(got, spearman_loop(sc, fc), atol=1e-12)


# --- communication model --------------------------------------------------------------------

def test_communication_matches_loop_with_floyd_warshall_and_expm():
    rng = np.random.default_rng(6)
    sc, fc = random_pair(rng, n=35, density=0.3)
    xyz = rng.normal(0, 30, (35, 3))
    dist = coupling.centroid_distance(xyz)
    np.testing.assert_allclose(coupling.communication(sc, fc, dist), communication_loop(sc, fc, dist),
                               atol=1e-8)


def test_communication_leaves_out_unreachable_regions_and_nan_fc():
    rng = np.random.default_rng(7)
    sc, fc = random_pair(rng, n=35, density=0.4)
    sc[0, :] = sc[:, 0] = 0.0                          # isolated: infinite path length to it
    fc[2, 5] = fc[5, 2] = np.nan
    dist = coupling.centroid_distance(rng.normal(0, 30, (35, 3)))
    got = coupling.communication(sc, fc, dist)
    want = communication_loop(sc, fc, dist)
    assert np.isnan(got[0])                            # no finite path from region 0
    np.testing.assert_allclose(got[1:], want[1:], atol=1e-8)


def test_communicability_equals_scipy_expm_of_degree_normalised_sc():
    rng = np.random.default_rng(8)
    sc, _ = random_pair(rng, n=20)
    d = np.diag(1.0 / np.sqrt(sc.sum(axis=1)))
    np.testing.assert_allclose(coupling.communicability(sc), scipy.linalg.expm(d @ sc @ d), atol=1e-10)


def test_region_distance_uses_bna246_centroids():
    labels = io.read_labels(Path(__file__).parents[2] / "resources/atlases/atlas-BNA246_dseg.tsv")
    dist = coupling.region_distance(labels)
    a = labels.loc[0, ["x_mm", "y_mm", "z_mm"]].to_numpy(float)
    b = labels.loc[1, ["x_mm", "y_mm", "z_mm"]].to_numpy(float)
    assert dist.shape == (246, 246)
    assert dist[0, 1] == pytest.approx(np.linalg.norm(a - b))


# --- SDI ---------------------------------------------------------------------------------------

def test_sdi_matches_projection_by_hand():
    rng = np.random.default_rng(9)
    sc, _ = random_pair(rng, n=30, density=0.5)
    ts = rng.standard_normal((120, 30))
    lap = np.eye(30) - np.diag(sc.sum(1) ** -0.5) @ sc @ np.diag(sc.sum(1) ** -0.5)
    vals, u = np.linalg.eigh(lap)
    z = (ts - ts.mean(0)) / ts.std(0)
    power = ((z @ u) ** 2).mean(0)
    cut = int(np.argmax(np.cumsum(power) >= power.sum() / 2)) + 1
    low = z @ u[:, :cut] @ u[:, :cut].T
    high = z @ u[:, cut:] @ u[:, cut:].T
    want = np.linalg.norm(high, axis=0) / np.linalg.norm(low, axis=0)
    got, got_cut = coupling.group_sdi([ts], sc)
    assert got_cut == cut
    np.testing.assert_allclose(got[0], want, rtol=1e-10)
    np.testing.assert_allclose(coupling.group_sdi([ts], sc, log2=True)[0][0], np.log2(want), rtol=1e-10)


def test_sdi_is_low_for_signals_made_of_low_frequency_harmonics():
    rng = np.random.default_rng(10)
    sc, _ = random_pair(rng, n=30, density=0.5)
    _, u = coupling.harmonics(sc)
    smooth = [rng.standard_normal((200, 5)) @ u[:, :5].T for _ in range(3)]
    rough = [rng.standard_normal((200, 5)) @ u[:, -5:].T for _ in range(3)]
    values, _ = coupling.group_sdi(smooth + rough, sc)
    assert np.nanmedian(values[:3]) < 1.0 < np.nanmedian(values[3:])


def test_sdi_gives_nan_for_a_region_without_signal():
    rng = np.random.default_rng(11)
    sc, _ = random_pair(rng, n=20, density=0.5)
    ts = rng.standard_normal((100, 20))
    ts[:, 3] = 0.0
    values, _ = coupling.group_sdi([ts, rng.standard_normal((100, 20))], sc)
    assert np.isnan(values[0, 3]) and np.isfinite(values[1]).all()


# --- real group connectome (internal data, not shipped) ------------------------------------

@pytest.mark.skipif(not LOCAL_SCFC.is_file(),
                    reason=f"{LOCAL_SCFC} not found (internal HCP group connectome; set SFC_SHARED_DATA)")
def test_coupling_on_hcp_group_connectome_is_positive_and_communication_beats_distance():
    import scipy.io

    mat = scipy.io.loadmat(LOCAL_SCFC)
    sc, fc, dist = mat["sc"], mat["fc"], mat["d"]
    rho = coupling.spearman(sc, fc)
    assert np.nanmean(rho) > 0.2                       # measured 0.353
    np.testing.assert_allclose(rho, spearman_loop(sc, fc), atol=1e-12)
    full = coupling.communication(sc, fc, dist)
    distance_only = coupling.regional_r2(fc, [dist])
    assert np.nanmean(full) > np.nanmean(distance_only) + 0.05   # measured 0.220 vs 0.121
    assert np.mean(full > distance_only) > 0.9


# --- reading: malformed matrices are rejected with the file's name --------------------------

def _write(path, text):
    path.write_text(text)
    return path


def test_read_sc_rejects_a_non_square_matrix_naming_the_file(tmp_path):
    bad = _write(tmp_path / "sub-01_atlas-X_desc-count_sc.tsv", "0\t1\t2\n1\t0\t3\n")
    with pytest.raises(InputError, match="sub-01_atlas-X_desc-count_sc.tsv.*not square"):
        coupling.read_sc([bad])


def test_read_sc_rejects_the_wrong_size_for_the_atlas(tmp_path):
    good = tmp_path / "a_sc.tsv"
    io.write_matrix(good, np.zeros((4, 4)))
    with pytest.raises(InputError, match="a_sc.tsv.*4 regions but the atlas has 5"):
        coupling.read_sc([good], n_regions=5)


def test_read_sc_rejects_asymmetric_sc_and_nan_in_sc(tmp_path):
    ok = tmp_path / "ok_sc.tsv"
    io.write_matrix(ok, np.array([[0, 1.0], [1.0, 0]]))
    asym = tmp_path / "asym_sc.tsv"
    io.write_matrix(asym, np.array([[0, 1.0], [2.0, 0]]))
    with pytest.raises(InputError, match="asym_sc.tsv.*not symmetric"):
        coupling.read_sc([ok, asym])
    nan = tmp_path / "nan_sc.tsv"
    io.write_matrix(nan, np.array([[0, np.nan], [np.nan, 0]]))
    with pytest.raises(InputError, match="nan_sc.tsv.*NaN"):
        coupling.read_sc([ok, nan])


def test_read_fc_accepts_nan_and_reads_what_io_writes(tmp_path):
    rng = np.random.default_rng(12)
    mats = [rng.standard_normal((6, 6)) for _ in range(3)]
    mats[1][2, :] = np.nan
    paths = []
    for k, m in enumerate(mats):
        paths.append(tmp_path / f"{k}_fc.tsv")
        io.write_matrix(paths[-1], m)
    got = coupling.read_fc(paths, threads=2)
    np.testing.assert_allclose(got, np.stack(mats), rtol=1e-9)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(np.stack(mats)))


def test_region_distance_from_an_atlas_image_uses_label_centroids(tmp_path):
    import nibabel as nib

    data = np.zeros((10, 10, 10), dtype=np.int16)
    data[1:3, 1:3, 1:3] = 1                            # centre voxel (1.5, 1.5, 1.5)
    data[7:9, 1:3, 1:3] = 2                            # centre voxel (7.5, 1.5, 1.5)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-10, -10, -10]
    img = nib.Nifti1Image(data, affine)
    labels = pd.DataFrame({"index": [1, 2], "name": ["a", "b"]})
    np.testing.assert_allclose(coupling.centroids_from_image(img, 2), [[-7, -7, -7], [5, -7, -7]])
    assert coupling.region_distance(labels, image=img)[0, 1] == pytest.approx(12.0)
    with pytest.raises(InputError, match="no region centroids"):
        coupling.region_distance(labels)


def test_write_region_tables_is_byte_identical_to_io_write_region_table(tmp_path):
    labels = io.read_labels(Path(__file__).parents[2] / "resources/atlases/atlas-HOA_dseg.tsv")
    values = np.random.default_rng(14).normal(0, 1, (2, len(labels))) * 10.0 ** np.linspace(-6, 5, len(labels))
    values[0, 3] = np.nan
    values[1, 5] = 0.0
    fast = [tmp_path / "fast" / f"{k}.tsv" for k in range(2)]
    coupling.write_region_tables(fast, values, labels)
    for k in range(2):
        io.write_region_table(tmp_path / f"ref{k}.tsv", values[k], labels)
        assert fast[k].read_bytes() == (tmp_path / f"ref{k}.tsv").read_bytes()


# --- batch reader: same numbers and messages as the per-file reader ---------------------------

def _per_file(paths, **checks):
    """The per-file path (sfc.io.read_matrix's checks on the fast single-file parser)."""
    return np.stack([coupling._parse_matrix(Path(p), None, "FC", checks.get("symmetric", False),
                                            checks.get("allow_nan", True)) for p in paths])


EDGE_TEXTS = {
    "plain": "0\t1.5\t-2\n1.5\t0\t3\n-2\t3\t0\n",
    "no final newline": "0\t1.5\t-2\n1.5\t0\t3\n-2\t3\t0",
    "crlf": "0\t1.5\t-2\r\n1.5\t0\t3\r\n-2\t3\t0\r\n",
    "exponents": "1e-05\t-2.5E+03\t3.000000001\n1e-05\t0\t-0\n1.7976931348623157e308\t5e-324\t0.1\n",
    "n/a and nan": "0\tn/a\tnan\nNaN\t0\t1\n2\t3\t0\n",
    "long digits": "0.1234567890123456789\t12345678901234567890\t-0.000001\n1\t2\t3\n4\t5\t6\n",
    "blank line": "0\t1\t2\n\n1\t0\t3\n2\t3\t0\n",
    "quoted": '"0"\t1\t2\n1\t0\t3\n2\t3\t0\n',
}


@pytest.mark.parametrize("threads, to_tensor", [(1, True), (2, True), (2, False)])
def test_batch_reader_equals_the_per_file_reader_on_edge_cases(tmp_path, monkeypatch, threads, to_tensor):
    monkeypatch.setattr(coupling, "_BATCH_FILES", 3)       # several batches, mixed cases in one
    monkeypatch.setattr(coupling, "_TO_TENSOR", to_tensor and coupling._TO_TENSOR)   # and pyarrow < 16's copies
    paths = []
    for k, (name, text) in enumerate(list(EDGE_TEXTS.items()) * 2):
        paths.append(tmp_path / f"{k:02d}_fc.tsv")
        paths[-1].write_bytes(text.encode())
    got = coupling.read_fc(paths, 3, threads=threads)
    want = _per_file(paths)
    np.testing.assert_array_equal(got, want)                # NaN where NaN, bit for bit otherwise
    assert np.array_equal(np.signbit(got), np.signbit(want))   # -0 stays -0
    assert coupling._BATCH_PARSE is None or coupling._plain_lines(b"1\t2\n3\t4", 2) == b"1\t2\n3\t4\n"


def test_batch_reader_equals_the_per_file_reader_on_what_io_writes(tmp_path):
    rng = np.random.default_rng(3)
    mats = []
    for k in range(37):
        m = rng.standard_normal((7, 7)) * 10.0 ** rng.integers(-8, 8, (7, 7))
        m[rng.random((7, 7)) < 0.1] = np.nan
        mats.append(m)
    paths = [tmp_path / f"{k}_fc.tsv" for k in range(len(mats))]
    for p, m in zip(paths, mats):
        io.write_matrix(p, m)
    got = coupling.read_fc(paths, 7, threads=2)
    np.testing.assert_array_equal(got, _per_file(paths))
    np.testing.assert_array_equal(got, np.stack([io.read_matrix(p) for p in paths]))


@pytest.mark.parametrize("text, message", [
    ("0\t1\t2\n1\t0\t3\n", "2 x 3, not square"),
    ("0\t1\n1\t0\n", "2 regions but the atlas has 3"),
    ("0\t1\t2\n1\t0\t3\n2\t3\n", "cannot be read as numbers"),
    ("0\t1\t2\n1\t0\t3\n2\t3\t0\t4\n", "cannot be read as numbers"),
    ("0\t1\t2\n1\t0\t3\n2\t3\t0\n0\t0\t0\n", "4 x 3, not square"),
    ("0\t1\t2\n1\t0\t3\n2\t3.5\t0\n", "SC matrix is not symmetric"),
    ("0\tn/a\t2\nn/a\t0\t3\n2\t3\t0\n", "SC matrix contains NaN (rows 1, 2, 1-based)"),
    ("0\tnan\t2\nnan\t0\t3\n2\t3\t0\n", "SC matrix contains NaN"),
    ("0\t1\t2\n1\t0\tabc\n2\tabc\t0\n", "cannot be read as numbers"),
    ("0\t1\t-2\n1\t0\t3\n-2\t3\t0\n", "SC matrix has negative weights"),
])
def test_batch_reader_names_the_malformed_file_among_good_ones(tmp_path, monkeypatch, text, message):
    monkeypatch.setattr(coupling, "_BATCH_FILES", 4)
    good = np.array([[0, 1, 2], [1, 0, 3], [2, 3, 0.0]])
    paths = [tmp_path / f"sub-{k:02d}_sc.tsv" for k in range(10)]
    for p in paths:
        io.write_matrix(p, good)
    paths[6].write_text(text)
    with pytest.raises(InputError) as err:
        coupling.read_sc(paths, 3, threads=2)
    assert str(err.value).startswith(f"{paths[6]}: ") and message in str(err.value)


def test_batch_reader_rows_cannot_shift_between_files(tmp_path, monkeypatch):
    """A file one row short next to a file whose lone CR adds a row: each is judged on its own."""
    monkeypatch.setattr(coupling, "_BATCH_FILES", 8)
    short = tmp_path / "a_fc.tsv"
    short.write_text("0\t1\n\n")
    extra = tmp_path / "b_fc.tsv"
    extra.write_bytes(b"0\t1\r1\t0\n")
    with pytest.raises(InputError, match="a_fc.tsv.*1 x 2, not square"):
        coupling.read_fc([short, extra], 2)


def test_batch_reader_reports_a_missing_file(tmp_path):
    ok = tmp_path / "ok_fc.tsv"
    io.write_matrix(ok, np.eye(3))
    with pytest.raises(InputError, match="gone_fc.tsv.*not found"):
        coupling.read_fc([ok, ok, tmp_path / "gone_fc.tsv", ok], 3, threads=2)


def test_spearman_threads_give_the_same_values_and_errors():
    rng = np.random.default_rng(5)
    sc = rng.poisson(2.0, (9, 30, 30)).astype(float)
    sc = sc + sc.transpose(0, 2, 1)
    fc = rng.standard_normal((9, 30, 30))
    np.testing.assert_array_equal(coupling.spearman(sc, fc, threads=3), coupling.spearman(sc, fc))
    bad = sc.copy()
    bad[7, 1, 2] = -1.0
    with pytest.raises(ValueError, match="negative"):
        coupling.spearman(bad, fc, threads=2)
    bad[3, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        coupling.spearman(bad, fc, threads=2)


def test_batch_reader_symmetry_tolerance_is_read_matrix_s(tmp_path):
    """1e-6 of the largest |value|: just under passes (both readers), just over fails (both)."""
    paths = []
    for k, off in enumerate([2.9e-6, 3.1e-6, 0.0]):
        paths.append(tmp_path / f"{k}_sc.tsv")
        paths[-1].write_text(f"0\t1\t2\n{1 + off!r}\t0\t3\n2\t3\t0\n")
    np.testing.assert_array_equal(coupling.read_sc([paths[0], paths[2]], 3),
                                  np.stack([io.read_matrix(p, 3, "SC", symmetric=True) for p in (paths[0], paths[2])]))
    for reader in (lambda p: coupling.read_sc([paths[2], p], 3), lambda p: io.read_matrix(p, 3, "SC", symmetric=True)):
        with pytest.raises(InputError, match="1_sc.tsv.*not symmetric"):
            reader(paths[1])


def test_reader_without_pyarrow_reads_the_same_with_pandas(tmp_path, monkeypatch):
    """Per-file pandas path; its default float parser is not always correctly rounded
    (0.1234567890123456789 is one ulp off), hence 1e-15 rather than bit equality."""
    paths = []
    for k, text in enumerate(EDGE_TEXTS.values()):
        paths.append(tmp_path / f"{k}_fc.tsv")
        paths[-1].write_text(text)
    want = coupling.read_fc(paths, 3, threads=2)
    monkeypatch.setattr(coupling, "_BATCH_PARSE", None)
    monkeypatch.setattr(coupling, "_FAST_READ", None)
    np.testing.assert_allclose(coupling.read_fc(paths, 3, threads=2), want, rtol=1e-15, atol=0)


# --- a group's units: the excluded ones shape nothing ------------------------------------------

def _unit_files(root, rng, ids, n=12, volumes=60, empty=()):
    """SC, FC and time-series files of each unit; units in ``empty`` get a header-only series."""
    labels = pd.DataFrame({"index": np.arange(1, n + 1), "name": [f"R{k}" for k in range(n)]})
    files = {"sc": [], "fc": [], "ts": []}
    for pid in ids:
        sc, _ = random_pair(rng, n=n, integer=True)
        ts = rng.normal(size=(volumes, n)) + rng.normal(size=(volumes, 1))
        fc = np.corrcoef(ts.T)
        paths = {k: root / f"{pid}_{k}.tsv" for k in files}
        io.write_matrix(paths["sc"], sc)
        io.write_matrix(paths["fc"], fc)
        pd.DataFrame(ts[:0] if pid in empty else ts, columns=labels["name"]).to_csv(paths["ts"], sep="\t",
                                                                                   index=False)
        for k in files:
            files[k].append(paths[k])
    return labels, files


@pytest.mark.parametrize("method", ["spearman", "sdi"])
def test_an_excluded_unit_shapes_nothing_and_gets_nan(tmp_path, method):
    ids = ["sub-01", "sub-02", "sub-03", "sub-04"]
    labels, files = _unit_files(tmp_path, np.random.default_rng(5), ids, empty=("sub-04",))
    three = coupling.compute_units(method, ids[:3], {}, labels, files["sc"][:3], files["fc"][:3], files["ts"][:3])
    four = coupling.compute_units(method, ids, {"sub-04": "QC: 0 volumes left"}, labels, files["sc"], files["fc"],
                                  files["ts"])
    np.testing.assert_array_equal(four.values[:3], three.values)
    assert np.isnan(four.values[3]).all() and four.kept == [0, 1, 2]
    assert four.cutoff == three.cutoff


def test_an_empty_time_series_of_an_included_unit_names_the_file(tmp_path):
    ids = ["sub-01", "sub-02", "sub-03"]
    labels, files = _unit_files(tmp_path, np.random.default_rng(6), ids, empty=("sub-02",))
    with pytest.raises(InputError, match="sub-02_ts.tsv: the time series has 0 volume"):
        coupling.compute_units("sdi", ids, {}, labels, files["sc"], files["fc"], files["ts"])
    with pytest.raises(InputError, match="every one of the 3 subjects is excluded"):
        coupling.compute_units("sdi", ids, dict.fromkeys(ids, "QC"), labels, files["sc"], files["fc"], files["ts"])


@pytest.mark.parametrize("spoil, message", [
    (lambda f: io.write_matrix(f["sc"][1], np.where(np.eye(12) == 0, np.inf, 0)), "SC matrix has infinite weights"),
    (lambda f: io.write_matrix(f["sc"][1], np.zeros((12, 12))), "SC matrix has no connection at all"),
    (lambda f: io.write_matrix(f["fc"][1], np.full((12, 12), np.nan)), "FC matrix is n/a everywhere"),
    (lambda f: io.write_matrix(f["fc"][1], 3 * np.ones((12, 12))), r"FC values outside \[-1, 1\] \(largest"),
])
def test_a_spoilt_matrix_is_named_not_a_traceback(tmp_path, spoil, message):
    ids = ["sub-01", "sub-02", "sub-03"]
    labels, files = _unit_files(tmp_path, np.random.default_rng(7), ids)
    spoil(files)
    with pytest.raises(InputError, match=f"sub-02_(sc|fc).tsv: {message}"):
        coupling.compute_units("spearman", ids, {}, labels, files["sc"], files["fc"], files["ts"])


@pytest.mark.parametrize("method", ["spearman", "communication", "sdi"])
def test_a_region_without_streamlines_gets_nan_not_an_error(tmp_path, method):
    ids = ["sub-01", "sub-02", "sub-03"]
    labels, files = _unit_files(tmp_path, np.random.default_rng(8), ids)
    sc = io.read_matrix(files["sc"][1])
    sc[4, :] = sc[:, 4] = 0
    io.write_matrix(files["sc"][1], sc)
    coords = np.random.default_rng(9).normal(0, 50, (12, 3))
    result = coupling.compute_units(method, ids, {}, labels, files["sc"], files["fc"], files["ts"],
                                    distance=coupling.centroid_distance(coords) if method == "communication"
                                    else None, min_neighbours=3)
    assert np.isfinite(result.values[0]).sum() >= 10
    if method != "sdi":
        assert np.isnan(result.values[1, 4])
