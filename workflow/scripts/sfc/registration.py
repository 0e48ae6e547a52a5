"""Image registration and resampling with antspyx (ANTs in Python).

Thin, testable helpers around ``ants.registration`` / ``ants.apply_transforms``:
registration with a fixed seed and centre-of-mass initialisation, transforms
written where the caller wants them, label images resampled with
nearest-neighbour interpolation, and two registration-quality
numbers (normalised mutual information, Dice).

References
----------
Avants BB, Tustison NJ, Song G, et al. (2011) A reproducible evaluation of ANTs
similarity metric performance in brain image registration. NeuroImage 54:2033-2044.
Avants BB, Epstein CL, Grossman M, Gee JC (2008) Symmetric diffeomorphic image
registration with cross-correlation (SyN). Med Image Anal 12:26-41.
Tustison NJ, Avants BB, Cook PA, et al. (2010) N4ITK: improved N3 bias
correction. IEEE Trans Med Imaging 29:1310-1320.
Studholme C, Hill DLG, Hawkes DJ (1999) An overlap invariant entropy measure of
3D medical image alignment. Pattern Recognit 32:71-86.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np

TRANSFORMS = ("Rigid", "Affine", "SyN", "SyNRA", "Translation")

#: Fewer iterations, for tests and quick looks (``quick=True``).
QUICK = {"aff_iterations": (200, 100, 50, 0), "reg_iterations": (20, 10, 0)}


def _ants():
    import ants  # imported lazily: antspyx takes a second to load

    return ants


def load(image):
    """An ``ants.ANTsImage`` from a path, a nibabel image or an ANTsImage."""
    ants = _ants()
    if isinstance(image, ants.ANTsImage):
        return image
    if isinstance(image, (str, os.PathLike)):
        return ants.image_read(os.fspath(image))
    if hasattr(image, "get_fdata") and hasattr(image, "affine"):  # nibabel
        return ants.from_nibabel_nifti(image)
    raise TypeError(f"cannot read an image from {type(image).__name__}")


def load_canonical(path):
    """An input scan as an ``ants.ANTsImage`` in RAS+ voxel order, whatever order it is stored in.

    Scanners and converters store voxels in any order (dcm2niix: often LAS or LPS). The
    registrations' image pyramids (shrink factors) and random metric samples are taken on the
    voxel grid, so the same head stored in two voxel orders was registered from different
    samples: measured on one synthetic subject written as LAS, LPS and RAS, the atlas in T1w
    space agreed between storages at mean Dice 0.90-0.93 (BNA246 / HOA), where two seeds on
    one storage agree at 0.985. Reordered to RAS+ first (``nibabel.as_closest_canonical``: an
    exact permutation and flip of the voxels, the affine moved with them; fMRIPrep conforms its
    inputs the same way), every storage that shares voxel centres gives the same arrays, hence
    the same world transforms. Oblique grids keep their obliquity (no resampling here).
    """
    import tempfile

    import nibabel as nib

    img = nib.load(os.fspath(path))
    canonical = nib.as_closest_canonical(img)
    if canonical is img:  # already RAS+
        return load(path)
    # through a file, as ants.image_read reads every scan (pixel type, units): no second reader
    with tempfile.TemporaryDirectory(prefix="sfc_ras_") as tmp:
        out = os.path.join(tmp, "ras.nii")
        nib.save(canonical, out)
        return load(out)


@contextlib.contextmanager
def _seed(seed: int | None):
    ants = _ants()
    old = ants.config._random_seed
    ants.config._random_seed = None if seed is None else int(seed)
    try:
        yield
    finally:
        ants.config._random_seed = old


def n4(image, mask=None, shrink_factor: int = 4, return_bias_field: bool = False):
    """N4 bias-field correction (Tustison 2010) of a 3-D image.

    Parameters
    ----------
    image : path or image
    mask : path or image, optional
        Region over which the field is estimated (default: ``ants.get_mask``).
    shrink_factor : int
        Down-sampling for the fit (4 is N4's usual choice and dwibiascorrect's).
    return_bias_field : bool
        Return the multiplicative field instead of the corrected image.

    Returns
    -------
    ants.ANTsImage
        Corrected image (or the bias field).
    """
    ants = _ants()
    img = load(image).clone("float")
    m = load(mask) if mask is not None else ants.get_mask(img)
    return ants.n4_bias_field_correction(img, mask=m, shrink_factor=shrink_factor,
                                         return_bias_field=return_bias_field)


def register(fixed, moving, transform: str = "SyN", *, out_prefix=None, seed: int = 42,
             fixed_mask=None, metric: str = "mattes", quick: bool = False, **kwargs) -> dict:
    """Register ``moving`` to ``fixed``; centre-of-mass initialised.

    ``ants.registration`` starts from the alignment of the two images' intensity
    centres of mass (``[fixed,moving,1]``), which is what scans with an origin far
    from the brain (e.g. at voxel 0,0,0) need.

    Parameters
    ----------
    fixed, moving : path or image
    transform : {"Rigid", "Affine", "SyN", "SyNRA", "Translation"}
        ANTs ``type_of_transform``; "Affine" is the fast option, "SyN" (affine + deformable)
        the default for T1w -> template.
    out_prefix : path, optional
        Transforms are copied to ``<out_prefix>0GenericAffine.mat`` (and
        ``<out_prefix>1Warp.nii.gz`` / ``1InverseWarp.nii.gz`` for SyN).
    seed : int
        ANTs ``--random-seed`` (the metric samples points at random).
    fixed_mask : path or image, optional
    metric : str
        Affine-stage metric (``mattes`` = Mattes mutual information, right across contrasts).
    quick : bool
        Fewer iterations (:data:`QUICK`), for tests.
    **kwargs
        Passed to ``ants.registration``.

    Returns
    -------
    dict
        ``fwdtransforms`` (moving -> fixed, for ``apply(moving, fixed, ...)``),
        ``invtransforms`` with ``invert`` flags (fixed -> moving), ``warped`` (moving in fixed space).
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    ants = _ants()
    f, m = load(fixed), load(moving)
    opts = dict(QUICK) if quick else {}
    opts.update(kwargs)
    if fixed_mask is not None:
        opts["mask"] = load(fixed_mask)
    with _seed(seed):
        res = ants.registration(fixed=f, moving=m, type_of_transform=transform, aff_metric=metric, **opts)
    fwd, inv = list(res["fwdtransforms"]), list(res["invtransforms"])
    if out_prefix is not None:
        out_prefix = os.fspath(out_prefix)
        Path(out_prefix).parent.mkdir(parents=True, exist_ok=True)
        mapping = {}
        for path in set(fwd) | set(inv):
            if path.endswith(".mat"):
                dest = f"{out_prefix}0GenericAffine.mat"
            elif path.endswith("InverseWarp.nii.gz"):
                dest = f"{out_prefix}1InverseWarp.nii.gz"
            else:
                dest = f"{out_prefix}1Warp.nii.gz"
            shutil.copyfile(path, dest)
            mapping[path] = dest
        fwd = [mapping[p] for p in fwd]
        inv = [mapping[p] for p in inv]
    return {"fwdtransforms": fwd, "invtransforms": inv, "invert": inverse_flags(inv),
            "warped": res["warpedmovout"]}


def inverse_flags(invtransforms) -> list[bool]:
    """``whichtoinvert`` for ANTs' ``invtransforms``: affine matrices inverted, warps not."""
    return [os.fspath(t).endswith(".mat") for t in invtransforms]


def transforms_from_prefix(prefix, inverse: bool = False) -> tuple[list[str], list[bool]]:
    """Transform list written by :func:`register` with ``out_prefix``.

    Returns ``(transformlist, whichtoinvert)`` for the forward (moving -> fixed) or
    inverse (fixed -> moving) direction; works for affine-only and SyN registrations.
    """
    prefix = os.fspath(prefix)
    affine = f"{prefix}0GenericAffine.mat"
    warp, iwarp = f"{prefix}1Warp.nii.gz", f"{prefix}1InverseWarp.nii.gz"
    has_warp = Path(warp).exists()
    if not inverse:
        return ([warp, affine], [False, False]) if has_warp else ([affine], [False])
    return ([affine, iwarp], [True, False]) if has_warp else ([affine], [True])


def identity_warp(reference, path) -> str:
    """Write a zero displacement field on ``reference``'s grid (an identity ``1Warp`` / ``1InverseWarp``)."""
    ants = _ants()
    ref = load(reference)
    zero = np.zeros(tuple(ref.shape[:3]) + (3,), dtype="float32")
    field = ants.from_numpy(zero, origin=ref.origin, spacing=ref.spacing, direction=ref.direction,
                            has_components=True)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    field.to_filename(os.fspath(path))
    return os.fspath(path)


def apply(image, reference, transforms, invert=None, interpolator: str = "linear"):
    """Resample ``image`` into ``reference`` space through ``transforms`` (ANTs order).

    Parameters
    ----------
    image, reference : path or image
    transforms : list of path
        As ``ants.apply_transforms``' ``transformlist``: the first one is applied last.
    invert : list of bool, optional
        ``whichtoinvert``.
    interpolator : str
        ``linear`` for intensities; ``nearestNeighbor`` for label images.
    """
    ants = _ants()
    img, ref = load(image), load(reference)
    if img.pixeltype != "float":
        img = img.clone("float")
    return ants.apply_transforms(fixed=ref, moving=img, transformlist=[os.fspath(t) for t in transforms],
                                 whichtoinvert=invert, interpolator=interpolator)


def apply_labels(labels, reference, transforms, invert=None):
    """Resample a label image with nearest-neighbour interpolation (labels stay integers from the input set).

    Nearest neighbour rather than ANTs' ``genericLabel``: the latter smooths every label
    separately and took 50-140 s per atlas onto a 1.5 mm T1w grid (BNA246), against a few
    seconds here, with the same label set.

    Returns
    -------
    ants.ANTsImage
        Integer-valued label image on the reference grid (0 outside).
    """
    out = apply(labels, reference, transforms, invert, interpolator="nearestNeighbor")
    return out.new_image_like(np.rint(out.numpy()).astype("float32"))


def to_nibabel(image, dtype=None):
    """An ANTsImage as a nibabel ``Nifti1Image`` (optionally cast, e.g. ``np.int16`` for labels)."""
    import nibabel as nib

    ants = _ants()
    img = load(image)
    nii = ants.to_nibabel_nifti(img)
    if dtype is not None:
        nii = nib.Nifti1Image(np.asarray(nii.dataobj).astype(dtype), nii.affine)
    return nii


def save(image, path, dtype=None) -> str:
    """Write an ANTsImage (or nibabel image) as NIfTI; returns the path."""
    import nibabel as nib

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, nib.Nifti1Image) and dtype is None:
        nib.save(image, os.fspath(path))
    elif dtype is None:
        load(image).to_filename(os.fspath(path))
    else:
        nii = image if isinstance(image, nib.Nifti1Image) else to_nibabel(image)
        out = nib.Nifti1Image(np.asarray(nii.dataobj).astype(dtype), nii.affine)
        out.set_qform(nii.affine, code=1)
        out.set_sform(nii.affine, code=1)
        nib.save(out, os.fspath(path))
    return os.fspath(path)


def normalized_mutual_information(a, b, mask=None, bins: int = 32) -> float:
    """Normalised mutual information ``(H(A) + H(B)) / H(A, B)`` (Studholme 1999).

    2 for identical images, about 1 for unrelated ones; higher is better aligned.

    Parameters
    ----------
    a, b : array-like or image on the same grid
    mask : array-like of bool, optional
        Voxels to use (default: where either image is non-zero).
    bins : int
        Histogram bins per image.
    """
    x = np.asarray(load(a).numpy() if not isinstance(a, np.ndarray) else a, dtype=float)
    y = np.asarray(load(b).numpy() if not isinstance(b, np.ndarray) else b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} vs {y.shape}")
    sel = np.asarray(mask, dtype=bool) if mask is not None else (x != 0) | (y != 0)
    x, y = x[sel], y[sel]
    if x.size == 0:
        return float("nan")
    joint, _, _ = np.histogram2d(x, y, bins=bins)
    p = joint / joint.sum()

    def entropy(q):
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    hxy = entropy(p.ravel())
    return (entropy(p.sum(axis=1)) + entropy(p.sum(axis=0))) / hxy if hxy > 0 else 2.0


def dice(a, b) -> float:
    """Dice overlap ``2|A and B| / (|A| + |B|)`` of two binary masks (arrays or images)."""
    x = np.asarray(load(a).numpy() if not isinstance(a, np.ndarray) else a) > 0
    y = np.asarray(load(b).numpy() if not isinstance(b, np.ndarray) else b) > 0
    denom = x.sum() + y.sum()
    return float(2.0 * np.logical_and(x, y).sum() / denom) if denom else float("nan")


# --- is a rigid registration where a second, independent start lands? --------------------------

#: A rigid registration is flagged as doubtful when a second start, 4 mm and 4 degrees away
#: from the first start, converges more than this far from it (mean displacement over the brain,
#: mm). Calibrated on the synthetic truth (demo-sized subject, 2.5 mm DWI, stored LAS, LPS, RAS
#: and oblique): the two starts agree within 0.03-0.11 mm (T1w -> DWI and BOLD -> T1w); a
#: T1w -> DWI transform moved deliberately by 1, 1.5, 2 and 3 mm lowers the atlas-in-DWI Dice
#: against the truth by 0.005-0.007, 0.02, 0.035 and 0.07-0.09 (HOA, BNA246; 2 mm already takes
#: BNA246 below the demo's floor), and the second start reports those poses 1.01 and 2.01 mm away.
#: 1 mm flags an error once it starts to cost Dice, ten times above the seen disagreement.
DOUBTFUL_MM = 1.0


def rotation_matrix(angles) -> np.ndarray:
    """``Rz(g) @ Ry(b) @ Rx(a)`` for ``angles = (a, b, g)`` in radians (``sfc.func.euler_angles`` inverts it)."""
    a, b, g = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(g), -np.sin(g), 0], [np.sin(g), np.cos(g), 0], [0, 0, 1]])
    return rz @ ry @ rx


def rigid_points(transform, points_lps) -> np.ndarray:
    """Apply an ITK rigid/affine transform file (``0GenericAffine.mat``) to ITK (LPS) points (N x 3)."""
    ants = _ants()
    tx = ants.read_transform(os.fspath(transform))
    p = np.asarray(tx.parameters, float)
    matrix, translation = p[:9].reshape(3, 3), p[9:12]
    centre = np.asarray(tx.fixed_parameters, float)[:3]
    return (np.asarray(points_lps, float) - centre) @ matrix.T + centre + translation


def mask_points(mask, step: int = 2) -> np.ndarray:
    """ITK physical (LPS) coordinates of every ``step``-th voxel inside ``mask`` (N x 3)."""
    m = load(mask)
    ijk = np.argwhere(m.numpy() > 0)[::step].astype(float)
    direction = np.asarray(m.direction, float)
    return ijk * np.asarray(m.spacing, float) @ direction.T + np.asarray(m.origin, float)


def transform_distance(a, b, mask) -> float:
    """Mean displacement (mm) between two rigid/affine transforms over the voxels of ``mask``."""
    pts = mask_points(mask)
    return float(np.linalg.norm(rigid_points(a, pts) - rigid_points(b, pts), axis=1).mean())


def second_start(fixed, moving, transform, *, distance_mask, seed: int = 42, offset_mm: float = 4.0,
                 rotation_deg: float = 4.0, **register_kwargs) -> dict:
    """Register again from a second start and say how far the result lands from ``transform``.

    The first registration (:func:`register`) starts from the centres of mass. The second
    starts ``offset_mm`` and ``rotation_deg`` away from that (about every axis), with another
    seed: a well-posed registration converges to the same pose from both (fMRIPrep and QSIPrep
    check their EPI -> T1w step in the same spirit), while one that sits in a local optimum, or
    a transform that is simply wrong, gives a distance of millimetres. ``register_kwargs``
    (``fixed_mask``, ``metric``, ...) must be those of the first registration.

    Returns
    -------
    dict
        ``second_start_mm``: mean displacement over ``distance_mask`` (fixed space) between ``transform`` and the
        second start's result; ``doubtful``: whether it exceeds :data:`DOUBTFUL_MM`.
    """
    import tempfile

    ants = _ants()
    f, m = load(fixed), load(moving)
    fixed_com = np.asarray(ants.get_center_of_mass(f), float)
    moving_com = np.asarray(ants.get_center_of_mass(m), float)
    start = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                       matrix=rotation_matrix(np.deg2rad([rotation_deg] * 3)), center=fixed_com,
                                       translation=moving_com - fixed_com + offset_mm / np.sqrt(3))
    with tempfile.TemporaryDirectory(prefix="sfc_start2_") as tmp:
        init = os.path.join(tmp, "start.mat")
        ants.write_transform(start, init)
        res = register(f, m, "Rigid", out_prefix=os.path.join(tmp, "second_"), seed=int(seed) + 1,
                       initial_transform=[init], **register_kwargs)
        distance = transform_distance(transform, res["fwdtransforms"][0], distance_mask)
    return {"second_start_mm": distance, "doubtful": bool(distance > DOUBTFUL_MM)}
