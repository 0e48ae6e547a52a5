"""sfc.func: inputs, motion correction, label transforms, parcellation, denoising, FC, QC.

The real-scan tests read $SFC_SHARED_DATA (default /work/shared/data) and skip
with the reason when it is absent.
"""

import json
import os
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from sfc import confounds as conf
from sfc import func, io, registration
from sfc.errors import InputError

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
SHARED = Path(os.environ.get("SFC_SHARED_DATA", "/work/shared/data"))
REAL_BOLD = SHARED / "mri" / "tractor" / "bold_feat_preproc.nii.gz"
REPO = Path(__file__).resolve().parents[2]


def bold_file(tmp_path, shape=(6, 6, 6, 40), tr=2.0, sidecar=True, seed=0):
    rng = np.random.default_rng(seed)
    path = tmp_path / "sub-01_task-rest_bold.nii.gz"
    nib.save(nib.Nifti1Image(rng.normal(100, 1, shape).astype(np.float32), np.diag([3, 3, 3, 1.0])), path)
    if sidecar is True:
        (tmp_path / "sub-01_task-rest_bold.json").write_text(json.dumps({"RepetitionTime": tr}))
    elif isinstance(sidecar, dict):
        (tmp_path / "sub-01_task-rest_bold.json").write_text(json.dumps(sidecar))
    return path


# --- inputs -----------------------------------------------------------------------------------

def test_nan_voxels_in_bold_are_named_before_motion_correction(tmp_path):
    path = bold_file(tmp_path)
    img = nib.load(path)
    data = img.get_fdata(dtype=np.float32)
    data[1, 2, 3, 5:8] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), path)
    with pytest.raises(InputError, match="has 3 NaN or infinite voxel values in 3 volume.*Fix: re-export"):
        func.check_finite(func.load_bold(path), path)
    (tmp_path / "ok").mkdir()
    func.check_finite(func.load_bold(bold_file(tmp_path / "ok")), path)       # a clean series passes


def test_repetition_time_read_from_sidecar(tmp_path):
    assert func.repetition_time(bold_file(tmp_path, tr=0.8)) == 0.8


def test_missing_sidecar_is_input_error_naming_file_and_fix(tmp_path):
    path = bold_file(tmp_path, sidecar=False)
    with pytest.raises(InputError) as err:
        func.repetition_time(path)
    assert str(path) in str(err.value) and "RepetitionTime" in str(err.value) and "Fix:" in str(err.value)


def test_sidecar_without_repetition_time_is_input_error(tmp_path):
    path = bold_file(tmp_path, sidecar={"TaskName": "rest"})
    with pytest.raises(InputError, match="has no RepetitionTime"):
        func.repetition_time(path)


def test_repetition_time_in_milliseconds_is_refused(tmp_path):
    with pytest.raises(InputError, match="milliseconds"):
        func.repetition_time(bold_file(tmp_path, tr=2000))


def test_three_d_image_is_input_error_naming_file(tmp_path):
    path = tmp_path / "sub-01_task-rest_bold.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), path)
    with pytest.raises(InputError) as err:
        func.load_bold(path)
    assert str(path) in str(err.value) and "3-D" in str(err.value) and "4-D" in str(err.value)


def test_drop_dummy_volumes_removes_the_first_ones(tmp_path):
    img = func.load_bold(bold_file(tmp_path))
    out = func.drop_dummy_volumes(img, 4)
    assert out.shape[3] == 36
    np.testing.assert_array_equal(np.asarray(out.dataobj)[..., 0], np.asarray(img.dataobj)[..., 4])


def test_short_scan_cannot_carry_high_pass_and_says_how_long_it_is():
    # 40 volumes x 2 s = 80 s < 100 s needed for 0.01 Hz
    with pytest.raises(InputError) as err:
        func.check_filter(40, 2.0, 0.01, 0.08, path="x_bold.nii.gz")
    msg = str(err.value)
    assert "x_bold.nii.gz" in msg and "80.0 s" in msg and "0.01 Hz" in msg and "func.bandpass" in msg
    func.check_filter(60, 2.0, 0.01, 0.08)  # 120 s is enough


def test_low_pass_above_nyquist_is_refused():
    with pytest.raises(InputError, match="Nyquist"):
        func.check_filter(200, 3.0, 0.01, 0.2)  # Nyquist 0.167 Hz


# --- motion ---------------------------------------------------------------------------------------

def test_rigid_parameters_are_those_of_the_volume_to_reference_transform():
    # motion M (volume -> reference, RAS): y -> R (y - o) + o + d. The ITK registration of the
    # volume (moving) to the reference (fixed) returns T = M^-1 in LPS about an arbitrary centre c.
    s = np.diag([-1.0, -1.0, 1.0])
    angles = np.array([0.02, -0.01, 0.015])
    r = registration.rotation_matrix(angles)
    d = np.array([0.5, -1.2, 0.8])
    o = np.array([2.0, -18.0, 10.0])
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = r, o - r @ o + d
    t_ras = np.linalg.inv(m)
    a = s @ t_ras[:3, :3] @ s  # the same map in LPS: x -> a x + s b
    c = np.array([-5.0, 7.0, 3.0])
    translation = s @ t_ras[:3, 3] - c + a @ c  # ITK form a (x - c) + c + translation
    np.testing.assert_allclose(func.rigid_parameters(a.ravel(), translation, c, o),
                               np.concatenate([d, angles]), atol=1e-10)


def _textured_head(shape=(28, 28, 18), seed=0):
    rng = np.random.default_rng(seed)
    tex = ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1)[:, None, None, None] / 2
    radius = np.array([10, 11, 7])[:, None, None, None]
    ell = (((grid - centre) / radius) ** 2).sum(0) < 1
    return (ndimage.gaussian_filter(ell.astype(float), 1) * (100 + 40 * tex / tex.std())).astype(np.float32)


def _move(vol, affine, angles, d, origin):
    """Volume t of a moving head, as sfc.simulate.images makes it: at scanner point y it shows the
    motion-free content at M y = R (y - o) + o + d."""
    r = registration.rotation_matrix(angles)
    a, b = affine[:3, :3], affine[:3, 3]
    inv_a = np.linalg.inv(a)
    # out voxel v -> y = a v + b -> M y -> input voxel a^-1 (M y - b)
    matrix = inv_a @ r @ a
    offset = inv_a @ (r @ (b - origin) + origin + d - b)
    return ndimage.affine_transform(vol, matrix, offset, order=3, mode="constant")


def test_motion_correct_recovers_known_head_motion():
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [-40, -40, -25]
    head = _textured_head()
    img0 = nib.Nifti1Image(head, affine)
    origin = func.grid_centre(img0)
    rng = np.random.default_rng(5)
    n = 8
    true = np.column_stack([rng.uniform(-1.0, 1.0, (n, 3)), rng.uniform(-0.02, 0.02, (n, 3))])
    true[0] = 0
    vols = [_move(head, affine, p[3:], p[:3], origin) for p in true]
    img = nib.Nifti1Image(np.stack(vols, axis=3), affine)
    mc = func.motion_correct(img, reference=img0, seed=1)
    est = mc.parameters[conf.MOTION_COLUMNS].to_numpy()
    # translations within 0.15 mm, rotations within 0.003 rad (0.17 deg) of the truth
    np.testing.assert_allclose(est[:, :3], true[:, :3], atol=0.15)
    np.testing.assert_allclose(est[:, 3:], true[:, 3:], atol=0.003)
    for k in range(6):
        assert np.corrcoef(est[:, k], true[:, k])[0, 1] > 0.98
    np.testing.assert_allclose(mc.fd, conf.framewise_displacement(mc.parameters))
    # the corrected series is realigned: each moved volume is at least twice closer to the reference
    # (what remains is the blur of two interpolations; resampling the wrong way would double the error)
    inside = head > 50
    for k in range(1, n):
        err = np.abs(np.asarray(mc.corrected.dataobj)[..., k][inside] - head[inside]).mean()
        moved = np.abs(vols[k][inside] - head[inside]).mean()
        assert err < 0.5 * moved


# --- labels to the BOLD grid ----------------------------------------------------------------------

def _translation_transform(path, shift_lps):
    import ants

    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                    translation=list(map(float, shift_lps)))
    ants.write_transform(tx, str(path))
    return str(path)


def test_atlas_to_bold_composes_inverse_coregistration_after_template_to_t1w(tmp_path):
    # BOLD->T1w registration maps T1w points to BOLD points (+6 mm in z); the anat
    # registration maps template points to T1w points (+4 mm in z). An atlas blob at
    # template z = 0 must therefore land at BOLD z = +10 mm (not -10, +2 or -2).
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-20, -20, -20]
    atlas = np.zeros((21, 21, 21), np.int16)
    atlas[9:12, 9:12, 9:12] = 7  # centred on world (0, 0, 0)
    bold_ref = nib.Nifti1Image(np.ones((21, 21, 21), np.float32), affine)
    t_b = _translation_transform(tmp_path / "bold2t1w.mat", [0, 0, 6.0])
    t_a = _translation_transform(tmp_path / "t1w2mni.mat", [0, 0, 4.0])
    out = func.atlas_to_bold(nib.Nifti1Image(atlas, affine), bold_ref, [t_b], [t_a], [True])
    data = np.asarray(out.dataobj)
    assert set(np.unique(data)) == {0, 7}
    ijk = np.argwhere(data == 7).mean(axis=0)
    z_world = (affine @ np.append(ijk, 1))[2]
    assert z_world == pytest.approx(10.0, abs=0.5)


def test_tissue_signals_average_the_right_voxels():
    seg = np.zeros((8, 8, 8), np.int16)
    seg[1:7, 1:7, 1:4] = 3  # WM slab (eroded once still has voxels)
    seg[1:7, 1:7, 5:7] = 1  # CSF
    t = 5
    data = np.zeros((8, 8, 8, t), np.float32)
    data[seg == 3] = np.arange(t) + 10
    data[seg == 1] = -np.arange(t)
    out = func.tissue_signals(nib.Nifti1Image(data, np.eye(4)), nib.Nifti1Image(seg, np.eye(4)), erode_wm=0)
    np.testing.assert_allclose(out["white_matter"], np.arange(t) + 10)
    np.testing.assert_allclose(out["csf"], -np.arange(t))
    n_wm, n_csf = (seg == 3).sum(), (seg == 1).sum()
    np.testing.assert_allclose(out["global_signal"], (n_wm * (np.arange(t) + 10) - n_csf * np.arange(t))
                               / (n_wm + n_csf))


def test_empty_tissue_mask_is_input_error():
    seg = np.zeros((4, 4, 4), np.int16)
    seg[1:3, 1:3, 1:3] = 2  # grey matter only
    with pytest.raises(InputError, match="white matter mask has no voxel"):
        func.tissue_signals(nib.Nifti1Image(np.ones((4, 4, 4, 3), np.float32), np.eye(4)),
                            nib.Nifti1Image(seg, np.eye(4)))


# --- parcellation, denoising, FC ---------------------------------------------------------------------

def _block_atlas():
    """6x6x6 grid, labels 1, 2, 4 (label 3 of the table absent)."""
    lab = np.zeros((6, 6, 6), np.int16)
    lab[:3] = 1
    lab[3:, :3] = 4
    lab[3:, 3:] = 2
    return nib.Nifti1Image(lab, np.diag([3.0, 3, 3, 1]))


def test_region_signals_keep_label_table_order_with_nan_for_absent_label():
    labels_img = _block_atlas()
    lab = np.asarray(labels_img.dataobj)
    rng = np.random.default_rng(0)
    means = {1: rng.normal(size=20), 2: rng.normal(size=20), 4: rng.normal(size=20)}
    data = np.zeros((6, 6, 6, 20), np.float32)
    for v, s in means.items():
        data[lab == v] = s
    with pytest.warns(func.RegionWarning, match="labels 3"):
        out, missing = func.region_signals(nib.Nifti1Image(data, labels_img.affine), labels_img, [4, 3, 2, 1])
    assert missing == [3]
    np.testing.assert_allclose(out[:, 0], means[4], atol=1e-6)
    assert np.isnan(out[:, 1]).all()
    np.testing.assert_allclose(out[:, 2], means[2], atol=1e-6)
    np.testing.assert_allclose(out[:, 3], means[1], atol=1e-6)


def test_constant_region_gives_nan_and_a_warning_not_zero():
    labels_img = _block_atlas()
    lab = np.asarray(labels_img.dataobj)
    data = np.random.default_rng(1).normal(size=(6, 6, 6, 20)).astype(np.float32)
    data[lab == 2] = 5.0
    with pytest.warns(func.RegionWarning, match="constant signal"):
        out, missing = func.region_signals(nib.Nifti1Image(data, labels_img.affine), labels_img, [1, 2, 4])
    assert missing == [2] and np.isnan(out[:, 1]).all()
    fc = func.correlation_matrix(out)
    assert np.isnan(fc[1]).all() and np.isnan(fc[:, 1]).all()
    assert fc[0, 0] == 1.0 and np.isfinite(fc[0, 2])


def test_correlation_matrix_matches_numpy_corrcoef():
    x = np.random.default_rng(2).normal(size=(50, 5))
    fc = func.correlation_matrix(x)
    np.testing.assert_allclose(fc, np.corrcoef(x.T), atol=1e-12)
    assert np.array_equal(fc, fc.T) and np.all(np.diag(fc) == 1.0)


def test_clean_signals_removes_confound_and_keeps_only_unscrubbed_volumes():
    rng = np.random.default_rng(3)
    n = 200
    truth = rng.normal(size=(n, 2))
    nuisance = rng.normal(size=(n, 1))
    signals = truth + 5 * nuisance
    keep = np.ones(n, bool)
    keep[[10, 11, 50]] = False
    out = func.clean_signals(signals, 2.0, confounds=nuisance, keep=keep, high_pass=None, low_pass=None)
    assert out.shape == (n - 3, 2)
    for k in range(2):
        assert np.corrcoef(out[:, k], truth[keep, k])[0, 1] > 0.99
    raw_r = np.corrcoef(signals[keep, 0], truth[keep, 0])[0, 1]
    assert raw_r < 0.3  # the nuisance dominated before cleaning


def test_too_few_volumes_for_the_regressors_is_input_error():
    rng = np.random.default_rng(4)
    with pytest.raises(InputError, match="36 confound regressors"):
        func.clean_signals(rng.normal(size=(30, 3)), 2.0, confounds=rng.normal(size=(30, 36)),
                           high_pass=None, low_pass=None, path="sub-01_bold.nii.gz")


def test_connectivity_with_mismatched_confound_rows_is_input_error():
    labels_img = _block_atlas()
    img = nib.Nifti1Image(np.random.default_rng(5).normal(size=(6, 6, 6, 20)).astype(np.float32),
                          labels_img.affine)
    labels = pd.DataFrame({"index": [1, 2, 4], "name": ["a", "b", "c"]})
    with pytest.raises(InputError, match="19 rows but the BOLD has 20"):
        func.connectivity(img, labels_img, labels, 2.0, confounds=np.zeros((19, 2)),
                          settings=func.DenoiseSettings(high_pass=None, low_pass=None))


def test_settings_from_config_reads_bandpass_pair_and_null():
    s = func.DenoiseSettings.from_config({"bandpass": [0.009, 0.1], "confounds": "36P", "fd_threshold": 0.3})
    assert (s.high_pass, s.low_pass, s.confounds, s.fd_threshold) == (0.009, 0.1, "36P", 0.3)
    s = func.DenoiseSettings.from_config({"bandpass": None})
    assert s.high_pass is None and s.low_pass is None


# --- QC --------------------------------------------------------------------------------------------

def test_qc_excludes_high_mean_fd_and_too_little_data(tmp_path):
    settings = func.DenoiseSettings(max_mean_fd=0.5, min_kept_minutes=4.0, fd_threshold=0.5)
    n, tr = 200, 2.0  # 6.67 min
    calm = np.full(n, 0.1)
    q = func.qc_summary(calm, np.ones(n, bool), tr, settings, subject="01")
    assert q["include"] and q["reason"] == "n/a" and q["mean_fd"] == pytest.approx(0.1)
    jumpy = np.full(n, 0.6)
    keep = conf.scrub_mask(jumpy, 0.5)
    q = func.qc_summary(jumpy, keep, tr, settings, subject="02")
    assert not q["include"] and "mean FD 0.600 mm > 0.5 mm" in q["reason"] and "0 volumes" in q["reason"]
    path = tmp_path / "qc.tsv"
    func.write_qc(path, q)
    back = func.read_qc(path)
    assert back["include"] is False and back["participant_id"] == "sub-02" and "mean FD" in back["reason"]


def test_qc_plots_are_written(tmp_path):
    rng = np.random.default_rng(6)
    fd = np.abs(rng.normal(0, 0.3, 30))
    func.plot_fd(tmp_path / "fd.png", fd, fd < 0.5, 0.5)
    img = nib.Nifti1Image(rng.normal(100, 1, (5, 5, 5, 30)).astype(np.float32), np.eye(4))
    func.plot_carpet(tmp_path / "carpet.png", img, fd=fd)
    fc = np.corrcoef(rng.normal(size=(4, 30)))
    fc[1, :] = fc[:, 1] = np.nan
    func.plot_fc(tmp_path / "fc.png", fc, "test")
    for name in ("fd.png", "carpet.png", "fc.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the real 15-volume BOLD --------------------------------------------------------------------------

needs_real_bold = pytest.mark.skipif(not REAL_BOLD.is_file(),
                                     reason=f"real BOLD {REAL_BOLD} absent (set SFC_SHARED_DATA)")


@needs_real_bold
def test_real_15_volume_bold_refuses_default_bandpass_with_clear_message():
    img = func.load_bold(REAL_BOLD)
    labels = io.read_labels(REPO / "resources" / "atlases" / "atlas-BNA246_dseg.tsv")
    with pytest.raises(InputError) as err:
        func.connectivity(img, img.slicer[..., 0], labels, 2.16, settings=func.DenoiseSettings(), path=REAL_BOLD)
    msg = str(err.value)
    assert str(REAL_BOLD) in msg and "15 volumes" in msg and "32.4 s" in msg and "0.01 Hz" in msg


@needs_real_bold
def test_real_bold_parcellated_with_registered_atlas_gives_plausible_fc(tmp_path):
    from nilearn.image import resample_to_img

    atlas_path = SHARED / "atlases" / "bna246" / "BN_Atlas_246_2mm.nii.gz"
    template_path = SHARED / "templates" / "mni152-fsl" / "MNI152_T1_1mm_brain.nii.gz"
    if not atlas_path.is_file() or not template_path.is_file():
        pytest.skip(f"{atlas_path} or {template_path} absent")
    img = func.load_bold(REAL_BOLD)
    ref = func.mean_volume(img)
    atlas = nib.load(atlas_path)
    template = resample_to_img(nib.load(template_path), atlas, interpolation="continuous",
                               force_resample=True, copy_header=True)
    tx = func.register_template_to_bold(template, ref, seed=1)
    # registration check: the warped template brain overlaps the (brain-extracted) BOLD
    warped = func._to_nib(registration.apply(func._to_ants(template), func._to_ants(ref), tx)).get_fdata()
    bold_brain = np.asarray(ref.dataobj) != 0
    assert registration.dice(warped > 0.1 * warped.max(), bold_brain) > 0.85
    atlas_bold = func.atlas_to_bold(atlas, ref, [], tx, [False])
    labels = io.read_labels(REPO / "resources" / "atlases" / "atlas-BNA246_dseg.tsv")
    gs = np.asarray(img.dataobj)[bold_brain].mean(axis=0)[:, None]  # 15 volumes carry 1 regressor at most
    settings = func.DenoiseSettings(confounds="none", high_pass=None, low_pass=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", func.RegionWarning)
        res = func.connectivity(img, atlas_bold, labels, 2.16, confounds=gs, settings=settings, atlas="BNA246")
    fc = res.fc
    assert fc.shape == (246, 246) and res.timeseries.shape == (15, 246)
    assert list(res.timeseries.columns) == labels["name"].tolist()
    valid = np.isfinite(np.diag(fc))
    assert valid.sum() >= 230  # the FOV covers nearly the whole brain
    assert np.allclose(fc[np.ix_(valid, valid)], fc[np.ix_(valid, valid)].T)
    assert np.all(np.diag(fc)[valid] == 1.0)
    assert np.all(np.abs(fc[np.isfinite(fc)]) <= 1.0)
    # a physiological matrix: homotopic pairs (odd/even labels) correlate more than distant pairs
    xyz = labels[["x_mm", "y_mm", "z_mm"]].to_numpy(float)
    dist = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    iu = np.triu_indices(246, 1)
    far = np.nanmean(fc[iu][dist[iu] > 80])
    homotopic = np.nanmean([fc[i, i + 1] for i in range(0, 246, 2)])
    assert homotopic > far + 0.15
    # written as INTERFACES.md says
    out_fc, out_ts = tmp_path / "fc.tsv", tmp_path / "ts.tsv"
    io.write_matrix(out_fc, fc)
    func.write_timeseries(out_ts, res.timeseries)
    np.testing.assert_allclose(io.read_matrix(out_fc, n_regions=246), fc, atol=1e-8, equal_nan=True)
    assert pd.read_csv(out_ts, sep="\t", nrows=0).columns.tolist() == labels["name"].tolist()


def test_dseg_from_5tt_takes_most_probable_tissue():
    five = np.zeros((2, 2, 1, 5), np.float32)
    five[0, 0, 0] = [0.6, 0.0, 0.3, 0.1, 0]  # GM
    five[0, 1, 0] = [0.2, 0.2, 0.5, 0.1, 0]  # WM 0.5 beats GM 0.2 + 0.2
    five[1, 0, 0] = [0.1, 0.0, 0.2, 0.7, 0]  # CSF
    five[1, 1, 0] = 0  # outside
    out = np.asarray(func.dseg_from_5tt(nib.Nifti1Image(five, np.eye(4))).dataobj)[..., 0]
    np.testing.assert_array_equal(out, [[2, 3], [1, 0]])


def test_motion_agreement_ignores_offsets_and_flags_constant_parameters():
    rng = np.random.default_rng(7)
    true = rng.normal(size=(30, 6))
    true[:, 5] = 0.0
    est = pd.DataFrame(true + 3.0, columns=conf.MOTION_COLUMNS)
    r = func.motion_agreement(est, true)
    np.testing.assert_allclose(r.iloc[:5], 1.0)
    assert np.isnan(r["rot_z"])


def test_fc_agreement_is_spearman_of_upper_triangles_skipping_nan():
    rng = np.random.default_rng(8)
    truth = np.corrcoef(rng.normal(size=(6, 40)))
    fc = truth ** 3  # monotone: Spearman 1
    fc[0, :] = fc[:, 0] = np.nan
    assert func.fc_agreement(fc, truth) == pytest.approx(1.0)


def test_excluded_subject_without_enough_volumes_gets_nan_fc_not_an_error():
    labels_img = _block_atlas()
    rng = np.random.default_rng(9)
    n = 60
    img = nib.Nifti1Image(rng.normal(size=(6, 6, 6, n)).astype(np.float32), labels_img.affine)
    labels = pd.DataFrame({"index": [1, 2, 4], "name": ["a", "b", "c"]})
    fd = np.full(n, 0.8)
    fd[:8] = 0.1  # 8 calm volumes: too few for 24 regressors, and mean FD far above 0.5 mm
    keep = conf.scrub_mask(fd, 0.5)
    regs = rng.normal(size=(n, 24))
    settings = func.DenoiseSettings(high_pass=None, low_pass=None)
    res, summary = func.subject_connectivity(img, labels_img, labels, 2.0, regs, keep, fd, settings)
    assert not summary["include"] and "mean FD" in summary["reason"]
    assert np.isnan(res.fc).all() and res.fc.shape == (3, 3) and list(res.timeseries.columns) == ["a", "b", "c"]
    # the same data judged included (no limits) is an error that names the problem
    lenient = func.DenoiseSettings(high_pass=None, low_pass=None, max_mean_fd=None, min_kept_minutes=0)
    with pytest.raises(InputError, match="fewer than the 29 needed"):
        func.subject_connectivity(img, labels_img, labels, 2.0, regs, keep, fd, lenient)


# --- the image-level generator (sfc.simulate.images): truth as the yardstick -----------------------------

ATLAS_DIR = Path(os.environ.get("SFC_ATLAS_DIR", SHARED / "atlases"))


@pytest.mark.slow
@pytest.mark.skipif(not (ATLAS_DIR / "bna246" / "BN_Atlas_246_2mm.nii.gz").is_file(),
                    reason=f"atlas images absent from {ATLAS_DIR} (set SFC_ATLAS_DIR)")
def test_generator_subject_motion_and_fc_are_recovered(tmp_path):
    from dataclasses import replace

    from sfc.simulate import images

    params = replace(images.ImageParams(), n_volumes=80)
    cohort = images.simulate_bids_cohort(tmp_path / "bids", atlas_dir=ATLAS_DIR, image_params=params,
                                         n_per_group={"TRD": 1, "nTRD": 0, "HC": 0}, seed=3)
    sub = cohort.subjects[0]
    bold_path = tmp_path / "bids" / f"sub-{sub}" / "func" / f"sub-{sub}_task-rest_bold.nii.gz"
    tdir = cohort.truth_dir / f"sub-{sub}"
    img = func.load_bold(bold_path)
    assert func.repetition_time(bold_path) == params.tr
    mc = func.motion_correct(img, seed=1)
    true = pd.read_csv(tdir / f"sub-{sub}_task-rest_desc-motion_truth.tsv", sep="\t")
    r = func.motion_agreement(mc.parameters, true)
    assert (r > 0.95).all(), r.to_dict()  # measured 0.98-0.996 on a 150-volume subject
    fd_true = conf.framewise_displacement(true)
    assert np.corrcoef(mc.fd, fd_true)[0, 1] > 0.95
    # atlas on the BOLD grid through the generator's true scanner -> MNI transform (registration aside)
    xf = images.load_transform(cohort.truth_dir, sub, "bold")
    x = xf.to_mni(images.grid_points(img.shape[:3], img.affine))
    atlas = nib.load(ATLAS_DIR / "bna246" / "BN_Atlas_246_2mm.nii.gz")
    vox = np.rint((x - atlas.affine[:3, 3]) @ np.linalg.inv(atlas.affine[:3, :3]).T).astype(int)
    inside = np.all((vox >= 0) & (vox < np.array(atlas.shape)), axis=1)
    lab = np.zeros(len(x), np.int32)
    lab[inside] = np.asarray(atlas.dataobj)[tuple(vox[inside].T)]
    labels_img = nib.Nifti1Image(lab.reshape(img.shape[:3]), img.affine)
    labels = io.read_labels(REPO / "resources" / "atlases" / "atlas-BNA246_dseg.tsv")
    table = conf.confounds_table(mc.parameters)
    keep = conf.scrub_mask(mc.fd, 0.5, 5)
    settings = func.DenoiseSettings(confounds="6P")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = func.connectivity(mc.corrected, labels_img, labels, params.tr,
                                confounds=conf.select_confounds(table, "6P"), keep=keep, settings=settings)
    truth = io.read_matrix(tdir / f"sub-{sub}_atlas-BNA246_desc-true_fc.tsv")
    assert np.isfinite(np.diag(res.fc)).sum() >= 240
    assert func.fc_agreement(res.fc, truth) > 0.3  # 80 volumes; 0.47 measured with 150
    # rigid BOLD -> T1w coregistration against the generator's true transforms (whole-head T1w)
    import ants

    t1w = tmp_path / "bids" / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz"
    xfm = func.coregister_to_t1w(mc.reference, t1w, tmp_path / "coreg_", seed=1)
    tx = ants.read_transform(xfm[0])  # T1w points -> BOLD points, LPS
    p, c = np.asarray(tx.parameters), np.asarray(tx.fixed_parameters)
    s = np.diag([-1.0, -1.0, 1.0])
    t1w_to_bold = np.eye(4)
    t1w_to_bold[:3, :3] = s @ p[:9].reshape(3, 3) @ s
    t1w_to_bold[:3, 3] = s @ (c - p[:9].reshape(3, 3) @ c + p[9:12])
    true = np.linalg.inv(np.loadtxt(tdir / f"sub-{sub}_from-T1w_to-MNI_xfm.txt")) @ \
        np.loadtxt(tdir / f"sub-{sub}_from-bold_to-MNI_xfm.txt")  # BOLD -> T1w scanner points
    ref = np.asarray(mc.reference.dataobj)
    y = np.argwhere(ref > 0.3 * ref.max()) @ mc.reference.affine[:3, :3].T + mc.reference.affine[:3, 3]
    yh = np.c_[y, np.ones(len(y))]
    err = np.linalg.norm((yh @ np.linalg.inv(t1w_to_bold).T - yh @ true.T)[:, :3], axis=1)
    assert err.mean() < 1.5  # mm, BOLD voxels are 4 mm; 0.67 mean / 1.03 max measured (150 volumes)
