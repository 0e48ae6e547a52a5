"""The same head, stored another way: voxel order, oblique grids, .nii or .nii.gz.

Scanners and converters write every voxel order (dcm2niix: commonly LAS or LPS, often oblique).
A subject written here describes the same head at the same place in the world as the one it
was made from, so every world-space result of the workflow (transforms, atlas labels, SC, FC)
must agree between the two within the workflow's own run-to-run noise.

- :func:`reorient`: voxel axes permuted and flipped (``nibabel``'s ``as_reoriented``, which
  moves the origin with the flip; no interpolation, the voxel values are the same).
  ``img.slicer[::-1]`` is *not* such a flip: nibabel 5.4 keeps the old origin there, which
  moves the head in world space by the field of view.
- :func:`oblique`: the grid rotated about its centre by a few degrees, the data resampled
  onto it (linear; 0 outside the old field of view): the head stays where it is.
- :func:`fsl_bvecs`: FSL's ``bvec`` is given in the voxel axes, with x negated when the
  affine's determinant is positive (FSL's radiological convention, which ``mrconvert -fslgrad``
  undoes); the same gradient directions are rewritten for the new grid.
- :func:`restore_subject`: a BIDS subject (anat, dwi, func, sidecars) written in a new
  storage under a new label, with ``PhaseEncodingDirection``/``SliceEncodingDirection`` moved
  to the new voxel axes, and its truth folder copied (the truth is in world coordinates).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from ..registration import rotation_matrix

AXES = "ijk"


def _unit_axes(affine) -> np.ndarray:
    """The world direction of each voxel axis (columns), without the voxel sizes."""
    m = np.asarray(affine, float)[:3, :3]
    return m / np.linalg.norm(m, axis=0)


def reorient(img: nib.Nifti1Image, axcodes: str) -> nib.Nifti1Image:
    """``img`` with its voxel axes in the order and directions ``axcodes`` (e.g. ``"LPS"``)."""
    current = nib.orientations.io_orientation(img.affine)
    target = nib.orientations.axcodes2ornt(tuple(axcodes))
    out = img.as_reoriented(nib.orientations.ornt_transform(current, target))
    return _with_header(out, img)


def oblique_affine(affine, shape, angles_deg) -> np.ndarray:
    """``affine`` with its grid rotated by ``angles_deg`` about the grid centre (world frame)."""
    a = np.asarray(affine, float)
    centre = a[:3, :3] @ ((np.asarray(shape[:3]) - 1) / 2.0) + a[:3, 3]
    r = rotation_matrix(np.deg2rad(np.asarray(angles_deg, float)))
    out = np.eye(4)
    out[:3, :3] = r @ a[:3, :3]
    out[:3, 3] = r @ (a[:3, 3] - centre) + centre
    return out


def oblique(img: nib.Nifti1Image, angles_deg, order: int = 1) -> nib.Nifti1Image:
    """``img`` resampled onto its own grid rotated by ``angles_deg`` about the grid centre.

    The head keeps its world position; only the sampling grid turns (as a scanner's oblique
    slice prescription). Linear interpolation (``order=1``) for intensities, 0 for labels.
    """
    from scipy import ndimage

    new_affine = oblique_affine(img.affine, img.shape, angles_deg)
    # new voxel -> old voxel
    m = np.linalg.inv(img.affine) @ new_affine
    data = np.asarray(img.dataobj, dtype=np.float32)
    vols = data.reshape(data.shape[:3] + (-1,))
    out = np.empty_like(vols)
    for k in range(vols.shape[3]):
        out[..., k] = ndimage.affine_transform(vols[..., k], m[:3, :3], offset=m[:3, 3], order=order,
                                               mode="constant", cval=0.0)
    out = out.reshape(data.shape)
    if np.issubdtype(img.get_data_dtype(), np.integer):
        out = np.rint(out)
    new = nib.Nifti1Image(out.astype(img.get_data_dtype()), new_affine)
    return _with_header(new, img)


def _with_header(new: nib.Nifti1Image, old: nib.Nifti1Image) -> nib.Nifti1Image:
    """Units, TR and codes of ``old`` on ``new`` (qform and sform both the new affine)."""
    hdr = new.header
    hdr.set_xyzt_units(*old.header.get_xyzt_units())
    if len(old.shape) == 4:
        zooms = list(hdr.get_zooms()[:3]) + [old.header.get_zooms()[3]]
        hdr.set_zooms(zooms)
    new.set_qform(new.affine, code=1)
    new.set_sform(new.affine, code=1)
    return new


def fsl_bvecs(bvecs, old_affine, new_affine) -> np.ndarray:
    """FSL bvecs (3 x N) of ``old_affine``'s grid rewritten for ``new_affine``'s grid.

    FSL bvecs are in voxel axes, x negated where ``det(affine) > 0``; in between, the
    directions are taken to the world and back, so permutations, flips and rotations of the
    grid are all handled (and a zero vector for b=0 stays zero).
    """
    b = np.array(bvecs, float).reshape(3, -1)
    if np.linalg.det(np.asarray(old_affine)[:3, :3]) > 0:
        b[0] = -b[0]
    world = _unit_axes(old_affine) @ b
    new = np.linalg.inv(_unit_axes(new_affine)) @ world
    if np.linalg.det(np.asarray(new_affine)[:3, :3]) > 0:
        new[0] = -new[0]
    new[np.abs(new) < 1e-12] = 0.0
    return new


def encoding_direction(code: str, old_affine, new_affine) -> str:
    """A BIDS ``PhaseEncodingDirection``/``SliceEncodingDirection`` (``i``, ``j-``, ...) on the new grid.

    The direction's world vector is mapped onto the new voxel axes; the nearest axis is the
    answer (for an oblique grid of a few degrees it is the same axis).
    """
    axis, sign = AXES.index(code[0]), -1.0 if code.endswith("-") else 1.0
    world = _unit_axes(old_affine)[:, axis] * sign
    v = np.linalg.inv(_unit_axes(new_affine)) @ world
    k = int(np.argmax(np.abs(v)))
    return AXES[k] + ("-" if v[k] < 0 else "")


def restored(img: nib.Nifti1Image, axcodes: str | None = None, oblique_deg=None) -> nib.Nifti1Image:
    """``img`` in voxel order ``axcodes`` (None: as it is), then on a grid rotated by ``oblique_deg``."""
    out = reorient(img, axcodes) if axcodes else img
    if oblique_deg is not None and np.any(np.asarray(oblique_deg, float) != 0):
        out = oblique(out, oblique_deg)
    return out


def restore_subject(bids_dir, subject: str, new_subject: str, *, axcodes: str | None = None, oblique_deg=None,
                    ext: str = ".nii.gz", out_bids_dir=None, truth_dir=None) -> Path:
    """Write BIDS subject ``sub-<subject>`` again as ``sub-<new_subject>``, stored another way.

    Every NIfTI of the subject (anat, dwi, func) is reoriented to ``axcodes`` and/or put on an
    oblique grid (:func:`restored`) and written with ``ext`` (``.nii`` or ``.nii.gz``); the
    FSL bvecs and the sidecars' encoding directions follow the new grid; bvals and other
    sidecar fields are copied. The participants.tsv row is duplicated under the new label.
    With ``truth_dir`` (the generator's truth folder), ``sub-<subject>``'s truth files are
    copied under the new label: they are in world coordinates, which do not change.

    Returns the new subject folder.
    """
    bids_dir = Path(bids_dir)
    out_bids = Path(out_bids_dir) if out_bids_dir else bids_dir
    src = bids_dir / f"sub-{subject}"
    dst = out_bids / f"sub-{new_subject}"
    old, new = f"sub-{subject}", f"sub-{new_subject}"
    affines = {}
    for path in sorted(src.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(src)
        name = rel.name.replace(old, new, 1)
        target = dst / rel.parent / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith((".nii", ".nii.gz")):
            img = nib.load(path)
            out = restored(img, axcodes, oblique_deg)
            stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else name[: -len(".nii")]
            nib.save(out, target.with_name(stem + ext))
            affines[str(rel.parent / stem.replace(new, old, 1))] = (img.affine, out.affine)
    for path in sorted(src.rglob("*")):
        if not path.is_file() or path.name.endswith((".nii", ".nii.gz")):
            continue
        rel = path.relative_to(src)
        target = dst / rel.parent / rel.name.replace(old, new, 1)
        stem = str(rel.parent / rel.name.split(".")[0])
        pair = affines.get(stem)
        if path.suffix == ".bvec" and pair:
            np.savetxt(target, fsl_bvecs(np.loadtxt(path), *pair), fmt="%.8f")
        elif path.suffix == ".json" and pair:
            meta = json.loads(path.read_text())
            for key in ("PhaseEncodingDirection", "SliceEncodingDirection"):
                if key in meta:
                    meta[key] = encoding_direction(meta[key], *pair)
            target.write_text(json.dumps(meta, indent=2))
        else:
            shutil.copyfile(path, target)
    _copy_participant(bids_dir / "participants.tsv", out_bids / "participants.tsv", old, new)
    if truth_dir is not None:
        tdir = Path(truth_dir) / old
        if tdir.is_dir():
            ndir = Path(truth_dir) / new
            ndir.mkdir(parents=True, exist_ok=True)
            for f in tdir.iterdir():
                shutil.copyfile(f, ndir / f.name.replace(old, new, 1))
    return dst


def _copy_participant(src_tsv: Path, dst_tsv: Path, old: str, new: str) -> None:
    import pandas as pd

    if not src_tsv.is_file():
        return
    table = pd.read_csv(src_tsv, sep="\t", dtype=str, keep_default_na=False)
    rows = table[table["participant_id"] == old].assign(participant_id=new)
    base = pd.read_csv(dst_tsv, sep="\t", dtype=str, keep_default_na=False) if dst_tsv.is_file() else table.iloc[:0]
    base = pd.concat([base[base["participant_id"] != new], rows], ignore_index=True)
    base.to_csv(dst_tsv, sep="\t", index=False)
