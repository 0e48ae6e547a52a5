"""The simulated brain: one geometry, one group structural template, per-subject truth.

Both atlases look at the same brain. The brain is simulated on *extended
Brainnetome regions*: every voxel of the FSL MNI152 2 mm grid that either atlas
labels belongs to the BNA-246 region it is in, or (outside BNA-246) to the
nearest one. Streamlines end uniformly over a region's voxels and each voxel
carries its region's neural signal plus its own thermal noise, so

- BNA-246 sees region ``i`` through the voxels that BNA-246 labels ``i``;
- HOA sees region ``a`` as the voxel-weighted mixture of the extended BNA regions
  that overlap it (signals averaged over its voxels, streamlines counted by
  where their end points fall).

Function on structure is the spatial autoregressive (SAR) model, the stationary
form of a linear stochastic network, ``x = g F x + e`` (Messé et al. 2014, PLoS
Comput Biol 10:e1003530), with ``F`` the subject's structural connectome scaled
to unit spectral radius. A planted *decoupling* of strength ``d`` at region ``i``
makes the share ``d`` of that region's signal variance come from a random region
it has no fibres to (non-structural input, :func:`decoupling_operator`), so its FC
row decorrelates from its SC row while its fibres stay the same.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage


@dataclass
class Geometry:
    """Voxel-level bookkeeping between the extended BNA regions and the two atlases.

    Attributes
    ----------
    affine : ndarray (4, 4)
        Grid of the atlas images (FSL MNI152 2 mm).
    ext_labels : ndarray of int16, grid shape
        Extended BNA label (1..246) of every voxel either atlas labels, else 0.
    bna_labels, hoa_labels : ndarray of int16
        The atlas images (values 1..N in label-table order).
    centroids : ndarray (246, 3)
        Centroids of the extended regions in mm.
    n_ext : ndarray (246,)
        Voxels per extended region.
    overlap : dict atlas -> ndarray (N_atlas, 246)
        Voxels of atlas region ``a`` whose extended label is ``i``.
    clusters : ndarray (K, 3)
        Unique (ext label, BNA label, HOA label) voxel clusters (0 = unlabelled).
    cluster_size : ndarray (K,)
    """

    affine: np.ndarray
    ext_labels: np.ndarray
    bna_labels: np.ndarray
    hoa_labels: np.ndarray
    centroids: np.ndarray
    n_ext: np.ndarray
    overlap: dict
    clusters: np.ndarray
    cluster_size: np.ndarray
    label_tables: dict = field(default_factory=dict)

    @property
    def n_regions(self) -> int:
        return len(self.n_ext)

    def signal_mixing(self, atlas: str) -> np.ndarray:
        """(N_atlas, 246): atlas region signal = mixing @ extended-region signals."""
        ov = self.overlap[atlas].astype(float)
        return ov / ov.sum(axis=1, keepdims=True)

    def endpoint_mixing(self, atlas: str) -> np.ndarray:
        """(246, N_atlas): fraction of extended region i's streamline ends in atlas region a."""
        return (self.overlap[atlas].astype(float) / self.n_ext[None, :]).T

    def noise_mixing(self, atlas: str) -> np.ndarray:
        """(N_atlas, K): atlas region noise = mixing @ cluster mean noise."""
        col = 1 if atlas == "BNA246" else 2
        n_atlas = self.overlap[atlas].shape[0]
        lab = self.clusters[:, col]
        mix = np.zeros((n_atlas, len(lab)))
        keep = lab > 0
        mix[lab[keep] - 1, np.nonzero(keep)[0]] = self.cluster_size[keep]
        return mix / mix.sum(axis=1, keepdims=True)


def build_geometry(bna_img, hoa_img, label_tables: dict | None = None) -> Geometry:
    """Derive :class:`Geometry` from the two atlas images (same grid).

    Parameters
    ----------
    bna_img, hoa_img : nibabel images
        BNA-246 and HOA with values 1..N (``sfc.atlases.load_atlas_image``).
    """
    bna = np.rint(np.asanyarray(bna_img.dataobj)).astype(np.int16)
    hoa = np.rint(np.asanyarray(hoa_img.dataobj)).astype(np.int16)
    if bna.shape != hoa.shape or not np.allclose(bna_img.affine, hoa_img.affine, atol=1e-3):
        raise ValueError("BNA246 and HOA images must be on the same grid")
    n_bna = int(bna.max())
    # nearest BNA label for voxels that only HOA labels
    _, idx = ndimage.distance_transform_edt(bna == 0, return_indices=True)
    nearest = bna[tuple(idx)]
    ext = np.where((bna > 0) | (hoa > 0), nearest, 0).astype(np.int16)
    n_ext = np.bincount(ext.ravel(), minlength=n_bna + 1)[1:]
    ijk = np.argwhere(ext > 0)
    xyz = ijk @ bna_img.affine[:3, :3].T + bna_img.affine[:3, 3]
    lab = ext[ext > 0]
    centroids = np.stack([np.bincount(lab, weights=xyz[:, c], minlength=n_bna + 1)[1:] / n_ext
                          for c in range(3)], axis=1)
    overlap = {}
    for name, img in (("BNA246", bna), ("HOA", hoa)):
        n_atlas = int(img.max())
        m = (img > 0) & (ext > 0)
        ov = np.zeros((n_atlas, n_bna), dtype=np.int64)
        np.add.at(ov, (img[m] - 1, ext[m] - 1), 1)
        overlap[name] = ov
    m = ext > 0
    triples = np.stack([ext[m], bna[m], hoa[m]], axis=1).astype(np.int64)
    clusters, size = np.unique(triples, axis=0, return_counts=True)
    return Geometry(affine=bna_img.affine.copy(), ext_labels=ext, bna_labels=bna, hoa_labels=hoa,
                    centroids=centroids, n_ext=n_ext, overlap=overlap, clusters=clusters,
                    cluster_size=size, label_tables=dict(label_tables or {}))


def homotopic_pairs(n: int) -> np.ndarray:
    """BNA-246 pairs (left, right): odd labels are left, the next even label its homologue."""
    return np.stack([np.arange(0, n, 2), np.arange(1, n, 2)], axis=1)


def template_sc(centroids: np.ndarray, rng: np.random.Generator, density: float = 0.3,
                length_scale: float = 30.0, weight_scale: float = 25.0, spread: float = 0.8,
                interhemispheric: float = 0.25) -> np.ndarray:
    """A group structural connectome with the exponential distance rule.

    Edge probability ``~ exp(-d / length_scale)`` (Ercsey-Ravasz et al. 2013,
    Neuron 80:184; Roberts et al. 2016, NeuroImage 124:379), damped between
    hemispheres except for homotopic pairs, which are always connected; weights
    ``exp(-d / weight_scale)`` times a log-normal factor. Symmetric, zero diagonal,
    every region with at least 8 neighbours.
    """
    n = len(centroids)
    d = np.linalg.norm(centroids[:, None, :] - centroids[None, :, :], axis=-1)
    left = centroids[:, 0] < 0
    cross = left[:, None] != left[None, :]
    p = np.exp(-d / length_scale) * np.where(cross, interhemispheric, 1.0)
    iu = np.triu_indices(n, 1)
    u = rng.random(len(iu[0]))
    # scale the probabilities to the target density
    target = density * len(iu[0])
    lo, hi = 0.01, 100.0
    for _ in range(60):
        c = np.sqrt(lo * hi)
        if np.minimum(p[iu] * c, 1).sum() < target:
            lo = c
        else:
            hi = c
    edge = u < np.minimum(p[iu] * c, 1)
    adj = np.zeros((n, n), bool)
    adj[iu] = edge
    adj |= adj.T
    hp = homotopic_pairs(n)
    adj[hp[:, 0], hp[:, 1]] = adj[hp[:, 1], hp[:, 0]] = True
    # every region gets at least 8 neighbours (its nearest ones)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :8]
    rows = np.repeat(np.arange(n), 8)
    adj[rows, nearest.ravel()] = True
    adj[nearest.ravel(), rows] = True
    np.fill_diagonal(adj, False)
    np.fill_diagonal(d, 0)
    w = np.exp(-d / weight_scale) * np.exp(rng.normal(0, spread, (n, n)))
    w = np.triu(w, 1)
    w = w + w.T
    w[hp[:, 0], hp[:, 1]] *= 3.0
    w[hp[:, 1], hp[:, 0]] *= 3.0
    sc = np.where(adj, w, 0.0)
    return sc / sc.sum() * n  # mean strength 1


def decoupling_operator(a: np.ndarray, cov: np.ndarray, strength: np.ndarray,
                        rng: np.random.Generator, candidates: np.ndarray | None = None,
                        n_partners: int = 1) -> np.ndarray:
    """Linear map ``B`` with ``x' = B x``: planted regions partly driven by non-structural input.

    For region ``i`` with ``strength[i] = d > 0`` the observed signal becomes
    ``sqrt(1 - d) x_i + sqrt(d) u_i``, where ``u_i = sum_k P_ik x_k`` is input from
    random partners: the region's strongest structural weights ``a[i]`` moved to random
    regions (by default one) that have no fibres to ``i`` (so the FC entries that rise lie outside
    every SC > 0 mask and other regions' coupling is left alone), scaled so that
    ``var(u_i) = var(x_i)``. All other signals stay as they are, so the network
    elsewhere is untouched and only the FC entries of planted regions change; the
    region's FC row decorrelates from its SC row as ``d`` grows.

    Parameters
    ----------
    a : ndarray (N, N)
        Structural weights (symmetric, zero diagonal).
    cov : ndarray (N, N)
        Covariance of the signals ``x``.
    strength : ndarray (N,)
        Replaced fraction ``d`` per region (0 = untouched).
    rng : numpy.random.Generator
    candidates : ndarray of bool, optional
        Regions whose random partners are drawn even at ``d = 0`` (so that a cohort
        with and one without effects share every other random number).
    n_partners : int
        Number of random partners (default 1: the region takes over the activity of
        one remote region). More partners average towards the global mode and raise
        the planted region's FC with every region, which would disturb the coupling
        of all regions linked to it (checked: 10 partners did, 1 does not).
    """
    n = len(a)
    b = np.eye(n)
    cand = strength > 0 if candidates is None else (np.asarray(candidates) | (strength > 0))
    for i in np.nonzero(cand)[0]:
        weights = np.sort(a[i][a[i] > 0])[::-1][:n_partners]
        # random partners among regions without fibres to i (then the FC entries they
        # change are outside every SC > 0 mask); more partners than that: any others
        free = np.flatnonzero(a[i] == 0)
        free = free[free != i]
        linked = np.flatnonzero(a[i] > 0)
        order = np.concatenate([rng.permutation(free), rng.permutation(linked)])
        p = np.zeros(n)
        p[order[:len(weights)]] = rng.permutation(weights)
        if strength[i] <= 0:
            continue
        var_u = p @ cov @ p
        if var_u <= 0:
            continue
        p *= np.sqrt(cov[i, i] / var_u)
        d = float(strength[i])
        b[i] = np.sqrt(d) * p
        b[i, i] = np.sqrt(1 - d)
    return b


def sar_mixing(f: np.ndarray, coupling: float) -> np.ndarray:
    """``M = (I - g F / rho(F))^-1``: signals ``x = M e`` for independent inputs ``e``."""
    rho = np.max(np.abs(np.linalg.eigvalsh(f)))
    n = len(f)
    return np.linalg.inv(np.eye(n) - coupling * f / rho)


def ar1_noise(rng: np.random.Generator, n_time: int, n: int, phi: float) -> np.ndarray:
    """Unit-variance AR(1) series, shape (n_time, n)."""
    e = rng.standard_normal((n_time, n))
    out = np.empty_like(e)
    out[0] = e[0]
    s = np.sqrt(1 - phi ** 2)
    for t in range(1, n_time):
        out[t] = phi * out[t - 1] + s * e[t]
    return out


def cov_to_corr(c: np.ndarray) -> np.ndarray:
    s = np.sqrt(np.diag(c))
    r = c / s[:, None] / s[None, :]
    np.fill_diagonal(r, 1.0)
    return r


def sfc_spearman(sc: np.ndarray, fc: np.ndarray, min_neighbours: int = 3) -> np.ndarray:
    """Regional structure-function coupling (Baum et al. 2020, PNAS 117:771).

    For every region ``i``: Spearman correlation, over ``j != i`` with
    ``sc[i, j] > 0``, between ``sc[i, j]`` and ``fc[i, j]`` (average ranks for ties).
    NaN where fewer than ``min_neighbours`` such ``j`` exist or a row is constant.
    Used here only to state the generator's truth; the workflow's own
    implementation lives in ``sfc.coupling``.
    """
    from scipy.stats import rankdata

    sc = np.asarray(sc, float)
    fc = np.asarray(fc, float)
    n = len(sc)
    mask = sc > 0
    np.fill_diagonal(mask, False)
    mask &= np.isfinite(fc)
    rs = rankdata(np.where(mask, sc, np.nan), axis=1, nan_policy="omit")
    rf = rankdata(np.where(mask, fc, np.nan), axis=1, nan_policy="omit")
    k = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rs = rs - np.nanmean(rs, axis=1, keepdims=True)
        rf = rf - np.nanmean(rf, axis=1, keepdims=True)
        num = np.nansum(rs * rf, axis=1)
        den = np.sqrt(np.nansum(rs ** 2, axis=1) * np.nansum(rf ** 2, axis=1))
        out = num / den
    out[(k < min_neighbours) | (den == 0)] = np.nan
    assert out.shape == (n,)
    return out


def pearson_columns(y: np.ndarray) -> np.ndarray:
    """Pearson correlation matrix of the columns of ``y`` (diagonal 1)."""
    y = y - y.mean(axis=0)
    c = y.T @ y
    return cov_to_corr(c)
