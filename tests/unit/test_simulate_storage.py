"""sfc.simulate.storage: the same head written in another voxel order or on an oblique grid."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from sfc.simulate import storage


def head(shape=(20, 24, 18), affine=None):
    rng = np.random.default_rng(0)
    data = rng.normal(size=shape).astype(np.float32)
    if affine is None:
        affine = np.diag([-2.5, 2.5, 2.5, 1.0])
        affine[:3, 3] = [25.0, -30.0, -20.0]
    return nib.Nifti1Image(data, affine)


def world_value(img, xyz):
    ijk = np.rint(np.linalg.inv(img.affine) @ np.append(xyz, 1.0))[:3].astype(int)
    return np.asarray(img.dataobj)[tuple(ijk)]


@pytest.mark.parametrize("codes", ["LPS", "RAS", "LAS", "PIL", "SRA"])
def test_reorient_keeps_every_voxel_where_it_was_in_the_world(codes):
    img = head()
    out = storage.reorient(img, codes)
    assert "".join(nib.aff2axcodes(out.affine)) == codes
    # each voxel centre of the original holds the same value at the same world point
    ijk = np.indices(img.shape).reshape(3, -1).T[::37]
    xyz = ijk @ img.affine[:3, :3].T + img.affine[:3, 3]
    values = [world_value(out, p) for p in xyz]
    np.testing.assert_array_equal(values, np.asarray(img.dataobj)[tuple(ijk.T)])


def test_nibabel_slicer_flip_is_not_a_reorientation():
    # why reorient() exists: slicer[::-1] keeps the old origin, so the head moves in the world
    img = head()
    flipped = img.slicer[::-1]
    corner = img.affine @ [img.shape[0] - 1, 0, 0, 1]
    assert not np.allclose(flipped.affine @ [0, 0, 0, 1], corner)
    np.testing.assert_allclose(storage.reorient(img, "RAS").affine @ [0, 0, 0, 1], corner)


def _world_gradients(bvecs, affine):
    b = np.array(bvecs, float)
    if np.linalg.det(affine[:3, :3]) > 0:
        b[0] = -b[0]
    return storage._unit_axes(affine) @ b


@pytest.mark.parametrize("codes,angles", [("LPS", None), ("RAS", None), ("PIL", None), (None, (5, -4, 6))])
def test_fsl_bvecs_follow_the_grid(codes, angles):
    img = head()
    rng = np.random.default_rng(1)
    bvecs = rng.normal(size=(3, 10))
    bvecs /= np.linalg.norm(bvecs, axis=0)
    bvecs[:, 0] = 0  # a b=0 volume
    out = storage.restored(img, codes, angles)
    new = storage.fsl_bvecs(bvecs, img.affine, out.affine)
    np.testing.assert_allclose(_world_gradients(new, out.affine), _world_gradients(bvecs, img.affine), atol=1e-12)
    assert np.all(new[:, 0] == 0)
    if codes == "LPS":  # LAS -> LPS: y flips with the axis, and x with FSL's sign rule (det turns positive)
        np.testing.assert_allclose(new, bvecs * np.array([[-1], [-1], [1]]))


def test_encoding_direction_moves_with_the_axes():
    img = head()
    assert storage.encoding_direction("j-", img.affine, storage.reorient(img, "LPS").affine) == "j"
    assert storage.encoding_direction("j-", img.affine, storage.reorient(img, "PIL").affine) == "i"
    assert storage.encoding_direction("i", img.affine, storage.reorient(img, "RAS").affine) == "i-"


def test_oblique_grid_keeps_the_head_in_place():
    # a smooth blob: its world centroid must not move when the grid turns
    shape = (30, 32, 28)
    grid = np.indices(shape).astype(float)
    c = np.array([14.0, 17.0, 12.0])
    data = np.exp(-((grid - c[:, None, None, None]) ** 2).sum(0) / (2 * 3.0 ** 2)).astype(np.float32)
    img = nib.Nifti1Image(data, head().affine)
    out = storage.oblique(img, (6, -5, 4))
    assert not np.allclose(out.affine[:3, :3], img.affine[:3, :3])

    def centroid(im):
        d = np.asarray(im.dataobj, float)
        ijk = np.indices(d.shape).reshape(3, -1)
        w = d.ravel()
        return im.affine[:3, :3] @ (ijk @ w / w.sum()) + im.affine[:3, 3]

    np.testing.assert_allclose(centroid(out), centroid(img), atol=0.1)  # mm


def test_restore_subject_writes_a_whole_bids_subject(tmp_path):
    bids, truth = tmp_path / "bids", tmp_path / "truth"
    for sub_dir in ("anat", "dwi", "func"):
        (bids / "sub-01" / sub_dir).mkdir(parents=True)
    img = head()
    nib.save(img, bids / "sub-01/anat/sub-01_T1w.nii.gz")
    dwi = nib.Nifti1Image(np.stack([np.asarray(img.dataobj)] * 3, -1), img.affine)
    nib.save(dwi, bids / "sub-01/dwi/sub-01_dwi.nii.gz")
    bvecs = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]], float)
    np.savetxt(bids / "sub-01/dwi/sub-01_dwi.bvec", bvecs)
    (bids / "sub-01/dwi/sub-01_dwi.bval").write_text("0 1000 1000\n")
    (bids / "sub-01/dwi/sub-01_dwi.json").write_text(json.dumps({"PhaseEncodingDirection": "j-"}))
    nib.save(dwi, bids / "sub-01/func/sub-01_task-rest_bold.nii.gz")
    (bids / "participants.tsv").write_text("participant_id\tgroup\nsub-01\tHC\n")
    (truth / "sub-01").mkdir(parents=True)
    (truth / "sub-01" / "sub-01_from-dwi_to-MNI_xfm.txt").write_text("1 0 0 0\n")

    storage.restore_subject(bids, "01", "02", axcodes="LPS", ext=".nii", truth_dir=truth)

    new = bids / "sub-02"
    t1 = nib.load(new / "anat/sub-02_T1w.nii")
    assert "".join(nib.aff2axcodes(t1.affine)) == "LPS"
    assert (new / "func/sub-02_task-rest_bold.nii").is_file()
    assert (new / "dwi/sub-02_dwi.bval").read_text() == "0 1000 1000\n"
    assert json.loads((new / "dwi/sub-02_dwi.json").read_text())["PhaseEncodingDirection"] == "j"
    np.testing.assert_allclose(np.loadtxt(new / "dwi/sub-02_dwi.bvec"), bvecs * [[-1], [-1], [1]])
    table = pd.read_csv(bids / "participants.tsv", sep="\t")
    assert list(table.participant_id) == ["sub-01", "sub-02"] and list(table.group) == ["HC", "HC"]
    assert (truth / "sub-02" / "sub-02_from-dwi_to-MNI_xfm.txt").is_file()
