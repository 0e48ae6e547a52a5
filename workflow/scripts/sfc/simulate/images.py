"""Image-level synthetic cohort: a small BIDS dataset with known ground truth.

Anatomy comes from the MNI152 (ICBM 2009 sym) T1, grey- and white-matter templates
that ship inside nilearn (nothing is downloaded); the brain model (regions, fibres,
signals, planted effects) is the one of :mod:`sfc.simulate.connectome`, so the
image level and the connectome level share their truth.

Per subject
-----------
- a head pose (random rigid transform, a few degrees and mm) and a smooth
  non-linear deformation: ``x_MNI = A y + u(y)`` for scanner coordinates ``y``,
  plus a small extra rigid offset per scan (the subject moves between scans);
- ``anat/*_T1w.nii.gz``: template T1 with a synthetic scalp/skull shell, bias field
  and Rician noise;
- ``dwi/*_dwi.nii.gz`` + ``.bval/.bvec/.json``: ground-truth bundles (shortest paths
  through white matter between connected regions) give per-voxel fibre directions
  (up to two populations); signal = CSF and grey-matter isotropic compartments plus
  one tensor per fibre population (the multi-tensor model of dipy.sims.voxel,
  vectorised), Rician noise;
- ``func/*_task-rest_bold.nii.gz`` + ``.json``: regional neural signals (SAR network
  on the subject's SC, planted effects) convolved with a canonical HRF, written into
  the grey-matter voxels of each region (partial volumes from 2x2x2 sub-samples),
  plus white-matter/CSF physiological signals, slow drift, thermal noise and
  rigid head motion (resampled per volume).

Truth (outside the BIDS tree) holds the transforms, the motion, the true SC/FC/SFC
per subject and atlas, and the planted regions.

References
----------
Fonov V, et al. NeuroImage 2011;54:313-327 (MNI152 2009 templates).
Messé A, et al. PLoS Comput Biol 2014;10:e1003530 (SAR model of FC on SC).
Friston KJ, et al. NeuroImage 1998;7:30-40 (canonical HRF).
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage, sparse
from scipy.sparse.csgraph import dijkstra
from scipy.stats import gamma

from .. import paths
from ..io import write_tsv
from ..registration import rotation_matrix
from . import brain
from .connectome import (DEMO_SIZES, BrainParams, CohortModel, Effects, build_model, planted_table,
                         simulate_subject, write_matrix_fast)
from .phenotypes import simulate_participants

MNI_BRAIN_CENTRE = np.array([0.0, -18.0, 8.0])


@dataclass(frozen=True)
class ImageParams:
    """Acquisition and nuisance parameters of the image-level simulation."""

    t1_voxel: float = 1.5
    dwi_voxel: float = 2.5
    bold_voxel: float = 4.0
    n_volumes: int = 150
    tr: float = 2.0
    n_directions: int = 32
    n_b0: int = 2
    bval: float = 1000.0
    t1_fov: tuple = (180.0, 216.0, 186.0)     # mm, the whole head
    epi_fov: tuple = (160.0, 192.0, 150.0)    # mm, the brain and a margin
    rotation_deg: float = 3.0                 # sd of the head pose per axis
    translation_mm: float = 4.0
    scan_rotation_deg: float = 1.0            # extra pose change between scans
    scan_translation_mm: float = 1.5
    warp_mm: float = 2.0                      # sd of the non-linear displacement
    warp_spacing_mm: float = 30.0             # control-point spacing of the displacement
    dwi_snr: float = 25.0                     # b=0 white-matter SNR
    t1_noise: float = 0.02                    # noise sd relative to white matter
    bold_signal: float = 0.02                 # neural BOLD amplitude (fraction of baseline)
    bold_physio: float = 0.01                 # WM/CSF physiological amplitude
    bold_drift: float = 0.01                  # slow drift amplitude
    bold_tsnr: float = 100.0                  # thermal SNR of grey matter
    motion_rot_deg: float = 0.3               # sd of the motion random walk's end point
    motion_trans_mm: float = 0.4
    motion_spikes: int = 2                    # sudden displacements (volumes)


# The brains behind the images couple function to structure more strongly than the
# connectome-level default (g 0.85): the images carry 150 volumes of HRF-smoothed BOLD, whose
# sampling error in FC (SE ~0.15 per edge) buried the population FC of g 0.85 (edge sd 0.06 in
# BNA246; measured FC followed it at Spearman 0.2-0.4 even without noise or motion, and regional
# SFC followed the truth at r 0.08). At g 0.92 the population FC has mean 0.31 and edge sd 0.12,
# as resting-state FC does, 150 noise-free volumes recover it at rho 0.66 and regional SFC at
# r 0.59. The between-subject sd of g is halved, since SFC grows steeply with g near 1.
IMAGE_BRAIN_PARAMS = BrainParams(coupling=0.92, coupling_sd=0.01)


# --------------------------------------------------------------------------- anatomy

@dataclass
class Anatomy:
    """Template maps on the nilearn 1 mm grid plus the atlas geometry on the FSL 2 mm grid."""

    affine: np.ndarray
    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    head: np.ndarray        # T1 intensity of the scalp/skull shell (0 inside the brain)
    head_mask: np.ndarray


@lru_cache(maxsize=1)
def load_anatomy() -> Anatomy:
    """MNI152 2009 templates shipped with nilearn, with a synthetic head around the brain.

    Cached: the arrays are shared, do not modify them.
    """
    from nilearn import datasets

    t1_img = datasets.load_mni152_template(resolution=1)
    t1 = t1_img.get_fdata(dtype=np.float32)
    gm = datasets.load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32)
    wm = datasets.load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32)
    brain_mask = ndimage.binary_fill_holes(ndimage.binary_closing((t1 > 0.05) | (gm + wm > 0.2), iterations=2))
    csf = np.clip(brain_mask.astype(np.float32) - gm - wm, 0, 1)
    dist = ndimage.distance_transform_edt(~brain_mask).astype(np.float32)  # mm (1 mm grid)
    head = np.zeros_like(t1)
    head[(dist > 0) & (dist <= 3)] = 0.08      # outer CSF
    head[(dist > 3) & (dist <= 8)] = 0.04      # skull
    head[(dist > 8) & (dist <= 14)] = 0.75     # scalp and fat
    head_mask = brain_mask | (dist <= 14)
    return Anatomy(t1_img.affine.copy(), t1, gm, wm, csf, head, head_mask)


def _sample(volume: np.ndarray, affine: np.ndarray, points_mm: np.ndarray, order: int = 1,
            cval: float = 0.0) -> np.ndarray:
    """Values of ``volume`` at world points (N, 3) (trilinear by default)."""
    vox = (points_mm - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    return ndimage.map_coordinates(volume, vox.T, order=order, mode="constant", cval=cval, prefilter=False)


# --------------------------------------------------------------------------- transforms

@dataclass
class SubjectTransform:
    """Scanner (subject) coordinates -> MNI: ``x = A y + u(y)``.

    ``u`` is a smooth displacement (mm) given on a coarse grid in scanner space
    (``warp_affine``), interpolated with cubic B-splines.
    """

    affine: np.ndarray          # 4x4
    warp: np.ndarray            # (nx, ny, nz, 3) displacement in mm
    warp_affine: np.ndarray     # 4x4 voxel -> scanner mm of the warp grid

    def _dense(self):
        """The displacement on a grid 5x finer than the control points (cubic B-spline, once)."""
        if getattr(self, "_dense_field", None) is None:
            shape = np.array(self.warp.shape[:3])
            fine = np.indices(tuple((shape - 1) * 5 + 1), dtype=np.float32).reshape(3, -1) / 5.0
            self._dense_field = np.stack(
                [ndimage.map_coordinates(self.warp[..., c], fine, order=3, mode="nearest", prefilter=False)
                 .reshape(tuple((shape - 1) * 5 + 1)) for c in range(3)], axis=0)
        return self._dense_field

    def displacement(self, y: np.ndarray) -> np.ndarray:
        """u(y) in mm for scanner points ``y`` (N, 3)."""
        dense = self._dense()
        vox = ((y - self.warp_affine[:3, 3]) @ np.linalg.inv(self.warp_affine[:3, :3]).T * 5.0).T
        return np.stack([ndimage.map_coordinates(dense[c], vox, order=1, mode="nearest", prefilter=False)
                         for c in range(3)], axis=1)

    def to_mni(self, y: np.ndarray, sub: int = 1) -> np.ndarray:
        """MNI points of scanner points ``y``; with ``sub > 1`` the rows come in groups of
        ``sub**3`` sub-samples of one voxel and share the displacement of their mean
        (the warp is smooth on the scale of a voxel)."""
        lin = y @ self.affine[:3, :3].T + self.affine[:3, 3]
        if sub == 1:
            return lin + self.displacement(y)
        centres = y.reshape(-1, sub ** 3, 3).mean(axis=1)
        return lin + np.repeat(self.displacement(centres), sub ** 3, axis=0)

    def from_mni(self, x: np.ndarray, iterations: int = 20) -> np.ndarray:
        """Scanner points of MNI points ``x`` (fixed-point inversion; the warp is small and smooth)."""
        a_inv = np.linalg.inv(self.affine[:3, :3])
        y = (x - self.affine[:3, 3]) @ a_inv.T
        for _ in range(iterations):
            y = (x - self.affine[:3, 3] - self.displacement(y)) @ a_inv.T
        return y

    def with_rigid(self, rigid: np.ndarray) -> "SubjectTransform":
        """The transform of a scan whose coordinates are ``rigid`` (4x4) applied first."""
        warp_aff = np.linalg.inv(rigid) @ self.warp_affine
        out = SubjectTransform(self.affine @ rigid, self.warp, warp_aff)
        out._dense_field = getattr(self, "_dense_field", None)
        return out


def load_transform(truth_dir, subject: str, scan: str = "T1w") -> SubjectTransform:
    """The true scanner -> MNI transform of one scan (``T1w``, ``dwi`` or ``bold``) from the truth files.

    ``sub-X_from-T1w_to-MNI_xfm.txt`` (4x4 ``A``) and ``sub-X_from-T1w_to-MNI_warp.nii.gz``
    (displacement ``u`` in mm, cubic B-spline coefficients on the grid of its affine) give
    ``x = A y + u(y)`` for the T1w; another scan's ``xfm`` is ``A @ R`` with ``R`` the rigid
    move of the head between the scans, and its points go through ``R`` before the warp.
    """
    tdir = Path(truth_dir) / f"sub-{subject}"
    a_t1 = np.loadtxt(tdir / f"sub-{subject}_from-T1w_to-MNI_xfm.txt")
    warp = nib.load(tdir / f"sub-{subject}_from-T1w_to-MNI_warp.nii.gz")
    xf = SubjectTransform(a_t1, np.asarray(warp.dataobj, dtype=np.float32), warp.affine)
    if scan == "T1w":
        return xf
    a_s = np.loadtxt(tdir / f"sub-{subject}_from-{scan}_to-MNI_xfm.txt")
    return xf.with_rigid(np.linalg.inv(a_t1) @ a_s)


def random_transform(rng: np.random.Generator, p: ImageParams) -> SubjectTransform:
    rot = rotation_matrix(np.deg2rad(rng.normal(0, p.rotation_deg, 3)))
    trans = rng.normal(0, p.translation_mm, 3)
    # head centre placed near the scanner isocentre, with the drawn pose
    centre = MNI_BRAIN_CENTRE
    aff = np.eye(4)
    aff[:3, :3] = rot
    aff[:3, 3] = centre + trans  # y = 0 maps near the MNI brain centre
    extent = np.array(p.t1_fov) + 2 * p.warp_spacing_mm
    shape = np.ceil(extent / p.warp_spacing_mm).astype(int) + 1
    coarse = rng.normal(0, 1, (*shape, 3))
    warp = np.empty(coarse.shape, np.float32)
    for c in range(3):
        smooth = ndimage.gaussian_filter(coarse[..., c], 0.7)
        smooth *= p.warp_mm / max(smooth.std(), 1e-9)
        warp[..., c] = ndimage.spline_filter(smooth, order=3)  # B-spline coefficients
    waff = np.eye(4) * p.warp_spacing_mm
    waff[3, 3] = 1
    waff[:3, 3] = -(shape - 1) / 2 * p.warp_spacing_mm
    return SubjectTransform(aff, warp, waff)


def random_rigid(rng: np.random.Generator, rot_deg: float, trans_mm: float) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = rotation_matrix(np.deg2rad(rng.normal(0, rot_deg, 3)))
    m[:3, 3] = rng.normal(0, trans_mm, 3)
    return m


def scan_grid(voxel: float, fov) -> tuple[tuple, np.ndarray]:
    """An LAS grid (like FSL's templates) centred on the scanner origin."""
    shape = tuple(int(np.ceil(f / voxel)) for f in fov)
    aff = np.diag([-voxel, voxel, voxel, 1.0])
    aff[:3, 3] = [(shape[0] - 1) / 2 * voxel, -(shape[1] - 1) / 2 * voxel, -(shape[2] - 1) / 2 * voxel]
    return shape, aff


def grid_points(shape, affine, sub: int = 1) -> np.ndarray:
    """World coordinates of voxel centres (sub=1) or of sub x sub x sub sub-samples per voxel.

    Sub-samples come out voxel-major: rows ``k*sub**3 .. (k+1)*sub**3 - 1`` belong to voxel ``k``
    (C order of ``shape``).
    """
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1).T
    if sub > 1:
        offs = (np.indices((sub,) * 3).reshape(3, -1).T + 0.5) / sub - 0.5
        ijk = (ijk[:, None, :] + offs[None, :, :]).reshape(-1, 3)
    return ijk @ affine[:3, :3].T.astype(np.float32) + affine[:3, 3].astype(np.float32)


def _save(img_data, affine, path, dtype=np.int16, zooms_t=None) -> None:
    img = nib.Nifti1Image(np.asarray(img_data).astype(dtype), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if zooms_t is not None:
        img.header.set_zooms(img.header.get_zooms()[:3] + (zooms_t,))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))


def _rician(rng, signal, sigma):
    return np.sqrt((signal + rng.normal(0, sigma, signal.shape)) ** 2 + rng.normal(0, sigma, signal.shape) ** 2)


# --------------------------------------------------------------------------- bundles

@dataclass
class Bundles:
    """Ground-truth bundle geometry on the FSL 2 mm grid, one bundle per template edge.

    ``voxel`` (flat index), ``bundle`` (edge number) and ``direction`` (unit vector,
    MNI frame) list the sample points of every bundle; ``edges`` (E, 2) the region pairs.
    """

    edges: np.ndarray
    voxel: np.ndarray
    bundle: np.ndarray
    direction: np.ndarray
    length_mm: np.ndarray
    shape: tuple
    affine: np.ndarray


def build_bundles(model: CohortModel, anatomy: Anatomy, node_mm: float = 4.0,
                  wm_threshold: float = 0.4) -> Bundles:
    """Shortest white-matter paths between every pair of structurally connected regions.

    Nodes are white-matter points of a ``node_mm`` grid (26-neighbourhood, edge cost =
    distance / WM probability); the sources of region ``i`` are the white-matter nodes
    next to its voxels. Each path is extended at both ends into the region's nearest
    voxel, so streamlines that follow it end in the region.
    """
    g = model.geometry
    ext = g.ext_labels
    # white-matter nodes on a coarse grid in MNI mm, aligned with the FSL grid
    step = int(round(node_mm / abs(g.affine[0, 0])))
    sub_ijk = np.indices(tuple(int(np.ceil(s / step)) for s in ext.shape)).reshape(3, -1).T * step
    pts = sub_ijk @ g.affine[:3, :3].T + g.affine[:3, 3]
    wmp = _sample(anatomy.wm, anatomy.affine, pts)
    node = wmp > wm_threshold
    node_pts, node_ijk, node_w = pts[node], sub_ijk[node], wmp[node]
    n_nodes = len(node_pts)
    cshape = tuple(int(np.ceil(s / step)) for s in ext.shape)
    index = -np.ones(cshape, dtype=np.int64)
    index[tuple((node_ijk // step).T)] = np.arange(n_nodes)
    rows, cols, cost = [], [], []
    for off in np.indices((3, 3, 3)).reshape(3, -1).T - 1:
        if not off.any():
            continue
        nb = node_ijk // step + off
        ok = np.all((nb >= 0) & (nb < cshape), axis=1)
        tgt = np.full(n_nodes, -1)
        tgt[ok] = index[tuple(nb[ok].T)]
        ok = tgt >= 0
        d = node_mm * np.linalg.norm(off)
        rows.append(np.nonzero(ok)[0])
        cols.append(tgt[ok])
        cost.append(d / np.sqrt(node_w[ok] * node_w[tgt[ok]]))
    graph = sparse.csr_matrix((np.concatenate(cost), (np.concatenate(rows), np.concatenate(cols))),
                              shape=(n_nodes, n_nodes))
    # region voxels and the WM nodes next to them
    n_reg = g.n_regions
    lab_flat = ext.ravel()
    reg_vox = [np.flatnonzero(lab_flat == r + 1) for r in range(n_reg)]
    reg_pts = [np.stack(np.unravel_index(v, ext.shape), axis=1) @ g.affine[:3, :3].T + g.affine[:3, 3]
               for v in reg_vox]
    from scipy.spatial import cKDTree

    tree = cKDTree(node_pts)
    sources = []
    for r in range(n_reg):
        near = tree.query_ball_point(reg_pts[r][:: max(1, len(reg_pts[r]) // 200)], r=node_mm * 1.5)
        near = [np.asarray(x, dtype=np.int64) for x in near]
        s = np.unique(np.concatenate(near)) if len(near) else np.array([], np.int64)
        if len(s) == 0:  # fall back to the nearest node
            s = np.unique(tree.query(reg_pts[r][:5])[1])
        sources.append(s)
    iu = np.triu_indices(n_reg, 1)
    adj = model.template[iu] > 0
    edges = np.stack([iu[0][adj], iu[1][adj]], axis=1)
    by_source = {}
    for e, (i, j) in enumerate(edges):
        by_source.setdefault(i, []).append((e, j))
    seg_a, seg_b, seg_e = [], [], []
    length = np.zeros(len(edges))
    for i, targets in by_source.items():
        dist, pred, src = dijkstra(graph, indices=sources[i], min_only=True, return_predecessors=True)
        for e, j in targets:
            tj = sources[j]
            k = tj[np.argmin(dist[tj])]
            if not np.isfinite(dist[k]):
                continue
            path = [k]
            while pred[path[-1]] >= 0:
                path.append(pred[path[-1]])
            p = node_pts[path[::-1]]
            # extend into the two regions (nearest region voxel to each end)
            a_end = reg_pts[i][np.argmin(np.linalg.norm(reg_pts[i] - p[0], axis=1))]
            b_end = reg_pts[j][np.argmin(np.linalg.norm(reg_pts[j] - p[-1], axis=1))]
            p = np.vstack([a_end, p, b_end])
            seg_a.append(p[:-1])
            seg_b.append(p[1:])
            seg_e.append(np.full(len(p) - 1, e))
            length[e] = np.linalg.norm(np.diff(p, axis=0), axis=1).sum()
    a = np.vstack(seg_a)
    b = np.vstack(seg_b)
    e = np.concatenate(seg_e)
    vec = b - a
    seg_len = np.linalg.norm(vec, axis=1)
    keep = seg_len > 1e-6
    a, vec, e, seg_len = a[keep], vec[keep], e[keep], seg_len[keep]
    direction = vec / seg_len[:, None]
    n_samp = np.maximum(1, np.ceil(seg_len / 1.0).astype(int))  # a point per mm
    rep = np.repeat(np.arange(len(a)), n_samp)
    frac = (np.arange(len(rep)) - np.repeat(np.cumsum(n_samp) - n_samp, n_samp) + 0.5) / np.repeat(n_samp, n_samp)
    pts = a[rep] + vec[rep] * frac[:, None]
    vox = np.rint((pts - g.affine[:3, 3]) @ np.linalg.inv(g.affine[:3, :3]).T).astype(np.int64)
    ok = np.all((vox >= 0) & (vox < ext.shape), axis=1)
    flat = np.ravel_multi_index(tuple(vox[ok].T), ext.shape)
    return Bundles(edges, flat, e[rep][ok], direction[rep][ok].astype(np.float32), length, ext.shape,
                   g.affine.copy())


def fibre_tensor_field(bundles: Bundles, density: np.ndarray, smooth_vox: float = 0.8) -> np.ndarray:
    """Orientation tensor ``sum_b w_b d d^T`` per voxel (6 components xx, xy, xz, yy, yz, zz).

    ``density`` (246, 246) weights every bundle by the subject's fibre density.
    """
    w = density[bundles.edges[bundles.bundle, 0], bundles.edges[bundles.bundle, 1]]
    d = bundles.direction
    n = int(np.prod(bundles.shape))
    comps = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    field = np.stack([np.bincount(bundles.voxel, weights=w * d[:, a] * d[:, b], minlength=n)
                      .reshape(bundles.shape) for a, b in comps], axis=-1)
    if smooth_vox > 0:
        for c in range(6):
            field[..., c] = ndimage.gaussian_filter(field[..., c], smooth_vox)
    return field.astype(np.float32)


# --------------------------------------------------------------------------- diffusion

def gradient_table(rng: np.random.Generator, n_dirs: int, n_b0: int, bval: float):
    """``n_b0`` b=0 volumes and ``n_dirs`` electrostatically repelled directions (Jones 1999)."""
    from dipy.core.sphere import HemiSphere, disperse_charges

    v = rng.normal(size=(n_dirs, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    hemi, _ = disperse_charges(HemiSphere(xyz=v), 2000, const=0.05)
    dirs = hemi.vertices
    bvals = np.concatenate([np.zeros(n_b0), np.full(n_dirs, bval)])
    bvecs = np.vstack([np.zeros((n_b0, 3)), dirs])
    # interleave one b=0 in the middle when there are several
    if n_b0 > 1:
        order = [0] + list(range(n_b0, n_b0 + n_dirs // 2)) + list(range(1, n_b0)) + \
            list(range(n_b0 + n_dirs // 2, n_b0 + n_dirs))
        bvals, bvecs = bvals[order], bvecs[order]
    return bvals, bvecs


def multi_tensor_signal(bvals, gdirs, fractions_iso, d_iso, fibre_dirs, fibre_fractions,
                        evals=(1.7e-3, 0.3e-3, 0.3e-3)) -> np.ndarray:
    """Vectorised multi-compartment signal (per unit S0), as ``dipy.sims.voxel.multi_tensor``.

    Parameters
    ----------
    bvals : (G,)
    gdirs : (G, 3) unit gradient directions in the same frame as ``fibre_dirs``
    fractions_iso : (N, K) volume fractions of K isotropic compartments
    d_iso : (K,) their diffusivities (mm^2/s)
    fibre_dirs : (N, F, 3) unit directions of F fibre populations
    fibre_fractions : (N, F) their volume fractions
    evals : axially symmetric tensor eigenvalues of one fibre population

    Returns
    -------
    (N, G) signal; fractions should sum to 1 per voxel.
    """
    l1, l2 = evals[0], evals[1]
    s = fractions_iso @ np.exp(-np.outer(d_iso, bvals))
    cos2 = np.einsum("nfk,gk->nfg", fibre_dirs, gdirs) ** 2
    s += np.einsum("nf,nfg->ng", fibre_fractions, np.exp(-bvals[None, None, :] * (l2 + (l1 - l2) * cos2)))
    return s


# --------------------------------------------------------------------------- BOLD

def spm_hrf(tr: float, length_s: float = 32.0) -> np.ndarray:
    """SPM canonical double-gamma HRF sampled at ``tr`` (peak 6 s, undershoot 16 s, ratio 1/6)."""
    t = np.arange(0, length_s, tr)
    h = gamma.pdf(t, 6) - gamma.pdf(t, 16) / 6.0
    return h / h.sum()


#: Volumes simulated before each run and dropped, so the HRF-convolved signal starts stationary.
BURN_VOLUMES = 16


def neural_bold(sb, tr: float, burn: int = BURN_VOLUMES) -> np.ndarray:
    """Noise-free regional BOLD (time x extended region): network + global signal, HRF-convolved,
    the first ``burn`` volumes dropped (not standardised)."""
    neural = sb.signals + sb.global_signal
    hrf = spm_hrf(tr)
    return np.apply_along_axis(lambda s: np.convolve(s, hrf)[: len(s)], 0, neural)[burn:]


def motion_parameters(rng: np.random.Generator, n: int, p: ImageParams) -> np.ndarray:
    """(n, 6) trans_x, trans_y, trans_z (mm), rot_x, rot_y, rot_z (rad): random walk + spikes."""
    steps = rng.normal(0, 1, (n, 6))
    walk = np.cumsum(steps, axis=0) / np.sqrt(n)
    walk -= walk[0]
    walk[:, :3] *= p.motion_trans_mm
    walk[:, 3:] *= np.deg2rad(p.motion_rot_deg)
    for t in rng.choice(np.arange(5, n - 1), size=min(p.motion_spikes, max(n - 6, 0)), replace=False):
        walk[t, :3] += rng.normal(0, 1.0, 3)
        walk[t, 3:] += np.deg2rad(rng.normal(0, 0.8, 3))
    return walk


def _rigid_matrix(params6, centre) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = rotation_matrix(params6[3:])
    m[:3, 3] = centre - m[:3, :3] @ centre + params6[:3]
    return m


# --------------------------------------------------------------------------- cohort

def preset_image_params(preset: str = "demo", **overrides) -> ImageParams:
    """The image parameters of a preset (``PRESETS[preset]["images"]`` over the defaults),
    then ``overrides`` (None values ignored)."""
    from . import PRESETS

    settings = {**PRESETS[preset].get("images", {}), **{k: v for k, v in overrides.items() if v is not None}}
    return ImageParams(**settings)


@dataclass
class BidsCohort:
    bids_dir: Path
    truth_dir: Path
    participants: pd.DataFrame
    subjects: list
    planted: dict
    planted_table: pd.DataFrame
    sfc_true: dict
    megabytes: float
    seconds: float
    timings: dict


def simulate_bids_cohort(bids_dir, truth_dir=None, atlas_dir=None, n_per_group: dict | None = None,
                         null: bool = False, seed: int = 0, effects: Effects | None = None, n_sites: int = 2,
                         image_params: ImageParams | None = None, brain_params: BrainParams | None = None,
                         missing_fraction: float = 0.0, model: CohortModel | None = None,
                         n_jobs: int = 1) -> BidsCohort:
    """Write a synthetic BIDS dataset (T1w, DWI, resting BOLD) and its ground truth.

    Parameters
    ----------
    bids_dir : path-like
        The BIDS dataset: ``participants.tsv``, ``dataset_description.json``,
        ``sub-XXX/{anat,dwi,func}/...``. Nothing else is written there.
    truth_dir : path-like, optional
        Ground truth; default the sibling folder ``<bids_dir>_truth``.
    atlas_dir : path-like, optional
        Atlas images (default ``$SFC_ATLAS_DIR``); nothing is downloaded.
    n_per_group : dict
        Default the demo sizes ``{"TRD": 5, "nTRD": 5, "HC": 2}``.
    null, seed, effects, n_sites
        As in :func:`sfc.simulate.connectome.simulate_connectome_cohort` (the default
        effects here are the demo's strong ones: decoupling 0.9, hippocampus 1.0).
    image_params : ImageParams
    brain_params : BrainParams
        Default :data:`IMAGE_BRAIN_PARAMS` (stronger coupling than the connectome-level default).
    missing_fraction : float
        Share of ``education_years``/``bsi`` written as ``n/a`` (default 0 for the demo).
    n_jobs : int
        Subjects simulated in parallel (forked processes); the output is the same for any value.

    Returns
    -------
    BidsCohort
    """
    t_start = time.perf_counter()
    ip = image_params or ImageParams()
    bids_dir = Path(bids_dir)
    truth_dir = Path(truth_dir) if truth_dir else bids_dir.with_name(bids_dir.name + "_truth")
    n_per_group = dict(DEMO_SIZES if n_per_group is None else n_per_group)
    burn = BURN_VOLUMES
    bp = brain_params or IMAGE_BRAIN_PARAMS
    bp = replace(bp, n_timepoints=ip.n_volumes + burn)
    if model is None:
        effects = effects or Effects(trd_decoupling=0.9, hipp_bsi=1.0)
        model = build_model(atlas_dir, seed, effects, null, bp, n_sites)
    else:
        model = replace(model, params=bp)
    timings = {}
    t0 = time.perf_counter()
    anatomy = load_anatomy()
    timings["anatomy"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    bundles = build_bundles(model, anatomy)
    timings["bundles"] = time.perf_counter() - t0
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,)))
    table, bsi_true = simulate_participants(n_per_group, rng, n_sites, missing_fraction)
    subjects = [pid[4:] for pid in table["participant_id"]]
    bids_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    write_tsv(bids_dir / "participants.tsv", table)
    (bids_dir / "participants.json").write_text(json.dumps(PARTICIPANTS_JSON, indent=2))
    (bids_dir / "dataset_description.json").write_text(json.dumps({
        "Name": "sfc-workflow synthetic demo cohort", "BIDSVersion": "1.9.0", "DatasetType": "raw",
        "License": "CC0", "Authors": ["sfc-workflow"],
        "GeneratedBy": [{"Name": "sfc.simulate", "Description": f"seed {seed}, null={null}"}]}, indent=2))
    (bids_dir / "README").write_text("Synthetic cohort made by `python -m sfc.simulate images`; "
                                     f"ground truth in {truth_dir.name}/ (not part of this dataset).\n")
    sfc_true = {a: [] for a in model.labels}
    info = []
    shared = dict(model=model, anatomy=anatomy, bundles=bundles, table=table, bsi_true=bsi_true, seed=seed,
                  ip=ip, bids_dir=bids_dir, truth_dir=truth_dir, burn=burn)
    for sub, sfc_sub, row, seconds in _map_subjects(shared, subjects, n_jobs):
        for atlas, s in sfc_sub.items():
            sfc_true[atlas].append(s)
        info.append(row)
        timings[f"sub-{sub}"] = seconds
    pids = table["participant_id"]
    out_true = {}
    for atlas in model.labels:
        out_true[atlas] = pd.DataFrame(np.array(sfc_true[atlas]), index=pids,
                                       columns=model.labels[atlas]["name"].tolist())
        out_true[atlas].reset_index().to_csv(truth_dir / f"atlas-{atlas}_desc-true_sfc.tsv", sep="\t",
                                             index=False, float_format="%.6g", na_rep="n/a")
    write_tsv(truth_dir / "subjects.tsv", pd.DataFrame(info))
    ptab = planted_table(model)
    write_tsv(truth_dir / "planted.tsv", ptab)
    planted = {a: {eff: ptab.loc[(ptab.atlas == a) & (ptab.effect == eff) & ptab.planted, "name"].tolist()
                   for eff in ("trd_decoupling", "hipp_bsi")} for a in model.labels}
    (truth_dir / "planted.json").write_text(json.dumps(dict(
        seed=seed, null=null, n_per_group=n_per_group, n_sites=n_sites, effects=asdict(model.effects),
        brain_params=asdict(model.params), image_params=asdict(ip), planted=planted,
        generator="sfc.simulate.images", template_space="MNI152 ICBM 2009 sym (nilearn) == atlas space",
        transform_convention="x_MNI = A @ y_scanner + u(y_scanner); A in *_xfm.txt (4x4), u in *_warp.nii.gz (mm)",
        motion_convention=("volume t at scanner point y shows the head content of the motion-free volume at "
                           "R_t (y - c) + c + d_t, c the grid centre; columns trans_x..z (mm), rot_x..z (rad)")),
        indent=2, default=list))
    mb = sum(f.stat().st_size for f in bids_dir.rglob("*") if f.is_file()) / 2 ** 20
    return BidsCohort(bids_dir, truth_dir, table, subjects, planted, ptab, out_true, mb,
                      time.perf_counter() - t_start, timings)


PARTICIPANTS_JSON = {
    "group": {"Description": "TRD: treatment-resistant depression; nTRD: non-TRD (responders); HC: healthy controls"},
    "age": {"Description": "age", "Units": "years"},
    "sex": {"Description": "sex", "Levels": {"F": "female", "M": "male"}},
    "site": {"Description": "acquisition site"},
    "education_years": {"Description": "years of education", "Units": "years"},
    "hamd24_pre": {"Description": "Hamilton Depression Rating Scale (24 items) before treatment"},
    "hamd24_post": {"Description": "Hamilton Depression Rating Scale (24 items) after treatment"},
    "bsi": {"Description": "Beck Scale for Suicide Ideation (0-38)"},
    "onset_age": {"Description": "age at onset of depression", "Units": "years"},
    "illness_duration": {"Description": "duration of illness", "Units": "years"},
}


def _bids_path(bids_dir, sub, datatype, suffix) -> Path:
    return Path(paths.subject_file(bids_dir, datatype, suffix, sub))


def _write_t1w(bids_dir, sub, anatomy: Anatomy, xf: SubjectTransform, ip: ImageParams, rng, tdir) -> None:
    shape, aff = scan_grid(ip.t1_voxel, ip.t1_fov)
    y = grid_points(shape, aff)
    x = xf.to_mni(y)
    t1 = _sample(anatomy.t1, anatomy.affine, x) + _sample(anatomy.head, anatomy.affine, x)
    # smooth multiplicative bias field in scanner space (random 2nd-order polynomial)
    yn = y / (np.array(ip.t1_fov) / 2)
    terms = np.stack([yn[:, 0], yn[:, 1], yn[:, 2], yn[:, 0] * yn[:, 1], yn[:, 0] * yn[:, 2],
                      yn[:, 1] * yn[:, 2], yn[:, 0] ** 2, yn[:, 1] ** 2, yn[:, 2] ** 2], axis=1)
    bias = np.exp(terms @ rng.normal(0, 0.06, 9))
    wm_level = 1000.0
    sig = t1 * bias * wm_level
    img = _rician(rng, sig, ip.t1_noise * wm_level).reshape(shape)
    _save(np.clip(np.rint(img), 0, 32767), aff, _bids_path(bids_dir, sub, "anat", "T1w.nii.gz"))
    _write_json(_bids_path(bids_dir, sub, "anat", "T1w.json"),
                {"Modality": "MR", "MagneticFieldStrength": 3, "RepetitionTime": 2.3, "EchoTime": 0.00298,
                 "InversionTime": 0.9, "FlipAngle": 9, "Synthetic": True})
    np.savetxt(tdir / f"sub-{sub}_from-T1w_to-MNI_xfm.txt", xf.affine, fmt="%.8f")
    warp_img = nib.Nifti1Image(xf.warp, xf.warp_affine)
    nib.save(warp_img, str(tdir / f"sub-{sub}_from-T1w_to-MNI_warp.nii.gz"))


def _write_json(path, data) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2))


def _tissue_fractions(anatomy: Anatomy, x: np.ndarray, n_vox: int, sub: int):
    """Mean GM, WM, CSF fractions of each voxel from ``sub**3`` sub-samples at MNI points ``x``."""
    out = []
    for vol in (anatomy.gm, anatomy.wm, anatomy.csf):
        out.append(_sample(vol, anatomy.affine, x).reshape(n_vox, sub ** 3).mean(axis=1))
    gm, wm, csf = out
    tot = gm + wm + csf
    scale = np.where(tot > 1, 1 / np.maximum(tot, 1e-9), 1.0)
    return gm * scale, wm * scale, csf * scale


def _write_dwi(bids_dir, sub, anatomy, model, bundles, sb, xf, ip: ImageParams, rng, tdir) -> None:
    rigid = random_rigid(rng, ip.scan_rotation_deg, ip.scan_translation_mm)
    sxf = xf.with_rigid(rigid)
    shape, aff = scan_grid(ip.dwi_voxel, ip.epi_fov)
    n_vox = int(np.prod(shape))
    sub_s = 2
    x = sxf.to_mni(grid_points(shape, aff, sub_s), sub_s)
    gm, wm, csf = _tissue_fractions(anatomy, x, n_vox, sub_s)
    xc = x.reshape(n_vox, sub_s ** 3, 3).mean(axis=1)
    inside = (gm + wm + csf) > 0.05
    field = fibre_tensor_field(bundles, sb.sc_density)
    t = np.stack([_sample(field[..., c], bundles.affine, xc[inside]) for c in range(6)], axis=1)
    tens = np.zeros((len(t), 3, 3), np.float32)
    for c, (a, b) in enumerate([(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]):
        tens[:, a, b] = tens[:, b, a] = t[:, c]
    evals, evecs = np.linalg.eigh(tens)   # ascending
    l1, l2 = evals[:, 2], evals[:, 1]
    has = l1 > 1e-6 * max(float(l1.max(initial=0)), 1e-12)
    second = has & (l2 > 0.3 * l1)
    f1 = np.where(second, l1 / np.maximum(l1 + l2, 1e-12), 1.0)
    f2 = np.where(second, 1 - f1, 0.0)
    # MNI directions -> scanner frame of this scan (inverse of the linear part)
    a_inv = np.linalg.inv(sxf.affine[:3, :3])
    d1 = evecs[:, :, 2] @ a_inv.T
    d2 = evecs[:, :, 1] @ a_inv.T
    d1 /= np.linalg.norm(d1, axis=1, keepdims=True)
    d2 /= np.linalg.norm(d2, axis=1, keepdims=True)
    wm_i = wm[inside]
    # white matter without bundles: a low-anisotropy tensor compartment (isotropic 0.8e-3)
    fib_frac = np.stack([f1, f2], axis=1) * np.where(has, wm_i, 0)[:, None]
    iso = np.stack([csf[inside], gm[inside], np.where(has, 0, wm_i)], axis=1)
    bvals, bvecs = gradient_table(rng, ip.n_directions, ip.n_b0, ip.bval)
    # bvecs are written in voxel axes of an LAS image (FSL convention, no flip): world = (-bx, by, bz)
    g_world = bvecs * np.array([-1.0, 1.0, 1.0])
    sig = multi_tensor_signal(bvals, g_world, iso, np.array([3.0e-3, 0.8e-3, 0.8e-3]),
                              np.stack([d1, d2], axis=1), fib_frac)
    s0 = 800.0 * wm_i + 1000.0 * gm[inside] + 2000.0 * csf[inside]
    data = np.zeros((n_vox, len(bvals)), np.float32)
    data[inside] = sig * s0[:, None]
    sigma = 800.0 / ip.dwi_snr
    data = _rician(rng, data, sigma)
    img = np.clip(np.rint(data), 0, 32767).reshape(*shape, len(bvals))
    _save(img, aff, _bids_path(bids_dir, sub, "dwi", "dwi.nii.gz"))
    stem = _bids_path(bids_dir, sub, "dwi", "dwi")
    Path(str(stem) + ".bval").write_text(" ".join(f"{b:g}" for b in bvals) + "\n")
    Path(str(stem) + ".bvec").write_text("\n".join(" ".join(f"{v:.6f}" for v in row) for row in bvecs.T) + "\n")
    _write_json(str(stem) + ".json", {"Modality": "MR", "MagneticFieldStrength": 3, "EchoTime": 0.089,
                                      "RepetitionTime": 8.0, "PhaseEncodingDirection": "j-",
                                      "TotalReadoutTime": 0.05, "Synthetic": True})
    np.savetxt(tdir / f"sub-{sub}_from-dwi_to-MNI_xfm.txt", sxf.affine, fmt="%.8f")


def _write_bold(bids_dir, sub, anatomy, model, sb, xf, ip: ImageParams, rng, tdir, burn: int) -> None:
    rigid = random_rigid(rng, ip.scan_rotation_deg, ip.scan_translation_mm)
    sxf = xf.with_rigid(rigid)
    shape, aff = scan_grid(ip.bold_voxel, ip.epi_fov)
    n_vox = int(np.prod(shape))
    sub_s = 2
    x = sxf.to_mni(grid_points(shape, aff, sub_s), sub_s)
    gm, wm, csf = _tissue_fractions(anatomy, x, n_vox, sub_s)
    g = model.geometry
    lab = _sample(g.ext_labels.astype(np.float32), g.affine, x, order=0)
    gmp = _sample(anatomy.gm, anatomy.affine, x)
    vox_id = np.repeat(np.arange(n_vox), sub_s ** 3)
    ok = lab > 0
    mix = sparse.csr_matrix((gmp[ok] / sub_s ** 3, (vox_id[ok], lab[ok].astype(int) - 1)),
                            shape=(n_vox, g.n_regions))
    inside = (gm + wm + csf) > 0.05
    n_t = ip.n_volumes
    # neural signals (network + global) -> HRF -> standardised
    bold = neural_bold(sb, ip.tr, burn)
    bold = (bold - bold.mean(0)) / bold.std(0).mean()
    tt = np.arange(n_t) * ip.tr
    resp = np.sin(2 * np.pi * 0.11 * tt + rng.uniform(0, 2 * np.pi)) + brain.ar1_noise(rng, n_t, 1, 0.8)[:, 0]
    card = np.sin(2 * np.pi * 0.23 * tt + rng.uniform(0, 2 * np.pi)) + brain.ar1_noise(rng, n_t, 1, 0.5)[:, 0]
    resp, card = (resp - resp.mean()) / resp.std(), (card - card.mean()) / card.std()
    drift_shapes = np.stack([np.linspace(-1, 1, n_t), np.cos(np.pi * np.arange(n_t) / n_t)], axis=1)
    drift_w = rng.normal(0, 1, (n_vox, 2)) * ip.bold_drift
    s0 = (600.0 * wm + 800.0 * gm + 1200.0 * csf).astype(np.float32)
    mix = mix[inside]
    idx = np.flatnonzero(inside)
    rel = (ip.bold_signal * (mix @ bold.T)                             # (n_in, T)
           + ip.bold_physio * (np.outer(wm[idx], resp) + np.outer(csf[idx], 2 * card + resp))
           + drift_w[idx] @ drift_shapes.T)
    data = np.zeros((n_vox, n_t), np.float32)
    data[idx] = s0[idx, None] * (1 + rel)
    data += rng.normal(0, 800.0 / ip.bold_tsnr, data.shape).astype(np.float32) * inside[:, None]
    data = data.reshape(*shape, n_t)
    # rigid head motion, resampled volume by volume about the grid centre
    motion = motion_parameters(rng, n_t, ip)
    centre_vox = (np.array(shape) - 1) / 2
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    vox_to_mm = aff[:3, :3]
    mm_to_vox = np.linalg.inv(vox_to_mm)
    vols = np.ascontiguousarray(np.moveaxis(data, -1, 0))
    rel_mm = (vox_to_mm @ (ijk - centre_vox[:, None].astype(np.float32))).astype(np.float32)
    out = np.empty(data.shape, np.float32)
    for t in range(n_t):
        m = _rigid_matrix(motion[t], np.zeros(3))
        src = (mm_to_vox @ m[:3, :3]).astype(np.float32) @ rel_mm + \
            (mm_to_vox @ m[:3, 3] + centre_vox).astype(np.float32)[:, None]
        out[..., t] = ndimage.map_coordinates(vols[t], src, order=1, mode="nearest",
                                              prefilter=False).reshape(shape)
    img = np.clip(np.rint(out), 0, 32767)
    _save(img, aff, _bids_path(bids_dir, sub, "func", "task-rest_bold.nii.gz"), zooms_t=ip.tr)
    _write_json(_bids_path(bids_dir, sub, "func", "task-rest_bold.json"),
                {"TaskName": "rest", "RepetitionTime": ip.tr, "EchoTime": 0.03, "Modality": "MR",
                 "MagneticFieldStrength": 3, "PhaseEncodingDirection": "j-", "Synthetic": True})
    pd.DataFrame(motion, columns=["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]).to_csv(
        tdir / f"sub-{sub}_task-rest_desc-motion_truth.tsv", sep="\t", index=False, float_format="%.6g")
    np.savetxt(tdir / f"sub-{sub}_from-bold_to-MNI_xfm.txt", sxf.affine, fmt="%.8f")
    names = model.labels["BNA246"]["name"].tolist()
    pd.DataFrame(bold, columns=names).to_csv(tdir / f"sub-{sub}_task-rest_desc-neural_timeseries.tsv", sep="\t",
                                             index=False, float_format="%.5g")


# The per-subject work, run in forked worker processes: ``_SHARED`` (model, anatomy, bundles:
# read-only and large) reaches them by fork, not by pickling. Every subject draws from its own
# seed (``spawn_key=(3, k)``, and :func:`simulate_subject` by index), so the output does not
# depend on the number of workers or on the order they finish in.
_SHARED: dict = {}


def _simulate_one(k: int, sub: str):
    g = _SHARED
    model, table, ip, bids_dir, truth_dir = g["model"], g["table"], g["ip"], g["bids_dir"], g["truth_dir"]
    anatomy = g["anatomy"]
    t0 = time.perf_counter()
    site = int(table["site"].iloc[k].removeprefix("site")) - 1
    sb = simulate_subject(model, k, table["group"].iloc[k], g["bsi_true"][k], site)
    srng = np.random.default_rng(np.random.SeedSequence(g["seed"], spawn_key=(3, k)))
    xf = random_transform(srng, ip)
    tdir = truth_dir / f"sub-{sub}"
    tdir.mkdir(parents=True, exist_ok=True)
    _write_t1w(bids_dir, sub, anatomy, xf, ip, srng, tdir)
    _write_dwi(bids_dir, sub, anatomy, model, g["bundles"], sb, xf, ip, srng, tdir)
    _write_bold(bids_dir, sub, anatomy, model, sb, xf, ip, srng, tdir, g["burn"])
    sfc_sub = {}
    for atlas, m in sb.atlas.items():
        sm = model.geometry.signal_mixing(atlas)
        fc = brain.cov_to_corr(sm @ sb.signal_cov @ sm.T)
        write_matrix_fast(tdir / f"sub-{sub}_atlas-{atlas}_desc-true_sc.tsv", m["sc_true"])
        write_matrix_fast(tdir / f"sub-{sub}_atlas-{atlas}_desc-true_fc.tsv", np.round(fc, 6))
        s = brain.sfc_spearman(m["sc_true"], fc)
        sfc_sub[atlas] = s
        pd.DataFrame({"index": model.labels[atlas]["index"], "name": model.labels[atlas]["name"], "sfc": s}) \
            .to_csv(tdir / f"sub-{sub}_atlas-{atlas}_desc-true_sfc.tsv", sep="\t", index=False,
                    float_format="%.6g", na_rep="n/a")
    masks = model.effect_masks()
    row = dict(participant_id=f"sub-{sub}", group=table["group"].iloc[k], site=table["site"].iloc[k],
               bsi_true=g["bsi_true"][k], coupling=sb.coupling,
               trd_decoupling=float(sb.strengths[masks["trd_decoupling"]].max(initial=0)),
               hipp_rewired=float(sb.strengths[masks["hipp_bsi"]].max(initial=0)))
    return sub, sfc_sub, row, time.perf_counter() - t0


def _map_subjects(shared: dict, subjects: list[str], n_jobs: int):
    """``_simulate_one`` for every subject, in subject order; ``n_jobs`` forked workers."""
    global _SHARED
    _SHARED = shared
    try:
        n_jobs = max(1, min(int(n_jobs), len(subjects)))
        if n_jobs == 1:
            return [_simulate_one(k, sub) for k, sub in enumerate(subjects)]
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_simulate_one, range(len(subjects)), subjects))
    finally:
        _SHARED = {}
