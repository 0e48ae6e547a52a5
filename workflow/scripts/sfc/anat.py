"""T1-weighted anatomy: N4, brain mask, T1w -> MNI registration, atlas in T1w space, 5TT for ACT.

All through antspyx; ``5ttgen fsl`` only when FSL is installed. Also the QC
pictures of the structural branch (atlas over an image, a scalar map).

Template: the FSL MNI152 2 mm head template (``MNI152_T1_2mm.nii.gz``, the grid of
the BNA-246 and Harvard-Oxford images) with a brain mask made from
``MNI152_T1_1mm_brain.nii.gz`` (or ``MNI152_T1_2mm_brain_mask.nii.gz`` when present),
read from a folder given in the config, or downloaded and verified into the cache
(resources/templates/registry.yaml, sfc.fetch). With neither a folder nor downloads,
nilearn's bundled MNI152 2009 template and mask are used (a slightly different space:
atlas labels land within a few mm) and a warning says so.

References
----------
Tustison NJ, Avants BB, Cook PA, et al. (2010) N4ITK. IEEE Trans Med Imaging 29:1310-1320.
Avants BB, Epstein CL, Grossman M, Gee JC (2008) SyN. Med Image Anal 12:26-41.
Avants BB, Tustison NJ, Wu J, Cook PA, Gee JC (2011) An open source multivariate
framework for n-tissue segmentation with evaluation on public data (Atropos).
Neuroinformatics 9:381-400.
Smith RE, Tournier J-D, Calamante F, Connelly A (2012) Anatomically-constrained
tractography (5TT format). NeuroImage 62:1924-1938.
Fonov V, Evans AC, Botteron K, et al. (2011) Unbiased average age-appropriate atlases
for pediatric studies. NeuroImage 54:313-327 (MNI152 2009).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from . import fetch, mrtrix, registration
from .errors import InputError, SetupError

logger = logging.getLogger("sfc.anat")

FSL_HEAD = "MNI152_T1_2mm.nii.gz"
FSL_BRAIN_1MM = "MNI152_T1_1mm_brain.nii.gz"
FSL_MASK_2MM = "MNI152_T1_2mm_brain_mask.nii.gz"
#: Looked in, in order, when no template_dir is configured: $SFC_TEMPLATE_DIR, then the
#: repository's resources/templates/mni152-fsl (if the FSL templates are shipped there).
TEMPLATE_DIR_ENV = "SFC_TEMPLATE_DIR"
RESOURCES_TEMPLATES = Path(__file__).resolve().parents[3] / "resources" / "templates" / "mni152-fsl"
TEMPLATE_REGISTRY = RESOURCES_TEMPLATES.parent / "registry.yaml"


@dataclass
class Template:
    """A registration target: ``image`` (head or brain), ``mask`` (brain), where they came from."""

    image: object
    mask: object
    space: str
    source: str
    is_head: bool


@lru_cache(maxsize=1)
def template_registry() -> dict:
    """The FSL MNI152 templates' registry (resources/templates/registry.yaml): names, checksums, URLs."""
    with open(TEMPLATE_REGISTRY) as handle:
        return yaml.safe_load(handle)


def fetch_templates(download: bool = False, mirror=None) -> Path | None:
    """The download cache's folder once it holds the verified FSL templates, else None.

    Missing templates are downloaded (from ``mirror``, the config key ``atlas_mirror``,
    else ``$SFC_ATLAS_MIRROR``, else their registered URLs) when ``download`` is true;
    a failed download is an error naming the URL and the ways out.
    """
    folder = fetch.cache_dir("templates")
    mirror_base = fetch.mirror(mirror)
    for source in template_registry().values():
        path = folder / source["filename"]
        if path.is_file() and not fetch.verify(path, source):
            continue
        if not download:
            return None
        fetch.download(source, path, mirror_base=mirror_base,
                       local_fix=f"put {FSL_HEAD} and {FSL_BRAIN_1MM} from FSL ($FSLDIR/data/standard) into the "
                                 f"folder named by anat.template_dir or ${TEMPLATE_DIR_ENV}")
    return folder


def load_template(template_dir=None, *, download: bool = False, mirror=None) -> Template:
    """The MNI152 template and brain mask used for T1w registration.

    Parameters
    ----------
    template_dir : path, optional
        Folder with FSL's ``MNI152_T1_2mm.nii.gz`` and ``MNI152_T1_2mm_brain_mask.nii.gz``
        or ``MNI152_T1_1mm_brain.nii.gz`` (FSL MNI152NLin6Asym, the atlases' grid).
        None: ``$SFC_TEMPLATE_DIR``, then ``resources/templates/mni152-fsl``, then the
        download cache (downloading into it when ``download``); if none holds the
        template, nilearn's MNI152 2009 template (with a warning).
    download : bool
        Download the FSL templates into the cache when no folder holds them (config
        ``atlas_download``); their checksums are pinned in resources/templates/registry.yaml.
    mirror : str, optional
        Mirror base URL or folder (config ``atlas_mirror``; None: ``$SFC_ATLAS_MIRROR``).

    Returns
    -------
    Template
    """
    ants = registration._ants()
    if template_dir is None:
        for candidate in (os.environ.get(TEMPLATE_DIR_ENV), RESOURCES_TEMPLATES):
            if candidate and (Path(candidate) / FSL_HEAD).is_file():
                template_dir = candidate
                break
        else:
            template_dir = fetch_templates(download, mirror)
    if template_dir is not None:
        d = Path(template_dir)
        head = d / FSL_HEAD
        if not head.is_file():
            raise SetupError(head, "FSL MNI152 2 mm template not found",
                             "put MNI152_T1_2mm.nii.gz (and MNI152_T1_1mm_brain.nii.gz) in anat.template_dir, "
                             "or leave anat.template_dir empty to use nilearn's MNI152 2009 template")
        image = ants.image_read(str(head))
        if (d / FSL_MASK_2MM).is_file():
            mask = ants.image_read(str(d / FSL_MASK_2MM))
        elif (d / FSL_BRAIN_1MM).is_file():
            brain = ants.image_read(str(d / FSL_BRAIN_1MM))
            binary = brain.new_image_like((brain.numpy() > 0).astype("float32"))
            mask = ants.resample_image_to_target(binary, image, interp_type="linear")
            mask = mask.new_image_like((mask.numpy() >= 0.5).astype("float32"))
        else:
            raise SetupError(d, "no brain mask next to the template",
                             f"add {FSL_BRAIN_1MM} or {FSL_MASK_2MM} to anat.template_dir")
        return Template(image=image, mask=mask, space="MNI152NLin6Asym", source=str(head), is_head=True)
    from nilearn import datasets

    logger.warning("no template_dir and downloads off (atlas_download: false): using nilearn's MNI152 2009 "
                   "template; the atlases are on the FSL MNI152 (NLin6Asym) grid, a slightly different space "
                   "(labels may be off by a few mm)")
    tpl = registration.load(datasets.load_mni152_template(resolution=2))
    msk = registration.load(datasets.load_mni152_brain_mask(resolution=2))
    return Template(image=tpl, mask=msk, space="MNI152NLin2009cAsym", source="nilearn", is_head=False)


def preprocess_t1(t1, template: Template, out_t1, out_mask, out_brain, out_prefix, *,
                  transform: str = "SyN", seed: int = 42, quick: bool = False) -> dict:
    """N4, T1w -> template registration and a template-propagated brain mask.

    1. N4 over a rough intensity mask (``ants.get_mask``);
    2. register the N4 image (head to head template, or its rough brain to a brain template)
       to MNI, centre-of-mass initialised; ``transform`` "SyN" or "Affine" (fast);
    3. brain mask = template mask pulled back into T1w space (nearest neighbour), holes filled;
    4. N4 again inside that mask.

    Parameters
    ----------
    t1 : path
    template : Template
    out_t1, out_mask, out_brain : path
        Bias-corrected T1w, brain mask (uint8), bias-corrected brain.
    out_prefix : path
        Transform prefix (``<prefix>0GenericAffine.mat`` [+ ``1Warp``/``1InverseWarp``]).
    transform : {"SyN", "Affine"}
    seed : int
    quick : bool
        Fewer registration iterations (tests).

    Returns
    -------
    dict
        QC: ``nmi_t1_mni`` (normalised MI of the warped T1w and the template inside the template
        mask), ``brain_volume_ml``, ``transform``, ``template``.
    """
    ants = registration._ants()
    # RAS+ voxel order first: the registration must not depend on how the T1w is stored
    img = (registration.load_canonical(t1) if isinstance(t1, (str, os.PathLike)) else registration.load(t1)).clone("float")
    if img.dimension != 3:
        raise InputError(t1, f"T1w image is {img.dimension}-D", "give a single 3-D T1-weighted volume")
    rough = ants.get_mask(img)
    n4 = registration.n4(img, mask=rough)
    moving = n4 if template.is_head else n4 * rough
    reg = registration.register(template.image, moving, transform, out_prefix=out_prefix, seed=seed, quick=quick)
    if not any(str(t).endswith("Warp.nii.gz") for t in reg["fwdtransforms"]):
        # affine only: write identity warps so that every run leaves the same files
        # (<prefix>0GenericAffine.mat, 1Warp.nii.gz, 1InverseWarp.nii.gz) for later rules
        for name in ("1Warp.nii.gz", "1InverseWarp.nii.gz"):
            registration.identity_warp(template.image, f"{os.fspath(out_prefix)}{name}")
    mask = registration.apply_labels(template.mask, n4, reg["invtransforms"], reg["invert"])
    mask = ants.iMath(mask, "FillHoles").threshold_image(0.5, 1e9)
    n4 = registration.n4(img, mask=mask)
    registration.save(n4, out_t1)
    registration.save(mask, out_mask, dtype=np.uint8)
    registration.save(n4 * mask, out_brain)
    warped = registration.apply(n4, template.image, reg["fwdtransforms"])
    tmask = template.mask.numpy() > 0
    nmi = registration.normalized_mutual_information(warped.numpy(), template.image.numpy(), mask=tmask)
    vox_ml = float(np.prod(n4.spacing)) / 1000.0
    return {"nmi_t1_mni": nmi, "brain_volume_ml": float(mask.numpy().sum() * vox_ml), "transform": transform,
            "template": template.source}


def atlas_to_t1(atlas, t1_ref, out_prefix, out_labels) -> np.ndarray:
    """Atlas (template space) -> T1w space with nearest-neighbour interpolation; written as int16."""
    tl, inv = registration.transforms_from_prefix(out_prefix, inverse=True)
    labels = registration.apply_labels(atlas, t1_ref, tl, inv)
    registration.save(labels, out_labels, dtype=np.int16)
    return labels.numpy()


# --------------------------------------------------------------------------------------
# tissue segmentation / 5TT
# --------------------------------------------------------------------------------------

def five_tt_from_probabilities(csf, gm, wm, mask, subcortical=None) -> np.ndarray:
    """Assemble a 5TT image (Smith 2012) from tissue probabilities.

    Volumes, in MRtrix3's order: 0 cortical GM, 1 sub-cortical GM, 2 WM, 3 CSF,
    4 pathological tissue (always 0). Inside ``mask`` the volumes are normalised to sum
    to 1 (voxels with no probability at all become CSF); outside they are all 0.

    Parameters
    ----------
    csf, gm, wm : ndarray (X, Y, Z)
        Tissue probabilities (any non-negative scale).
    mask : ndarray of bool
    subcortical : ndarray of bool, optional
        Deep grey-matter voxels (e.g. atlas subcortical labels): their GM goes to volume 1.

    Returns
    -------
    ndarray (X, Y, Z, 5) float32
    """
    p = np.stack([np.clip(np.asarray(a, dtype=float), 0, None) for a in (gm, wm, csf)], axis=-1)
    total = p.sum(axis=-1)
    empty = total <= 0
    p[empty] = (0.0, 0.0, 1.0)
    p /= p.sum(axis=-1, keepdims=True)
    gm_p, wm_p, csf_p = p[..., 0], p[..., 1], p[..., 2]
    sgm = np.zeros_like(gm_p)
    if subcortical is not None:
        sub = np.asarray(subcortical, dtype=bool)
        sgm[sub] = gm_p[sub]
        gm_p = np.where(sub, 0.0, gm_p)
    out = np.stack([gm_p, sgm, wm_p, csf_p, np.zeros_like(gm_p)], axis=-1)
    out[~np.asarray(mask, dtype=bool)] = 0.0
    return out.astype(np.float32)


def segment_5tt(t1_brain, mask, out_5tt, *, subcortical=None, seed: int = 42) -> dict:
    """Three-class k-means / Atropos segmentation (CSF < GM < WM on T1w) -> 5TT NIfTI.

    Returns
    -------
    dict
        Tissue volumes in ml: ``csf_ml``, ``gm_ml``, ``wm_ml``.
    """
    import nibabel as nib

    ants = registration._ants()
    img = registration.load(t1_brain).clone("float")
    msk = registration.load(mask).clone("float")
    msk = msk.new_image_like((msk.numpy() > 0).astype("float32"))
    # ants.kmeans_segmentation's steps, with Atropos's constant seed (-r 0): by default it seeds
    # its generator at random, and the tissue probabilities of one T1w then differed by up to
    # 0.09 between two runs (they feed the WM/CSF confounds, so FC differed by 1.5e-3).
    # ``seed`` is kept for the signature; Atropos takes no seed value, only constant or random.
    kmask = ants.iMath(msk, "FillHoles").threshold_image(1, 2)
    seg = ants.atropos(a=ants.iMath(img, "Normalize"), m="[0.1,1x1x1]", c="[5,0]", i="kmeans[3]", x=kmask, r=0)
    probs = [pi.numpy() for pi in seg["probabilityimages"]]  # classes ordered by mean intensity
    five = five_tt_from_probabilities(probs[0], probs[1], probs[2], msk.numpy() > 0, subcortical)
    nii = registration.to_nibabel(img)
    out = nib.Nifti1Image(five, nii.affine)
    out.set_qform(nii.affine, code=1)
    out.set_sform(nii.affine, code=1)
    Path(out_5tt).parent.mkdir(parents=True, exist_ok=True)
    nib.save(out, os.fspath(out_5tt))
    vox_ml = float(np.prod(img.spacing)) / 1000.0
    return {"csf_ml": float(five[..., 3].sum() * vox_ml), "gm_ml": float(five[..., :2].sum() * vox_ml),
            "wm_ml": float(five[..., 2].sum() * vox_ml)}


def fsl_available() -> bool:
    """FSL's FAST and FIRST on PATH (what ``5ttgen fsl`` needs)."""
    return mrtrix.have("fast") and mrtrix.have("run_first_all")


def five_tt(t1, t1_brain, mask, out_5tt, *, use_fsl="auto", seed: int = 42, log=None,
            nthreads: int = 1) -> str:
    """5TT image by ``anat.use_fsl``: ``"auto"``: ``5ttgen fsl`` where FSL's FAST and FIRST are
    found, else :func:`segment_5tt`; ``True``: ``5ttgen fsl`` or an :class:`InputError` (never a
    quiet fallback); ``False``: :func:`segment_5tt`."""
    import tempfile

    if use_fsl is True and not fsl_available():
        raise SetupError(t1, "anat.use_fsl is true but FSL's fast and run_first_all are not on PATH, so "
                         "5ttgen fsl cannot make the 5TT image",
                         "install FSL (and set FSLDIR), or set anat.use_fsl: auto to accept the antspyx k-means "
                         "5TT (no subcortical grey matter) where FSL is missing")
    if use_fsl and fsl_available():
        with tempfile.TemporaryDirectory(prefix="sfc_5tt_") as tmp:
            mrtrix.run(["5ttgen", "fsl", t1_brain, out_5tt, "-premasked", "-scratch", tmp], log=log,
                       nthreads=nthreads)
        return "5ttgen fsl"
    msg = "5TT: antspyx k-means segmentation (FSL not found)" if use_fsl else "5TT: antspyx k-means segmentation"
    logger.info(msg)
    if log is not None:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(msg + "\n")
    segment_5tt(t1_brain, mask, out_5tt, seed=seed)
    return "ants kmeans"


# --------------------------------------------------------------------------------------
# QC pictures
# --------------------------------------------------------------------------------------

def _slices(vol: np.ndarray, centre=None):
    c = centre if centre is not None else [s // 2 for s in vol.shape]
    return [np.rot90(vol[c[0], :, :]), np.rot90(vol[:, c[1], :]), np.rot90(vol[:, :, c[2]])]


def _volume(image) -> tuple[np.ndarray, tuple]:
    """Voxel array and voxel size of a path or nibabel image, read with nibabel: the QC
    pictures need no antspyx, whose import would cost a plotting-only job ~3 s CPU."""
    import nibabel as nib

    img = nib.load(os.fspath(image)) if isinstance(image, (str, os.PathLike)) else image
    return np.asanyarray(img.dataobj), img.header.get_zooms()[:3]


def _aspects(spacing):
    """imshow aspect (row height / column width) of the three slices of :func:`_slices`."""
    sx, sy, sz = (list(spacing) + [1.0, 1.0, 1.0])[:3]
    return [sz / sy, sz / sx, sy / sx]


def plot_overlay(background, labels, out_png, title: str = "", seed: int = 0) -> str:
    """Atlas labels (random colours, 40 % opaque) over an image: sagittal, coronal, axial mid-slices.

    Both images must be on the same grid (e.g. labels resampled into DWI or T1w space).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    bg, spacing = _volume(background)
    aspects = _aspects(spacing)
    bg = np.asarray(bg, dtype=float)
    lab = np.rint(np.asarray(_volume(labels)[0], dtype=float)).astype(int)
    if bg.ndim == 4:
        bg = bg[..., 0]
    if bg.shape != lab.shape:
        raise ValueError(f"background {bg.shape} and labels {lab.shape} are not on the same grid")
    rng = np.random.default_rng(seed)
    colours = np.c_[rng.uniform(0.2, 1.0, size=(lab.max() + 1, 3)), np.full(lab.max() + 1, 0.4)]
    colours[0] = 0.0
    cmap = ListedColormap(colours)
    centre = [int(round(np.mean(ix))) for ix in np.nonzero(lab)] if lab.any() else None
    vmax = np.percentile(bg[bg > 0], 99) if (bg > 0).any() else 1.0
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    for ax, b, l, asp in zip(axes, _slices(bg, centre), _slices(lab, centre), aspects):
        ax.imshow(b, cmap="gray", vmin=0, vmax=vmax, interpolation="nearest", aspect=asp)
        ax.imshow(l, cmap=cmap, vmin=0, vmax=max(lab.max(), 1), interpolation="nearest", aspect=asp)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return os.fspath(out_png)


def plot_map(image, out_png, title: str = "", vmin: float = 0.0, vmax: float = 1.0, cmap: str = "gray") -> str:
    """A scalar map (e.g. FA, 0..1) as three mid-slices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vol, spacing = _volume(image)
    vol = np.asarray(vol, dtype=float)
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    for ax, s, asp in zip(axes, _slices(vol), _aspects(spacing)):
        im = ax.imshow(s, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest", aspect=asp)
        ax.axis("off")
    fig.colorbar(im, ax=axes, shrink=0.7)
    fig.suptitle(title)
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return os.fspath(out_png)
