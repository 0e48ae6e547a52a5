"""The image-level synthetic cohort: signal models, transforms, BIDS files and their truth."""

from __future__ import annotations

import json
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from sfc.simulate import images
from sfc.simulate.connectome import build_model, load_geometry

# --- fast: the pieces ----------------------------------------------------------------------


def test_multi_tensor_signal_matches_dipy_multi_tensor():
    from dipy.core.gradients import gradient_table
    from dipy.sims.voxel import multi_tensor

    rng = np.random.default_rng(0)
    bvals, bvecs = images.gradient_table(rng, 30, 2, 1000.0)
    gtab = gradient_table(bvals, bvecs=bvecs)
    d1 = np.array([1.0, 0, 0])
    d2 = np.array([0, 0.6, 0.8])
    evals = (1.7e-3, 0.3e-3, 0.3e-3)
    # dipy: two fibre tensors + CSF + GM as isotropic tensors, fractions in percent
    mevals = np.array([evals, evals, [3e-3] * 3, [0.8e-3] * 3])
    angles = [tuple(np.rad2deg([np.arccos(d[2]), np.arctan2(d[1], d[0])])) for d in (d1, d2)] + [(0, 0), (0, 0)]
    fractions = [35, 25, 25, 15]
    expected, _ = multi_tensor(gtab, mevals, S0=1.0, angles=angles, fractions=fractions, snr=None)
    got = images.multi_tensor_signal(bvals, bvecs, np.array([[0.25, 0.15]]), np.array([3e-3, 0.8e-3]),
                                     np.array([[d1, d2]]), np.array([[0.35, 0.25]]), evals)
    np.testing.assert_allclose(got[0], expected, rtol=1e-6)


def test_gradient_table_has_b0_and_well_spread_unit_directions():
    bvals, bvecs = images.gradient_table(np.random.default_rng(1), 32, 2, 1000.0)
    assert (bvals == 0).sum() == 2 and (bvals == 1000).sum() == 32
    dirs = bvecs[bvals > 0]
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1, atol=1e-9)
    cos = np.abs(dirs @ dirs.T)
    np.fill_diagonal(cos, 0)
    assert np.degrees(np.arccos(cos.max())) > 12  # no two directions (or antipodes) closer than 12 deg


def test_spm_hrf_peaks_at_five_to_six_seconds_and_has_an_undershoot():
    h = images.spm_hrf(0.1)
    assert 4.5 < np.argmax(h) * 0.1 < 6.0
    assert h.min() < 0 and np.argmin(h) * 0.1 > 10


def test_transform_inverts_within_a_hundredth_of_a_millimetre():
    xf = images.random_transform(np.random.default_rng(2), images.ImageParams())
    y = np.random.default_rng(3).uniform(-60, 60, (200, 3))
    np.testing.assert_allclose(xf.from_mni(xf.to_mni(y)), y, atol=0.01)
    # and it really deforms: the non-linear part moves points by ~ the requested millimetres
    u = xf.displacement(y)
    assert 0.5 < np.sqrt((u ** 2).sum(axis=1)).mean() < 6


def test_motion_starts_at_rest_and_stays_within_a_few_millimetres():
    p = images.ImageParams()
    m = images.motion_parameters(np.random.default_rng(4), 160, p)
    assert m.shape == (160, 6) and np.all(m[0] == 0)
    assert np.abs(m[:, :3]).max() < 5 and np.degrees(np.abs(m[:, 3:]).max()) < 5
    assert np.abs(np.diff(m[:, :3], axis=0)).max() > 0.5  # the spikes a scrubbing step must find


def test_preset_image_params_take_the_preset_then_the_overrides():
    assert images.preset_image_params("demo").t1_voxel == 2.0
    assert images.preset_image_params("large").t1_voxel == images.ImageParams().t1_voxel
    p = images.preset_image_params("demo", t1_voxel=None, dwi_voxel=3.0)
    assert (p.t1_voxel, p.dwi_voxel, p.n_volumes) == (2.0, 3.0, images.ImageParams().n_volumes)


# --- slow: a two-subject cohort ----------------------------------------------------------------

SMALL = images.ImageParams(t1_voxel=2.0, dwi_voxel=3.0, bold_voxel=4.0, n_volumes=60, n_directions=30, n_b0=1)


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory, atlas_dir):
    out = tmp_path_factory.mktemp("bids")
    res = images.simulate_bids_cohort(out / "bids", out / "truth", atlas_dir=atlas_dir,
                                      n_per_group={"TRD": 1, "nTRD": 1, "HC": 0}, seed=7, image_params=SMALL)
    return res


@pytest.mark.slow
def test_parallel_generation_writes_the_same_cohort(small_cohort, tmp_path, atlas_dir):
    """Subjects simulated in two worker processes: the same images and truth as one process."""
    res = images.simulate_bids_cohort(tmp_path / "bids", tmp_path / "truth", atlas_dir=atlas_dir,
                                      n_per_group={"TRD": 1, "nTRD": 1, "HC": 0}, seed=7, image_params=SMALL,
                                      n_jobs=2)
    assert res.subjects == small_cohort.subjects
    for sub in res.subjects:
        for rel in (f"sub-{sub}/anat/sub-{sub}_T1w.nii.gz", f"sub-{sub}/dwi/sub-{sub}_dwi.nii.gz",
                    f"sub-{sub}/func/sub-{sub}_task-rest_bold.nii.gz"):
            a = np.asanyarray(nib.load(small_cohort.bids_dir / rel).dataobj)
            b = np.asanyarray(nib.load(res.bids_dir / rel).dataobj)
            np.testing.assert_array_equal(a, b)
    for atlas, table in small_cohort.sfc_true.items():
        pd.testing.assert_frame_equal(table, res.sfc_true[atlas])
    pd.testing.assert_frame_equal(pd.read_csv(small_cohort.truth_dir / "subjects.tsv", sep="\t"),
                                  pd.read_csv(res.truth_dir / "subjects.tsv", sep="\t"))


@pytest.mark.slow
def test_bids_tree_loads_with_sane_headers(small_cohort):
    bids = small_cohort.bids_dir
    assert json.loads((bids / "dataset_description.json").read_text())["BIDSVersion"]
    table = pd.read_csv(bids / "participants.tsv", sep="\t")
    assert list(table["participant_id"]) == ["sub-001", "sub-002"]
    assert not (bids / "truth").exists() and not any(bids.rglob("*truth*"))
    for sub in small_cohort.subjects:
        t1 = nib.load(bids / f"sub-{sub}/anat/sub-{sub}_T1w.nii.gz")
        dwi = nib.load(bids / f"sub-{sub}/dwi/sub-{sub}_dwi.nii.gz")
        bold = nib.load(bids / f"sub-{sub}/func/sub-{sub}_task-rest_bold.nii.gz")
        for img, vox in ((t1, 2.0), (dwi, 3.0), (bold, 4.0)):
            assert nib.aff2axcodes(img.affine) == ("L", "A", "S")
            np.testing.assert_allclose(img.header.get_zooms()[:3], vox)
            assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
            # the brain centre (MNI ~0,-18,8) lies inside the field of view
            assert np.all(np.abs(img.affine[:3, 3]) < 130)
        assert dwi.shape[3] == 31 and bold.shape[3] == 60
        assert bold.header.get_zooms()[3] == pytest.approx(2.0)
        meta = json.loads((bids / f"sub-{sub}/func/sub-{sub}_task-rest_bold.json").read_text())
        assert meta["RepetitionTime"] == 2.0 and meta["TaskName"] == "rest"
        bval = np.loadtxt(bids / f"sub-{sub}/dwi/sub-{sub}_dwi.bval")
        bvec = np.loadtxt(bids / f"sub-{sub}/dwi/sub-{sub}_dwi.bvec")
        assert bval.shape == (31,) and bvec.shape == (3, 31)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mrinfo") is None, reason="MRtrix3 not installed")
def test_mrtrix_reads_the_dwi_with_its_gradients(small_cohort):
    stem = small_cohort.bids_dir / "sub-001/dwi/sub-001_dwi"
    out = subprocess.run(["mrinfo", "-fslgrad", f"{stem}.bvec", f"{stem}.bval", f"{stem}.nii.gz", "-dwgrad"],
                         capture_output=True, text=True, check=True).stdout.split("\n")
    rows = np.array([[float(v) for v in line.split()] for line in out if line.strip()])
    assert rows.shape == (31, 4)
    assert (rows[:, 3] < 1).sum() == 1 and np.allclose(rows[rows[:, 3] > 1, 3], 1000, atol=1)


@pytest.mark.slow
def test_t1w_is_the_template_seen_through_the_true_transform(small_cohort):
    sub = "001"
    img = nib.load(small_cohort.bids_dir / f"sub-{sub}/anat/sub-{sub}_T1w.nii.gz")
    data = img.get_fdata().ravel()
    xf = images.load_transform(small_cohort.truth_dir, sub, "T1w")
    anat = images.load_anatomy()
    y = images.grid_points(img.shape, img.affine)
    brain = data > 300
    def template(points):  # brain plus the synthetic scalp/skull shell
        return images._sample(anat.t1, anat.affine, points) + images._sample(anat.head, anat.affine, points)

    expected = template(xf.to_mni(y[brain]))
    assert np.corrcoef(expected, data[brain])[0, 1] > 0.9
    # the pose is not the identity: without the transform the match is much worse
    naive = template(y[brain])
    assert np.corrcoef(naive, data[brain])[0, 1] < 0.8


@pytest.mark.slow
def test_dwi_principal_direction_in_the_corpus_callosum_is_left_right(small_cohort):
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    sub = "002"
    stem = small_cohort.bids_dir / f"sub-{sub}/dwi/sub-{sub}_dwi"
    img = nib.load(f"{stem}.nii.gz")
    gtab = gradient_table(np.loadtxt(f"{stem}.bval"), bvecs=np.loadtxt(f"{stem}.bvec").T)
    xf = images.load_transform(small_cohort.truth_dir, sub, "dwi")
    anat = images.load_anatomy()
    grid = np.array([[0.0, y, z] for y in np.arange(-20.0, 21, 2) for z in np.arange(10.0, 33, 2)])
    wm = images._sample(anat.wm, anat.affine, grid)
    mni = grid[np.argsort(wm)[-6:]]  # the midline's most certain white matter: the corpus callosum
    vox = np.rint(np.linalg.solve(img.affine[:3, :3], (xf.from_mni(mni) - img.affine[:3, 3]).T).T).astype(int)
    data = img.get_fdata()[tuple(vox.T)]
    fit = TensorModel(gtab).fit(data)
    ev = fit.evecs[..., 0] * np.array([-1.0, 1.0, 1.0])  # bvec (LAS voxel) frame -> scanner frame
    ev_mni = ev @ xf.affine[:3, :3].T
    ev_mni /= np.linalg.norm(ev_mni, axis=1, keepdims=True)
    assert np.median(np.abs(ev_mni[:, 0])) > 0.8
    assert np.median(fit.fa) > 0.4


@pytest.mark.slow
def test_bold_region_average_follows_the_true_neural_signal(small_cohort, atlas_dir):
    sub = "001"
    img = nib.load(small_cohort.bids_dir / f"sub-{sub}/func/sub-{sub}_task-rest_bold.nii.gz")
    data = img.get_fdata().reshape(-1, img.shape[3])
    xf = images.load_transform(small_cohort.truth_dir, sub, "bold")
    geometry, labels = load_geometry(atlas_dir)
    x = xf.to_mni(images.grid_points(img.shape[:3], img.affine))
    lab = images._sample(geometry.ext_labels.astype(np.float32), geometry.affine, x, order=0).astype(int)
    truth = pd.read_csv(small_cohort.truth_dir / f"sub-{sub}/sub-{sub}_task-rest_desc-neural_timeseries.tsv",
                        sep="\t")
    rs = []
    for name in ("PrG_L_6_3", "SFG_R_7_1", "MVOcC_L_5_1", "FuG_R_3_1"):
        k = labels["BNA246"]["name"].tolist().index(name) + 1
        ts = data[lab == k].mean(axis=0)
        t = np.arange(len(ts))
        ts = ts - np.polyval(np.polyfit(t, ts, 2), t)
        rs.append(np.corrcoef(ts, truth[name])[0, 1])
    assert np.median(rs) > 0.5, rs


@pytest.mark.slow
def test_truth_folder_holds_transforms_motion_and_planted_sfc(small_cohort):
    truth = small_cohort.truth_dir
    for sub in small_cohort.subjects:
        for scan in ("T1w", "dwi", "bold"):
            assert (truth / f"sub-{sub}/sub-{sub}_from-{scan}_to-MNI_xfm.txt").is_file()
        motion = pd.read_csv(truth / f"sub-{sub}/sub-{sub}_task-rest_desc-motion_truth.tsv", sep="\t")
        assert motion.shape == (60, 6)
        for atlas in ("BNA246", "HOA"):
            sc = np.loadtxt(truth / f"sub-{sub}/sub-{sub}_atlas-{atlas}_desc-true_sc.tsv")
            assert np.allclose(sc, sc.T) and np.all(np.diag(sc) == 0)
    sfc = small_cohort.sfc_true["BNA246"]
    groups = small_cohort.participants.set_index("participant_id")["group"]
    planted = small_cohort.planted["BNA246"]["trd_decoupling"]
    trd = sfc.loc[groups[groups == "TRD"].index, planted].mean(axis=1).iloc[0]
    ntrd = sfc.loc[groups[groups == "nTRD"].index, planted].mean(axis=1).iloc[0]
    assert trd < ntrd - 0.15


@pytest.mark.slow
def test_same_seed_gives_the_same_t1w_and_another_seed_does_not(tmp_path):
    anat = images.load_anatomy()
    p = images.ImageParams(t1_voxel=3.0)
    arrays = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        rng = np.random.default_rng(seed)
        xf = images.random_transform(rng, p)
        (tmp_path / name).mkdir()
        images._write_t1w(tmp_path / name, "001", anat, xf, p, rng, tmp_path / name)
        arrays.append(np.asarray(nib.load(tmp_path / name / "sub-001/anat/sub-001_T1w.nii.gz").dataobj))
    assert np.array_equal(arrays[0], arrays[1]) and not np.array_equal(arrays[0], arrays[2])


@pytest.mark.slow
def test_bundles_connect_nearly_every_structural_edge(atlas_dir):
    model = build_model(seed=0, geometry=load_geometry(atlas_dir))
    bundles = images.build_bundles(model, images.load_anatomy())
    found = np.unique(bundles.bundle)
    assert len(found) >= 0.95 * len(bundles.edges)
    lengths = bundles.length_mm[found]
    assert 10 < np.median(lengths) < 150
