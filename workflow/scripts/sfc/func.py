"""Resting-state BOLD: motion correction, coregistration, denoising, parcellation, FC, QC.

Two routes meet in :func:`connectivity`:

- built-in (raw BIDS): :func:`load_bold` -> :func:`drop_dummy_volumes` ->
  :func:`motion_correct` (per-volume rigid registration to the mean volume,
  antspyx) -> :func:`coregister_to_t1w` (rigid, mutual information) ->
  :func:`atlas_to_bold` (atlas and tissue labels brought into the BOLD grid
  through the inverse of BOLD->T1w composed with the anat stage's
  T1w->MNI transforms) -> :func:`tissue_signals` (WM, CSF, global) ->
  :func:`sfc.confounds.confounds_table`;
- fMRIPrep: :mod:`sfc.fmriprep` finds the MNI-space BOLD and reads its
  confounds with nilearn's loaders.

Then, per atlas: raw region means with nilearn's ``NiftiLabelsMasker``
(:func:`region_signals`, full label-table order, NaN for regions without
voxels or without variance), nuisance regression + detrending + band-pass +
scrubbing in one step with :func:`nilearn.signal.clean` (:func:`clean_signals`;
confounds are filtered with the data, Lindquist et al. 2019; censored volumes
are interpolated before filtering and dropped after, Power et al. 2014), and
Pearson FC (:func:`correlation_matrix`; diagonal 1, NaN rows/columns for
missing regions).

FC diagonal: 1 (r of a region with itself) for every region with signal;
rows and columns of regions without voxels or variance are NaN (``n/a`` in
the TSV), never 0.

Why atlases go to the BOLD grid (not BOLD to MNI) on the built-in route: one
label resampling per atlas (nearest-label, no intensity interpolation) instead
of resampling every BOLD volume; the BOLD keeps its native resolution and is
interpolated only once (motion correction); memory stays at the native 4-D
size. The fMRIPrep route's BOLD is already in MNI space and the atlas is
resampled to its grid the same way.

References
----------
Power JD et al. (2012) NeuroImage 59:2142-2154; Power JD et al. (2014)
    NeuroImage 84:320-341 (FD, scrubbing, interpolation of censored volumes).
Lindquist MA et al. (2019) Modular preprocessing pipelines can reintroduce
    artifacts into fMRI data. Hum Brain Mapp 40:2358-2376.
Parkes L et al. (2018) An evaluation of the efficacy, reliability, and
    sensitivity of motion correction strategies for resting-state functional
    MRI. NeuroImage 171:415-436 (exclusion criteria).
Bright MG, Murphy K (2015) Is fMRI "noise" really noise? Resting state nuisance
    regressors remove variance with network structure. NeuroImage 114:158-169.
Power JD (2017) A simple but useful way to assess fMRI scan qualities.
    NeuroImage 154:150-158 (carpet plot).
Avants BB et al. (2011) NeuroImage 54:2033-2044 (ANTs registration).
Abraham A et al. (2014) Machine learning for neuroimaging with scikit-learn.
    Front Neuroinform 8:14 (nilearn).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from . import confounds as conf
from .errors import InputError
from .io import repetition_time_problem

log = logging.getLogger("sfc")


class RegionWarning(UserWarning):
    """A region without voxels or without variance: its FC row and column are NaN."""


# --- inputs ----------------------------------------------------------------------------

def sidecar_path(bold_path) -> Path:
    """The BIDS JSON sidecar next to a BOLD image (``*_bold.nii.gz`` -> ``*_bold.json``)."""
    name = os.fspath(bold_path)
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return Path(name[: -len(ext)] + ".json")
    return Path(name + ".json")


def repetition_time(bold_path, sidecar=None) -> float:
    """RepetitionTime (s) from the BOLD's JSON sidecar (BIDS: the sidecar, not the header, is authoritative).

    Raises
    ------
    InputError
        If the sidecar is missing, unreadable, or has no positive ``RepetitionTime``.
    """
    sidecar = Path(sidecar) if sidecar else sidecar_path(bold_path)
    fix = (f"add \"RepetitionTime\": <seconds> to {sidecar.name} (BIDS requires it), "
           "or leave this subject out of participants.tsv")
    if not sidecar.is_file():
        raise InputError(bold_path, f"no JSON sidecar ({sidecar.name}) giving the RepetitionTime", fix)
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(sidecar, f"cannot be read as JSON ({exc})", "repair the JSON sidecar") from None
    tr = meta.get("RepetitionTime")
    problem = repetition_time_problem(tr)
    if problem:
        raise InputError(sidecar, problem, fix if "milliseconds" not in problem else "write it in seconds (BIDS)")
    return float(tr)


def load_bold(path, min_volumes: int = 3) -> nib.Nifti1Image:
    """Read a BOLD series and check that it is a 4-D time series.

    Raises
    ------
    InputError
        If the file cannot be read, is 3-D (a single volume), or has fewer
        than ``min_volumes`` volumes.
    """
    path = Path(path)
    try:
        img = nib.load(os.fspath(path))
    except FileNotFoundError:
        raise InputError(path, "BOLD image not found", "check bids_dir / the fMRIPrep folder") from None
    except Exception as exc:  # nibabel raises several types for broken files
        raise InputError(path, f"cannot be read as NIfTI ({exc})", "replace the file with a valid NIfTI") from None
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1 or len(shape) == 3:
        raise InputError(path, f"is a 3-D image ({'x'.join(map(str, shape[:3]))}, one volume), not a BOLD "
                               "time series", "give the 4-D resting-state series (one volume per TR), "
                                              "e.g. re-convert the DICOMs with dcm2niix")
    if len(shape) != 4:
        raise InputError(path, f"has {len(shape)} dimensions {shape}", "give a 4-D BOLD series (x, y, z, time)")
    if shape[3] < min_volumes:
        raise InputError(path, f"has only {shape[3]} volumes", f"give a series of at least {min_volumes} volumes")
    return img


def check_finite(img, path) -> None:
    """Stop on NaN or Inf voxel values (ANTs' motion correction would fail with "fixed image has
    NaNs", and any later step would spread them): the file, how many, and the fix."""
    data = np.asanyarray(img.dataobj)
    if np.issubdtype(data.dtype, np.floating):
        bad = ~np.isfinite(data)
        if bad.any():
            volumes = int(bad.reshape(-1, bad.shape[-1]).any(axis=0).sum()) if data.ndim == 4 else 1
            raise InputError(path, f"has {int(bad.sum()):,} NaN or infinite voxel values in {volumes} "
                             "volume(s)", "re-export the series, or set those voxels to 0 (e.g. "
                             "fslmaths in -nan out) and keep the subject")


def drop_dummy_volumes(img, n: int, path=None) -> nib.Nifti1Image:
    """Discard the first ``n`` volumes (before the magnetisation reaches steady state)."""
    n = int(n or 0)
    if n == 0:
        return img
    if n >= img.shape[3] - 2:
        raise InputError(path, f"has {img.shape[3]} volumes; discarding {n} dummy volumes leaves too few",
                         "lower func.dummy_volumes in the config")
    return img.slicer[..., n:]


def mean_volume(img) -> nib.Nifti1Image:
    data = np.asarray(img.dataobj, dtype=np.float32).mean(axis=3)
    return nib.Nifti1Image(data, img.affine)


# --- motion correction ---------------------------------------------------------------------

@contextlib.contextmanager
def _ants_seed(seed):
    import ants

    old = ants.config._random_seed
    ants.config._random_seed = None if seed is None else int(seed)
    try:
        yield
    finally:
        ants.config._random_seed = old


def _to_ants(img):
    """nibabel image, path or ANTsImage -> float ANTsImage (antspyx 0.6.3: ``from_nibabel_nifti``)."""
    import ants

    if isinstance(img, ants.ANTsImage):
        return img
    if isinstance(img, (str, os.PathLike)):
        return ants.image_read(os.fspath(img), pixeltype="float")
    nii = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine)
    nii.header.set_xyzt_units("mm", "sec")  # else ITK prints a warning per volume
    return ants.from_nibabel_nifti(nii)


def _to_nib(img) -> nib.Nifti1Image:
    """ANTsImage -> nibabel image (same voxel order and affine)."""
    import ants

    return ants.to_nibabel_nifti(img)


LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def euler_angles(rotation) -> np.ndarray:
    """Angles (rad) about x, y, z of ``R = Rz(g) @ Ry(b) @ Rx(a)`` (inverse of ``registration.rotation_matrix``)."""
    r = np.asarray(rotation, float)
    a = np.arctan2(r[2, 1], r[2, 2])
    b = -np.arcsin(np.clip(r[2, 0], -1, 1))
    g = np.arctan2(r[1, 0], r[0, 0])
    return np.array([a, b, g])


def rigid_parameters(matrix, translation, center, origin) -> np.ndarray:
    """Six motion parameters, in the MCFLIRT / fMRIPrep sense, from an ITK rigid transform.

    Registering volume ``t`` (moving) to the reference (fixed), ITK returns
    ``T(x) = A (x - c) + c + t`` (LPS): the point of volume ``t`` that shows
    the head content found at reference point ``x``. The motion parameters
    describe the inverse, ``M = T^-1``, the transform *from volume t to the
    reference* (what MCFLIRT estimates and fMRIPrep reports): volume ``t``
    at scanner point ``y`` shows the reference content at
    ``M y = R (y - o) + o + d``, with ``o`` the rotation centre (the grid
    centre, :func:`grid_centre`), in RAS scanner coordinates. This is also
    the convention of the synthetic generator (:mod:`sfc.simulate.images`).

    Parameters
    ----------
    matrix : array (9,) or (3, 3)
        ITK matrix ``A`` (LPS).
    translation, center : array (3,)
        ITK translation ``t`` and fixed parameters (centre ``c``), LPS mm.
    origin : array (3,)
        Rotation centre ``o`` in RAS mm.

    Returns
    -------
    numpy.ndarray, shape (6,)
        ``trans_x, trans_y, trans_z`` (mm, RAS) and ``rot_x, rot_y, rot_z``
        (rad; ``R = Rz Ry Rx``, :func:`sfc.registration.rotation_matrix`).
    """
    a = np.asarray(matrix, float).reshape(3, 3)
    c = np.asarray(center, float)
    fwd = np.eye(4)  # T in RAS: x_ras -> S (A (S x_ras - c) + c + t)
    fwd[:3, :3] = LPS_TO_RAS @ a @ LPS_TO_RAS
    fwd[:3, 3] = LPS_TO_RAS @ (c - a @ c + np.asarray(translation, float))
    m = np.linalg.inv(fwd)
    r = m[:3, :3]
    o = np.asarray(origin, float)
    d = m[:3, 3] - o + r @ o
    return np.concatenate([d, euler_angles(r)])


def grid_centre(img) -> np.ndarray:
    """World (RAS, mm) coordinates of the centre of an image's voxel grid."""
    centre = (np.asarray(img.shape[:3]) - 1) / 2.0
    return img.affine[:3, :3] @ centre + img.affine[:3, 3]


@dataclass
class MotionCorrection:
    corrected: nib.Nifti1Image
    reference: nib.Nifti1Image
    parameters: pd.DataFrame  # trans_x..rot_z per volume
    fd: np.ndarray


def motion_correct(img, reference=None, seed: int = 42, fd_radius: float = 50.0,
                   iterations=(40, 5), metric: str = "meansquares", sampling: float = 0.3,
                   mask="auto", min_points: int = 2000) -> MotionCorrection:
    """Head-motion correction by rigid registration of every volume to a reference.

    Each volume is registered to the reference (the temporal mean by
    default) with antspyx (rigid; two levels, shrink 2 and 1, smoothing 1 and
    0 voxels, identity start; mean-squares metric on 30 % of the voxels inside
    a head mask, as the contrast does not change within a run: on a synthetic
    head it gave rotations within 0.0023 rad where Mattes MI at 20 % gave
    0.0053 rad, at the same cost) and resampled once, linearly, onto the
    reference grid. The cost is set by the number of metric points at full
    resolution, plus ~0.045 s per call whatever the schedule; the accuracy on
    small rotations by the sample size, not the iterations. On demo subjects
    (4 mm, 150 volumes, seed 20260127) 40x5 iterations at 30 % took 0.26 s per
    volume with per-parameter correlations with the true motion of 0.948-0.999,
    as 40x10 at 30 % (0.32 s). 20 % or 15 % saved 0.08-0.1 s per volume but
    fell to r 0.81-0.90 on rotations of ~0.1 degree (sd 0.0015 rad), depending on
    the seed, as the random sample then decides much.
    (ANTs' ``BOLDRigid`` schedule, 100x20 over the whole field of view, took
    0.89 s.) Motion parameters follow the fMRIPrep/MCFLIRT naming;
    rotations are about the centre of the image grid (:func:`rigid_parameters`).

    Parameters
    ----------
    img : nibabel.Nifti1Image
        4-D BOLD (after dummy volumes are dropped).
    reference : nibabel.Nifti1Image, optional
        3-D target on the same grid; default the mean volume.
    seed : int
        ANTs random seed (the metric samples voxels at random).
    fd_radius : float
        Head radius for FD (mm).
    iterations : tuple of int
        Iterations per resolution level (shrink 2, then 1).
    metric : str
        ANTs affine-stage metric (``meansquares``, ``mattes``, ``GC``).
    sampling : float
        Fraction of voxels the metric samples (random, seeded), raised so that at
        least ``min_points`` voxels of the mask are sampled.
    min_points : int
        Fewest metric samples per registration.
    mask : "auto", image or None
        Where the metric samples: "auto" is the reference's head mask
        (``ants.get_mask``) dilated by one voxel; None the whole field of view.

    Returns
    -------
    MotionCorrection
        ``corrected`` 4-D image, ``reference``, ``parameters`` (T x 6 table)
        and ``fd`` (Power 2012, FD[0] = 0).
    """
    import ants

    reference = mean_volume(img) if reference is None else reference
    ref = _to_ants(reference)
    origin = grid_centre(reference)
    data = np.asarray(img.dataobj, dtype=np.float32)
    n = data.shape[3]
    out = np.empty_like(data)
    params = np.zeros((n, 6))
    if isinstance(mask, str) and mask == "auto":
        mask = ants.iMath(ants.get_mask(ref), "MD", 1)
    mask_opt = {} if mask is None else {"mask": _to_ants(mask) if isinstance(mask, nib.Nifti1Image) else mask}
    # at least min_points metric samples: a small head (or a coarse grid) at 15-20 % leaves too
    # few for the few full-resolution iterations (unit test head, ~5,000 voxels: 0.014 rad off at
    # 15 %, 0.0026 at 40 %); the demo's 4 mm BOLD has ~38,000 mask voxels, so the rate given is kept
    n_points = int(np.prod(ref.shape)) if mask is None else int(np.count_nonzero(mask_opt["mask"].numpy()))
    sampling = float(min(1.0, max(sampling, min_points / max(n_points, 1))))
    with tempfile.TemporaryDirectory(prefix="sfc_mc_") as tmp, _ants_seed(seed):
        for k in range(n):
            vol = _to_ants(nib.Nifti1Image(data[..., k], img.affine))
            if not np.any(data[..., k]):
                out[..., k] = data[..., k]
                continue
            reg = ants.registration(fixed=ref, moving=vol, type_of_transform="Rigid",
                                    initial_transform="Identity", aff_iterations=tuple(iterations),
                                    aff_shrink_factors=(2, 1), aff_smoothing_sigmas=(1, 0),
                                    aff_metric=metric, aff_random_sampling_rate=sampling,
                                    outprefix=os.path.join(tmp, f"v{k:05d}_"), **mask_opt)
            tx = ants.read_transform(reg["fwdtransforms"][0])
            p = np.asarray(tx.parameters, float)
            params[k] = rigid_parameters(p[:9], p[9:12], tx.fixed_parameters, origin)
            warped = ants.apply_transforms(fixed=ref, moving=vol, transformlist=reg["fwdtransforms"],
                                           interpolator="linear")
            out[..., k] = warped.numpy()
    table = pd.DataFrame(params, columns=conf.TRANSLATIONS + conf.ROTATIONS)[conf.MOTION_COLUMNS]
    corrected = nib.Nifti1Image(out, img.affine, img.header)
    corrected.set_data_dtype(np.float32)
    return MotionCorrection(corrected, reference, table, conf.framewise_displacement(table, fd_radius))


# --- coregistration and labels in BOLD space --------------------------------------------------

def coregister_to_t1w(bold_reference, t1w, out_prefix, seed: int = 42, t1w_mask=None) -> list[str]:
    """Rigid BOLD->T1w registration (antspyx, Mattes mutual information, centre-of-mass start).

    Parameters
    ----------
    bold_reference : nibabel image or path
        The motion-correction reference (mean BOLD).
    t1w : nibabel image or path
        The subject's (bias-corrected, preferably skull-stripped) T1w.
    out_prefix : path
        The transform is written to ``<out_prefix>0GenericAffine.mat``.
    t1w_mask : optional
        Brain mask restricting the metric in T1w space.

    Returns
    -------
    list of str
        ``[<out_prefix>0GenericAffine.mat]``: maps T1w points to BOLD points
        (ITK fixed->moving), i.e. resamples BOLD onto T1w; use it with
        ``invert=True`` to bring T1w-space images onto the BOLD grid.
    """
    from . import registration

    res = registration.register(_to_ants(t1w), _to_ants(bold_reference), transform="Rigid",
                                out_prefix=out_prefix, seed=seed,
                                fixed_mask=None if t1w_mask is None else _to_ants(t1w_mask))
    return res["fwdtransforms"]


def check_coregistration(bold_reference, t1w, transform, seed: int = 42, t1w_mask=None) -> dict:
    """:func:`sfc.registration.second_start` for :func:`coregister_to_t1w`'s result (same metric and mask).

    Returns the QC row ``{"bold_t1w_second_start_mm", "bold_t1w_registration_doubtful"}``: the distance (mm, over
    the T1w brain mask) between the BOLD -> T1w transform and a second start's.
    """
    from . import registration

    fixed = _to_ants(t1w)
    mask = _to_ants(t1w_mask) if t1w_mask is not None else registration._ants().get_mask(fixed)
    res = registration.second_start(fixed, _to_ants(bold_reference), transform, distance_mask=mask, seed=seed,
                                    fixed_mask=None if t1w_mask is None else mask)
    if res["doubtful"]:
        log.warning("BOLD -> T1w registration doubtful: a second start converged %.2f mm away (threshold %.1f mm)",
                    res["second_start_mm"], registration.DOUBTFUL_MM)
    return {"bold_t1w_second_start_mm": res["second_start_mm"], "bold_t1w_registration_doubtful": res["doubtful"]}


def atlas_to_bold(labels, bold_reference, bold_to_t1w, t1w_from_template=(), t1w_from_template_invert=()):
    """Bring a label image (atlas in MNI, or a T1w segmentation) onto the BOLD grid.

    The chain, as ANTs lists it (last applied to the image first):
    ``[BOLD->T1w (inverted)] + t1w_from_template``.

    Parameters
    ----------
    labels : nibabel image or path
        Integer label image (atlas in template space, or dseg in T1w space).
    bold_reference : nibabel image or path
        The BOLD grid (mean BOLD).
    bold_to_t1w : list of path
        From :func:`coregister_to_t1w`.
    t1w_from_template : list of path
        The anat stage's template->T1w transforms (``transforms_from_prefix(prefix, inverse=True)``),
        empty when ``labels`` is already in T1w space.
    t1w_from_template_invert : list of bool
        Their ``whichtoinvert`` flags.

    Returns
    -------
    nibabel.Nifti1Image of int32 on the BOLD grid (nearest-neighbour interpolation).
    """
    from . import registration

    ref, lab = _to_ants(bold_reference), _to_ants(labels)
    transforms = [os.fspath(t) for t in bold_to_t1w] + [os.fspath(t) for t in t1w_from_template]
    invert = [True] * len(bold_to_t1w) + list(t1w_from_template_invert or [False] * len(t1w_from_template))
    nii = _to_nib(registration.apply_labels(lab, ref, transforms, invert))
    return nib.Nifti1Image(np.rint(np.asarray(nii.dataobj)).astype(np.int32), nii.affine)


def register_template_to_bold(template, bold_reference, seed: int = 42) -> list[str]:
    """Affine template->BOLD registration (antspyx, centre-of-mass start) for BOLD without a T1w.

    Used for already-preprocessed scans in scanner space (e.g. the real
    15-volume FEAT output in the tests): a 12-parameter affine maps the MNI
    template onto the mean BOLD. Coarse (no non-linear step): good enough to
    place atlas regions for a smoke test, not for a study.

    Returns
    -------
    list of str
        Forward transforms (BOLD points -> template points); pass them to
        ``registration.apply_labels(atlas, bold_reference, transforms)``.
    """
    from . import registration

    res = registration.register(_to_ants(bold_reference), _to_ants(template), transform="Affine", seed=seed)
    return res["fwdtransforms"]


def dseg_from_5tt(five_tt) -> nib.Nifti1Image:
    """A 3-class label image (1 CSF, 2 GM, 3 WM, 0 outside) from a 5TT image (Smith 2012).

    5TT volumes (MRtrix3 order): 0 cortical GM, 1 sub-cortical GM, 2 WM, 3 CSF,
    4 pathology. Each brain voxel takes the class of highest probability
    (cortical and sub-cortical GM summed); voxels where all volumes are 0 are
    background. A 3-D input is returned unchanged (already a label image).
    """
    img = nib.load(os.fspath(five_tt)) if isinstance(five_tt, (str, os.PathLike)) else five_tt
    if len(img.shape) == 3:
        return img
    if len(img.shape) != 4 or img.shape[3] < 4:
        raise InputError(getattr(img, "get_filename", lambda: None)(),
                         f"tissue image has shape {img.shape}, neither a 3-D label image nor a 5TT image",
                         "give the anat stage's 5TT image or a dseg (1 CSF, 2 GM, 3 WM)")
    p = np.asarray(img.dataobj, dtype=np.float32)
    classes = np.stack([p[..., 3], p[..., 0] + p[..., 1], p[..., 2]], axis=-1)  # CSF, GM, WM
    labels = (np.argmax(classes, axis=-1) + 1).astype(np.int16)
    labels[classes.sum(axis=-1) <= 0] = 0
    return nib.Nifti1Image(labels, img.affine)


def tissue_signals(bold_img, dseg_bold, wm_labels=(3,), csf_labels=(1,), erode_wm: int = 1):
    """Mean WM, CSF and global (whole-brain) signals per volume.

    Parameters
    ----------
    bold_img : nibabel.Nifti1Image (4-D)
    dseg_bold : nibabel.Nifti1Image
        Tissue segmentation on the BOLD grid (:func:`atlas_to_bold`), 0 = outside the brain.
    wm_labels, csf_labels : tuple of int
        Label values (default: Atropos' 3-class order CSF=1, GM=2, WM=3).
    erode_wm : int
        Binary erosion steps of the WM mask (less grey-matter partial volume);
        skipped if it would leave fewer than 10 voxels.

    Returns
    -------
    dict
        ``white_matter``, ``csf``, ``global_signal``: arrays of shape (T,).

    Raises
    ------
    InputError
        If a tissue mask is empty in BOLD space.
    """
    from scipy import ndimage

    seg = np.rint(np.asarray(dseg_bold.dataobj)).astype(int)
    data = np.asarray(bold_img.dataobj, dtype=np.float32)
    if seg.shape != data.shape[:3]:
        raise ValueError(f"segmentation grid {seg.shape} differs from BOLD grid {data.shape[:3]}")
    wm = np.isin(seg, wm_labels)
    if erode_wm:
        eroded = ndimage.binary_erosion(wm, iterations=int(erode_wm))
        if eroded.sum() >= 10:
            wm = eroded
    masks = {"white_matter": wm, "csf": np.isin(seg, csf_labels), "global_signal": seg > 0}
    out = {}
    for name, mask in masks.items():
        if not mask.any():
            raise InputError(None, f"the {name.replace('_', ' ')} mask has no voxel on the BOLD grid",
                             "check the T1w segmentation and the BOLD->T1w registration (sub-*/qc)")
        out[name] = data[mask].mean(axis=0).astype(float)
    return out


@dataclass
class Preprocessed:
    corrected: nib.Nifti1Image  # motion-corrected BOLD on the reference grid
    reference: nib.Nifti1Image  # mean BOLD (motion-correction target)
    confounds: pd.DataFrame  # fMRIPrep-named columns, one row per kept-after-dummy volume
    dseg: nib.Nifti1Image  # T1w tissue segmentation on the BOLD grid
    bold_to_t1w: list  # transform files (see coregister_to_t1w)
    registration_check: dict = field(default_factory=dict)  # check_coregistration's QC row


def preprocess(bold_path, t1w, dseg, xfm_prefix, dummy_volumes: int = 0, seed: int = 42,
               wm_labels=(3,), csf_labels=(1,), fd_radius: float = 50.0, t1w_mask=None) -> Preprocessed:
    """The built-in route for one raw BOLD run.

    Dummy volumes dropped, head motion corrected (:func:`motion_correct`),
    the mean BOLD registered rigidly to the T1w (:func:`coregister_to_t1w`),
    the T1w segmentation brought onto the BOLD grid, and the confounds table
    built (:func:`sfc.confounds.confounds_table`: 6 motion parameters, WM,
    CSF and global signals, their expansions, FD).

    Parameters
    ----------
    bold_path : path
        Raw 4-D BOLD.
    t1w : path or image
        The anat stage's preprocessed (bias-corrected, skull-stripped) T1w.
    dseg : path or image
        The anat stage's tissue image in T1w space: a 5TT image (converted by
        :func:`dseg_from_5tt`) or a label image (0 background).
    xfm_prefix : path
        Where the BOLD->T1w transform goes (``<prefix>0GenericAffine.mat``).
    dummy_volumes : int
        Volumes to discard at the start.
    seed : int
    wm_labels, csf_labels : tuple of int
        Segmentation labels of WM and CSF.
    fd_radius : float
    t1w_mask : optional
        Brain mask for the coregistration metric.
    """
    # RAS+ voxel order (an exact reordering): motion correction and the BOLD -> T1w registration
    # then see the same arrays for any storage of the scan (registration.load_canonical)
    img = drop_dummy_volumes(nib.as_closest_canonical(load_bold(bold_path)), dummy_volumes, bold_path)
    check_finite(img, bold_path)
    log.info("%s: %d volumes after dropping %d dummy volume(s)", bold_path, img.shape[3], dummy_volumes)
    mc = motion_correct(img, seed=seed, fd_radius=fd_radius)
    log.info("motion: mean FD %.3f mm, max %.3f mm", mc.fd[1:].mean() if len(mc.fd) > 1 else 0, mc.fd.max())
    xfm = coregister_to_t1w(mc.reference, t1w, xfm_prefix, seed=seed, t1w_mask=t1w_mask)
    check = check_coregistration(mc.reference, t1w, xfm[0], seed=seed, t1w_mask=t1w_mask)
    dseg_bold = atlas_to_bold(dseg_from_5tt(dseg), mc.reference, xfm)
    tissue = tissue_signals(mc.corrected, dseg_bold, wm_labels=wm_labels, csf_labels=csf_labels)
    table = conf.confounds_table(mc.parameters, fd_radius=fd_radius, **tissue)
    return Preprocessed(mc.corrected, mc.reference, table, dseg_bold, xfm, check)


# --- parcellation -------------------------------------------------------------------------------

def region_signals(bold_img, labels_img, label_values, mask_img=None, name: str = "atlas"):
    """Mean signal of every atlas region, in label-table order (NiftiLabelsMasker).

    ``NiftiLabelsMasker`` returns only labels present in the (resampled,
    masked) image; its columns are mapped back by label value, so the output
    always has one column per entry of ``label_values``. A region with no
    voxel, or whose mean signal does not vary, gets a NaN column and a
    :class:`RegionWarning` naming it.

    Parameters
    ----------
    bold_img : nibabel.Nifti1Image (4-D)
    labels_img : nibabel.Nifti1Image
        Atlas (integer labels) on the BOLD grid or any grid (resampled
        nearest-neighbour to the BOLD).
    label_values : sequence of int
        The atlas label table's ``index`` column (matrix order).
    mask_img : nibabel image, optional
        Brain mask (e.g. fMRIPrep's ``desc-brain_mask``); voxels outside are ignored.
    name : str
        Atlas name for messages.

    Returns
    -------
    signals : numpy.ndarray, shape (T, N)
    missing : list of int
        Label values without voxels or variance (NaN columns).
    """
    from nilearn.maskers import NiftiLabelsMasker

    label_values = [int(v) for v in label_values]
    labels_img = nib.Nifti1Image(np.rint(np.asarray(labels_img.dataobj)).astype(np.int32), labels_img.affine)
    masker = NiftiLabelsMasker(labels_img=labels_img, mask_img=mask_img, background_label=0,
                               resampling_target="data", strategy="mean", standardize=False,
                               detrend=False, keep_masked_labels=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(empty|masked|resampl|keep_masked_labels).*")
        raw = masker.fit_transform(bold_img)
    ids = masker.region_ids_
    n_time = raw.shape[0]
    out = np.full((n_time, len(label_values)), np.nan)
    position = {v: i for i, v in enumerate(label_values)}
    for col, value in ids.items():
        if col == "background":
            continue
        value = int(value)
        if value in position:
            out[:, position[value]] = raw[:, int(col)]
    empty = [v for v in label_values if np.isnan(out[:, position[v]]).all()]
    flat = [v for v in label_values if v not in empty and np.nanstd(out[:, position[v]]) <= 1e-8 *
            max(1.0, np.nanmax(np.abs(out[:, position[v]])))]
    for v in flat:
        out[:, position[v]] = np.nan
    if empty:
        warnings.warn(f"{name}: {len(empty)} region(s) have no voxel in the BOLD field of view/mask "
                      f"(labels {_short(empty)}); their FC rows and columns are NaN", RegionWarning, stacklevel=2)
    if flat:
        warnings.warn(f"{name}: {len(flat)} region(s) have a constant signal (labels {_short(flat)}); "
                      "their FC rows and columns are NaN", RegionWarning, stacklevel=2)
    return out, empty + flat


def _short(values, k: int = 12) -> str:
    values = list(values)
    return ", ".join(map(str, values[:k])) + (f", ... ({len(values)} in all)" if len(values) > k else "")


# --- denoising ----------------------------------------------------------------------------------

@dataclass
class DenoiseSettings:
    """Config ``func:`` keys for denoising, scrubbing and exclusion (see config/README.md).

    Attributes
    ----------
    confounds : str
        Strategy name (:data:`sfc.confounds.STRATEGIES`).
    high_pass, low_pass : float or None
        Band-pass in Hz (default 0.01-0.08); None disables either side.
    detrend : bool
        Remove linear trends.
    fd_threshold : float or None
        Scrub volumes with FD above it (mm); None disables scrubbing.
    scrub_min_segment : int
        Also censor runs of kept volumes shorter than this (Power 2014: 5).
    max_mean_fd : float or None
        Exclude a subject whose mean FD exceeds it (mm).
    min_kept_minutes : float
        Exclude a subject with less uncensored data than this.
    """

    confounds: str = "24P+WM+CSF"
    high_pass: float | None = 0.01
    low_pass: float | None = 0.08
    detrend: bool = True
    fd_threshold: float | None = 0.5
    scrub_min_segment: int = 5
    max_mean_fd: float | None = 0.5
    min_kept_minutes: float = 4.0

    @classmethod
    def from_config(cls, func_config: dict | None) -> "DenoiseSettings":
        """Build from the config's ``func`` section (``bandpass: [hp, lp]`` or null)."""
        cfg = dict(func_config or {})
        kwargs = {}
        if "bandpass" in cfg:
            band = cfg.pop("bandpass")
            hp, lp = (None, None) if band is None else band
            kwargs.update(high_pass=hp, low_pass=lp)
        for key in ("confounds", "high_pass", "low_pass", "detrend", "fd_threshold", "scrub_min_segment",
                    "max_mean_fd", "min_kept_minutes"):
            if key in cfg:
                kwargs[key] = cfg[key]
        return cls(**kwargs)


def check_filter(n_volumes: int, tr: float, high_pass, low_pass, path=None) -> None:
    """Refuse a band-pass the series cannot carry.

    A high-pass at ``f`` Hz needs at least one full period, ``1/f`` s of data
    (0.01 Hz -> 100 s); a low-pass must lie below the Nyquist frequency
    ``1/(2 TR)``; the Butterworth filter (order 5, forward-backward) needs
    more than 3 x its order of samples of padding.

    Raises
    ------
    InputError
        Naming the file, the duration and the way out (a longer scan, or a
        different ``func.bandpass``).
    """
    duration = n_volumes * tr
    if high_pass and high_pass > 0 and duration < 1.0 / high_pass:
        raise InputError(path, f"{n_volumes} volumes x TR {tr:g} s = {duration:.1f} s cannot carry a "
                               f"{high_pass:g} Hz high-pass (one period needs {1.0 / high_pass:.0f} s)",
                         "use a longer resting-state scan, or set func.bandpass to a range this scan can "
                         f"carry (high-pass >= {1.0 / duration:.3f} Hz) or to null (no filtering)")
    nyquist = 0.5 / tr
    if low_pass and low_pass >= nyquist:
        raise InputError(path, f"the {low_pass:g} Hz low-pass is at or above the Nyquist frequency "
                               f"{nyquist:.3f} Hz of TR {tr:g} s",
                         "lower func.bandpass's upper bound, or set it to null")
    if (high_pass or low_pass) and n_volumes <= 33:
        raise InputError(path, f"{n_volumes} volumes are too few for a Butterworth band-pass "
                               "(forward-backward filtering pads 33 samples)",
                         "use a longer scan, or set func.bandpass: null")


def clean_signals(signals, tr: float, confounds=None, keep=None, high_pass=0.01, low_pass=0.08,
                  detrend: bool = True, path=None) -> np.ndarray:
    """Nuisance regression, detrending, band-pass and scrubbing in one step.

    :func:`nilearn.signal.clean` with ``sample_mask``: censored volumes are
    interpolated (cubic spline) before the Butterworth filter, confounds are
    filtered with the data (orthogonal filtering), and censored volumes are
    dropped from the output. NaN columns (missing regions) are passed
    through untouched.

    Parameters
    ----------
    signals : array, shape (T, N)
    tr : float
        Repetition time (s).
    confounds : array or DataFrame, shape (T, K), optional
    keep : array of bool, shape (T,), optional
        Volumes kept after scrubbing / non-steady-state removal.
    high_pass, low_pass : float or None
    detrend : bool
    path : path-like, optional
        The BOLD file, named in error messages.

    Returns
    -------
    numpy.ndarray, shape (T_kept, N), standardised (z-scored) columns.

    Raises
    ------
    InputError
        If the kept volumes cannot support the regressors and filter.
    """
    from nilearn import signal

    signals = np.asarray(signals, dtype=float)
    n_time, n_regions = signals.shape
    keep = np.ones(n_time, bool) if keep is None else np.asarray(keep, bool)
    n_kept = int(keep.sum())
    check_filter(n_time, tr, high_pass, low_pass, path)
    n_conf = 0 if confounds is None else np.asarray(confounds).shape[1]
    needed = n_conf + int(detrend) + 1 + 3  # regressors, trend, mean, and a few degrees of freedom for r
    if n_kept < needed:
        raise InputError(path, f"{n_kept} volumes remain after scrubbing/dummy removal, fewer than the "
                               f"{needed} needed for {n_conf} confound regressors",
                         "choose a smaller confound strategy (func.confounds), a higher func.fd_threshold, "
                         "or exclude this subject")
    band = (min(low_pass or np.inf, 0.5 / tr) - (high_pass or 0.0)) / (0.5 / tr)
    dof = n_kept * band
    if n_conf and n_conf > 0.5 * dof:
        warnings.warn(f"{path or 'BOLD'}: {n_conf} confound regressors against about {dof:.0f} degrees of "
                      f"freedom left in the {high_pass}-{low_pass} Hz band of {n_kept} volumes: regression "
                      "will remove real signal too (Bright & Murphy 2015); prefer a longer scan or fewer "
                      "regressors", stacklevel=2)
    valid = np.isfinite(signals).all(axis=0)
    out = np.full((n_kept, n_regions), np.nan)
    if valid.any():
        conf_arr = None if confounds is None else np.asarray(confounds, dtype=float)
        sample_mask = None if keep.all() else np.nonzero(keep)[0]
        with warnings.catch_warnings():  # nilearn 0.13 announces a change of confound scaling (no effect on r)
            warnings.filterwarnings("ignore", message=".*confounds will be standardized.*")
            cleaned = signal.clean(signals[:, valid], confounds=conf_arr, t_r=tr, detrend=detrend,
                                   standardize="zscore_sample", standardize_confounds=True,
                                   filter="butterworth" if (high_pass or low_pass) else False,
                                   high_pass=high_pass or None, low_pass=low_pass or None,
                                   sample_mask=sample_mask, ensure_finite=False)
        out[:, valid] = cleaned
    return out


def correlation_matrix(timeseries) -> np.ndarray:
    """Pearson correlation of region time series.

    Returns
    -------
    numpy.ndarray, shape (N, N)
        ``r``; diagonal 1 for every valid region; NaN rows and columns for
        regions whose series is NaN or constant. Symmetric.
    """
    ts = np.asarray(timeseries, dtype=float)
    n = ts.shape[1]
    fc = np.full((n, n), np.nan)
    valid = np.isfinite(ts).all(axis=0)
    if valid.any():
        x = ts[:, valid] - ts[:, valid].mean(axis=0)
        sd = np.sqrt((x ** 2).sum(axis=0))
        ok = sd > 1e-12 * max(1.0, np.abs(ts[:, valid]).max())
        idx = np.nonzero(valid)[0][ok]
        x = x[:, ok] / sd[ok]
        r = np.clip(x.T @ x, -1.0, 1.0)
        r = (r + r.T) / 2
        np.fill_diagonal(r, 1.0)
        fc[np.ix_(idx, idx)] = r
    return fc


# --- one subject, one atlas ------------------------------------------------------------------------

@dataclass
class Connectivity:
    timeseries: pd.DataFrame  # T_kept x N, columns = region names
    fc: np.ndarray  # N x N
    missing: list = field(default_factory=list)  # label values with NaN rows


def connectivity(bold_img, labels_img, labels: pd.DataFrame, tr: float, confounds=None, keep=None,
                 settings: DenoiseSettings | None = None, mask_img=None, atlas: str = "atlas",
                 path=None) -> Connectivity:
    """Parcellate, denoise and correlate: one subject, one atlas.

    Parameters
    ----------
    bold_img : nibabel.Nifti1Image (4-D)
    labels_img : nibabel.Nifti1Image
        Atlas image (on the BOLD grid, or resampled to it nearest-neighbour).
    labels : pandas.DataFrame
        Label table (``index, name``) in matrix order.
    tr : float
    confounds : DataFrame or array (T, K), optional
        Regressors (already selected by strategy).
    keep : bool array (T,), optional
        Kept volumes (:func:`sfc.confounds.scrub_mask`, non-steady-state removal).
    settings : DenoiseSettings
    mask_img : optional brain mask
    atlas : str
        Atlas name for messages.
    path : path-like
        BOLD file, named in messages.

    Returns
    -------
    Connectivity
    """
    settings = settings or DenoiseSettings()
    n_time = bold_img.shape[3]
    check_filter(n_time, tr, settings.high_pass, settings.low_pass, path)
    if confounds is not None and len(confounds) != n_time:
        raise InputError(path, f"the confounds have {len(confounds)} rows but the BOLD has {n_time} volumes",
                         "use the confounds file made from this BOLD (same run, same dummy-volume setting)")
    raw, missing = region_signals(bold_img, labels_img, labels["index"].to_numpy(), mask_img=mask_img,
                                  name=atlas)
    ts = clean_signals(raw, tr, confounds=confounds, keep=keep, high_pass=settings.high_pass,
                       low_pass=settings.low_pass, detrend=settings.detrend, path=path)
    fc = correlation_matrix(ts)
    newly = [int(v) for v, ok in zip(labels["index"], np.isfinite(np.diag(fc))) if not ok and v not in missing]
    if newly:
        warnings.warn(f"{atlas}: {len(newly)} region(s) have no variance after denoising (labels "
                      f"{_short(newly)}); their FC rows and columns are NaN", RegionWarning, stacklevel=2)
    table = pd.DataFrame(ts, columns=labels["name"].astype(str).to_list())
    return Connectivity(table, fc, missing + newly)


def builtin_confounds(path, settings: DenoiseSettings):
    """Regressors, kept volumes and FD from the built-in route's confounds TSV.

    Returns
    -------
    regressors : DataFrame or None
    keep : bool array (T,)
    fd : array (T,), FD[0] = 0
    """
    table = pd.read_csv(path, sep="\t", na_values=["n/a"])
    if "framewise_displacement" not in table.columns:
        raise InputError(path, "lacks the framewise_displacement column", "rerun the func_preprocess rule")
    regressors = conf.select_confounds(table, settings.confounds, path=path)
    fd = np.nan_to_num(table["framewise_displacement"].to_numpy(dtype=float), nan=0.0)
    keep = conf.scrub_mask(fd, settings.fd_threshold, settings.scrub_min_segment)
    return regressors, keep, fd


def subject_connectivity(bold_img, labels_img, labels: pd.DataFrame, tr: float, regressors, keep, fd,
                         settings: DenoiseSettings, mask_img=None, atlas: str = "atlas", path=None):
    """:func:`connectivity` for one subject, tolerant of subjects that QC excludes anyway.

    If the subject is excluded (:func:`qc_summary`) and its data cannot give
    an FC (e.g. too few volumes left after scrubbing), the result is an all-NaN
    matrix and an empty time-series table instead of an error, so the rest of
    the cohort goes on; the reason is in the subject's QC file. An included
    subject's :class:`InputError` is raised.

    Returns
    -------
    (Connectivity, dict)
        The result and the :func:`qc_summary` it was judged by.
    """
    summary = qc_summary(fd, keep, tr, settings)
    try:
        return connectivity(bold_img, labels_img, labels, tr, confounds=regressors, keep=keep,
                            settings=settings, mask_img=mask_img, atlas=atlas, path=path), summary
    except InputError as error:
        if summary["include"]:
            raise
        log.warning("no FC for an excluded subject (%s): %s", summary["reason"], error)
        n = len(labels)
        empty = pd.DataFrame(columns=labels["name"].astype(str).to_list())
        return Connectivity(empty, np.full((n, n), np.nan), [int(v) for v in labels["index"]]), summary


# --- QC ---------------------------------------------------------------------------------------------

def qc_summary(fd, keep, tr: float, settings: DenoiseSettings, n_dummy: int = 0, subject: str | None = None,
               session: str | None = None, extra_reason: str | None = None) -> dict:
    """Motion summary and the include/exclude decision for one subject.

    Excluded when mean FD > ``max_mean_fd`` or fewer than
    ``min_kept_minutes`` of uncensored data remain (Parkes et al. 2018).

    Returns
    -------
    dict
        ``participant_id, session, include, reason, mean_fd, max_fd,
        n_volumes, n_dummy, n_kept, kept_minutes, fd_threshold, tr, confounds``.
    """
    fd = np.nan_to_num(np.asarray(fd, float), nan=0.0)
    keep = np.asarray(keep, bool)
    mean_fd = float(fd[1:].mean()) if len(fd) > 1 else 0.0
    kept_min = float(keep.sum() * tr / 60.0)
    reasons = []
    if settings.max_mean_fd is not None and mean_fd > settings.max_mean_fd:
        reasons.append(f"mean FD {mean_fd:.3f} mm > {settings.max_mean_fd:g} mm")
    if kept_min < settings.min_kept_minutes:
        reasons.append(f"{keep.sum()} volumes ({kept_min:.2f} min) left after scrubbing at FD "
                       f"{settings.fd_threshold} mm < {settings.min_kept_minutes:g} min")
    if extra_reason:
        reasons.append(extra_reason)
    return {"participant_id": f"sub-{subject}" if subject else None, "session": session,
            "include": not reasons, "reason": "; ".join(reasons) if reasons else "n/a",
            "mean_fd": mean_fd, "max_fd": float(fd.max()) if len(fd) else 0.0,
            "n_volumes": int(len(fd)), "n_dummy": int(n_dummy), "n_kept": int(keep.sum()),
            "kept_minutes": kept_min, "fd_threshold": settings.fd_threshold, "tr": float(tr),
            "confounds": settings.confounds}


def write_qc(path, summary: dict) -> None:
    """One-row TSV (``include`` as true/false) that the group stage reads to build excluded.tsv."""
    row = dict(summary)
    row["include"] = "true" if row["include"] else "false"
    if row.get("session") is None:
        row.pop("session", None)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([row]).to_csv(path, sep="\t", index=False, na_rep="n/a", float_format="%.6g")


def read_qc(path) -> dict:
    """Read :func:`write_qc`'s file; ``include`` back to bool."""
    row = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False).iloc[0].to_dict()
    row["include"] = row["include"].strip().lower() == "true"
    return row


def qc_files(output_dir, subject, session=None) -> dict:
    """Per-subject functional QC paths under ``sub-*/qc/`` (proposed for sfc.paths)."""
    from .paths import subject_file

    def f(suffix):
        return subject_file(output_dir, "qc", f"task-rest_{suffix}", subject, session)

    return {"summary": f("desc-func_qc.tsv"), "fd_plot": f("desc-fd_plot.png"),
            "carpet": f("desc-carpet_plot.png"), "motion": f("desc-motion_timeseries.tsv")}


def fc_plot_path(output_dir, subject, session, atlas) -> str:
    from .paths import subject_file

    return subject_file(output_dir, "qc", f"task-rest_atlas-{atlas}_desc-fc_plot.png", subject, session)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_fd(path, fd, keep, threshold=None, title: str = "") -> None:
    """FD trace with the scrubbing threshold and censored volumes marked."""
    plt = _plt()
    fd = np.nan_to_num(np.asarray(fd, float))
    fig, ax = plt.subplots(figsize=(8, 2.5))
    ax.plot(np.arange(len(fd)), fd, lw=1, color="k")
    bad = np.nonzero(~np.asarray(keep, bool))[0]
    if len(bad):
        ax.scatter(bad, fd[bad], s=8, color="tab:red", label=f"censored ({len(bad)})", zorder=3)
        ax.legend(loc="upper right", fontsize=8)
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", ls="--", lw=0.8)
    ax.set_xlabel("volume")
    ax.set_ylabel("FD (mm)")
    ax.set_title(title or f"framewise displacement: mean {fd[1:].mean() if len(fd) > 1 else 0:.3f} mm, "
                          f"max {fd.max() if len(fd) else 0:.3f} mm", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_carpet(path, bold_img, mask_img=None, fd=None, max_voxels: int = 4000, seed: int = 0) -> None:
    """Carpet plot (Power 2017): z-scored voxel time series inside the brain, FD above.

    ``mask_img`` may be a label image (e.g. the tissue labels on the BOLD grid): voxels are
    then grouped by label, highest first.
    """
    plt = _plt()
    data = np.asarray(bold_img.dataobj, dtype=np.float32)
    if mask_img is not None:
        seg = np.rint(np.asarray(mask_img.dataobj)).astype(int)
    else:
        mean = data.mean(axis=3)
        seg = (mean > np.percentile(mean[mean > 0], 30) if (mean > 0).any() else np.ones(mean.shape, bool)).astype(int)
    mask = seg > 0
    x, tissue = data[mask], seg[mask]
    if len(x) > max_voxels:
        pick = np.sort(np.random.default_rng(seed).choice(len(x), max_voxels, replace=False))
        x, tissue = x[pick], tissue[pick]
    order = np.argsort(-tissue, kind="stable")  # a label image (1 CSF, 2 GM, 3 WM): WM, GM, CSF blocks
    x = x[order]
    x = x - x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1, keepdims=True)
    x = np.divide(x, sd, out=np.zeros_like(x), where=sd > 0)
    fig, axes = plt.subplots(2 if fd is not None else 1, 1, figsize=(8, 5), sharex=True,
                             gridspec_kw={"height_ratios": [1, 4]} if fd is not None else None)
    axes = np.atleast_1d(axes)
    if fd is not None:
        axes[0].plot(np.nan_to_num(fd), color="k", lw=1)
        axes[0].set_ylabel("FD (mm)")
    axes[-1].imshow(x, aspect="auto", cmap="gray", vmin=-2, vmax=2, interpolation="nearest")
    axes[-1].set_xlabel("volume")
    axes[-1].set_ylabel(f"voxels ({len(x)})")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_fc(path, fc, title: str = "") -> None:
    """FC heatmap (r, -1..1; NaN regions shown grey)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.7")
    im = ax.imshow(np.ma.masked_invalid(fc), cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, label="Pearson r")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("region")
    ax.set_ylabel("region")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_timeseries(path, table: pd.DataFrame) -> None:
    """Region time series: header = region names, one row per kept volume, ``n/a`` for NaN."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False, na_rep="n/a", float_format="%.8g")


# --- agreement with a generator's truth (demo cohort, tests) ------------------------------------------

def motion_agreement(estimated, true) -> pd.Series:
    """Pearson r between estimated and true motion, per parameter.

    Parameters
    ----------
    estimated, true : DataFrame with ``trans_x ... rot_z`` columns, or arrays (T, 6) in that order.
        Offsets do not matter (the reference volume differs); conventions must
        agree (RAS mm, radians, ``R = Rz Ry Rx``).

    Returns
    -------
    pandas.Series indexed by parameter name (NaN where a true parameter is constant).
    """
    def as_array(x):
        return x[conf.MOTION_COLUMNS].to_numpy(float) if isinstance(x, pd.DataFrame) else np.asarray(x, float)

    e, t = as_array(estimated), as_array(true)
    if e.shape != t.shape:
        raise ValueError(f"estimated {e.shape} and true {t.shape} motion differ in shape")
    out = {}
    for k, name in enumerate(conf.MOTION_COLUMNS):
        out[name] = np.corrcoef(e[:, k], t[:, k])[0, 1] if t[:, k].std() > 0 and e[:, k].std() > 0 else np.nan
    return pd.Series(out)


def fc_agreement(fc, truth) -> float:
    """Spearman correlation of the off-diagonal upper triangles (finite entries of both)."""
    from scipy.stats import spearmanr

    fc, truth = np.asarray(fc, float), np.asarray(truth, float)
    iu = np.triu_indices(len(fc), 1)
    a, b = fc[iu], truth[iu]
    ok = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[ok], b[ok]).statistic) if ok.sum() > 2 else float("nan")
