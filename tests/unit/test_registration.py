"""sfc.registration (antspyx): centre-of-mass start, label-safe resampling, seeds, quality numbers."""

from __future__ import annotations

import numpy as np
import pytest

ants = pytest.importorskip("ants")

from sfc import registration  # noqa: E402


def phantom(shape=(40, 44, 36), spacing=(2.0, 2.0, 2.0), origin=(0.0, 0.0, 0.0)):
    """An asymmetric 'head': an ellipsoid with two inner blobs of different brightness."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).astype(float)
    c = np.array(shape) / 2.0
    r = ((grid - c) / (np.array(shape) * [0.35, 0.4, 0.33])) ** 2
    img = (r.sum(-1) < 1).astype("float32") * 100
    for centre, radius, value in [((-5, 4, 2), 5, 200), ((6, -6, -3), 3, 50)]:
        d = np.linalg.norm(grid - (c + centre), axis=-1)
        img[d < radius] = value
    return ants.from_numpy(img, origin=origin, spacing=spacing)


def test_rigid_registration_finds_image_far_away_through_centre_of_mass_start():
    fixed = phantom()
    # same object, but its physical position is 90 mm away: no overlap at the start,
    # as with a DWI whose origin sits at voxel (0,0,0)
    moving = phantom(origin=(90.0, -40.0, 25.0))
    before = registration.dice(registration.apply(moving, fixed, []).numpy() > 50, fixed.numpy() > 50)
    reg = registration.register(fixed, moving, "Rigid", seed=1, quick=True)
    after = registration.dice(reg["warped"].numpy() > 50, fixed.numpy() > 50)
    assert before == 0.0
    assert after > 0.95


def test_same_seed_gives_identical_registration():
    fixed, moving = phantom(), phantom(origin=(6.0, -4.0, 2.0))
    a = registration.register(fixed, moving, "Affine", seed=3, quick=True)["warped"].numpy()
    b = registration.register(fixed, moving, "Affine", seed=3, quick=True)["warped"].numpy()
    np.testing.assert_array_equal(a, b)


def test_transforms_are_written_at_the_prefix_and_found_again(tmp_path):
    fixed, moving = phantom(), phantom(origin=(4.0, 0.0, -2.0))
    reg = registration.register(fixed, moving, "SyN", out_prefix=tmp_path / "x_", seed=1, quick=True,
                                reg_iterations=(5, 0, 0))
    fwd, fwd_inv = registration.transforms_from_prefix(tmp_path / "x_")
    inv, inv_flags = registration.transforms_from_prefix(tmp_path / "x_", inverse=True)
    assert fwd == reg["fwdtransforms"] == [f"{tmp_path}/x_1Warp.nii.gz", f"{tmp_path}/x_0GenericAffine.mat"]
    assert inv == reg["invtransforms"] and inv_flags == reg["invert"] == [True, False]
    assert fwd_inv == [False, False]
    affine_only = registration.register(fixed, moving, "Affine", out_prefix=tmp_path / "a_", seed=1, quick=True)
    assert registration.transforms_from_prefix(tmp_path / "a_", inverse=True) == (
        affine_only["invtransforms"], [True])


def test_label_resampling_never_invents_label_values():
    labels = np.zeros((20, 20, 20), dtype="float32")
    labels[2:10, 2:18, 2:18] = 3
    labels[10:18, 2:10, 2:18] = 7
    labels[10:18, 10:18, 2:18] = 11
    img = ants.from_numpy(labels, spacing=(2.0, 2.0, 2.0))
    target = ants.from_numpy(np.zeros((27, 27, 27), dtype="float32"), spacing=(1.5, 1.5, 1.5),
                             origin=(0.7, 0.3, 0.1))
    out = registration.apply_labels(img, target, [])
    assert set(np.unique(out.numpy())) == {0.0, 3.0, 7.0, 11.0}
    linear = registration.apply(img, target, [], interpolator="linear").numpy()
    assert len(np.unique(np.round(linear, 3))) > 4  # what genericLabel protects against


def test_normalized_mutual_information_bounds():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 20, 20))
    assert registration.normalized_mutual_information(a, a) == pytest.approx(2.0)
    assert registration.normalized_mutual_information(a, -a) == pytest.approx(2.0)  # contrast-inverted
    b = rng.normal(size=(20, 20, 20))
    assert registration.normalized_mutual_information(a, b) < 1.1  # unrelated


def test_dice_by_hand():
    a = np.zeros(10)
    b = np.zeros(10)
    a[:4] = 1
    b[2:8] = 1  # overlap 2, sizes 4 and 6
    assert registration.dice(a, b) == pytest.approx(2 * 2 / 10)


def test_n4_removes_a_smooth_multiplicative_field():
    img = phantom()
    arr = img.numpy()
    x = np.linspace(0.6, 1.4, arr.shape[0])[:, None, None]
    biased = img.new_image_like((arr * x).astype("float32"))
    mask = img.new_image_like((arr > 0).astype("float32"))
    corrected = registration.n4(biased, mask=mask, shrink_factor=2).numpy()
    inside = (arr == 100)  # one tissue: its spread is the bias
    cv = lambda v: v[inside].std() / v[inside].mean()  # noqa: E731
    assert cv(corrected) < 0.5 * cv(arr * x)


def test_identity_warp_changes_nothing(tmp_path):
    img = phantom()
    registration.identity_warp(img, tmp_path / "w.nii.gz")
    out = registration.apply(img, img, [tmp_path / "w.nii.gz"]).numpy()
    np.testing.assert_allclose(out, img.numpy(), atol=1e-4)


def _shifted(transform, path, shift_mm):
    """A copy of a rigid transform file with its translation moved by ``shift_mm`` (a deliberately wrong pose)."""
    tx = ants.read_transform(str(transform))
    p = np.asarray(tx.parameters, float).copy()
    p[9:12] += shift_mm
    tx.set_parameters(p)
    ants.write_transform(tx, str(path))
    return path


def test_second_start_agrees_with_a_good_registration_and_flags_a_wrong_pose(tmp_path):
    fixed, moving = phantom(), phantom(origin=(7.0, -5.0, 3.0))
    mask = fixed.new_image_like((fixed.numpy() > 0).astype("float32"))
    reg = registration.register(fixed, moving, "Rigid", out_prefix=tmp_path / "r_", seed=2)
    good = registration.second_start(fixed, moving, reg["fwdtransforms"][0], distance_mask=mask, seed=2)
    assert good["second_start_mm"] < 0.5 and not good["doubtful"]
    # the same images with the pose 4 mm off: the second start lands ~4 mm from it
    wrong = _shifted(reg["fwdtransforms"][0], tmp_path / "wrong.mat", np.array([4.0, 0.0, 0.0]))
    bad = registration.second_start(fixed, moving, wrong, distance_mask=mask, seed=2)
    assert bad["doubtful"] and 3.5 < bad["second_start_mm"] < 4.5
    assert registration.transform_distance(reg["fwdtransforms"][0], wrong, mask) == pytest.approx(4.0, abs=1e-6)


def test_load_canonical_gives_the_same_array_for_any_voxel_order(tmp_path):
    import nibabel as nib

    from sfc.simulate import storage

    data = np.asarray(phantom().numpy(), dtype=np.float32)
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])  # LAS, as the generator and many converters write
    affine[:3, 3] = [40.0, -44.0, -36.0]
    las = nib.Nifti1Image(data, affine)
    las.header.set_xyzt_units("mm")
    loaded = {}
    for codes in ("LAS", "LPS", "RAS", "PIL"):
        path = tmp_path / f"{codes}.nii.gz"
        nib.save(storage.reorient(las, codes), path)
        loaded[codes] = registration.load_canonical(path)
    ref = loaded["RAS"]
    for codes, img in loaded.items():
        np.testing.assert_array_equal(img.numpy(), ref.numpy(), err_msg=codes)
        np.testing.assert_allclose(img.origin, ref.origin, err_msg=codes)
        np.testing.assert_allclose(img.direction, ref.direction, err_msg=codes)
