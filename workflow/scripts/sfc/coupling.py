"""Regional structure-function coupling (SFC): one value per region and subject.

Three measures, each computed for all regions (and, for ``spearman``, all
subjects) at once:

``spearman``
    Baum et al. (2020) PNAS 117:771: for region *i*, the Spearman correlation
    between row *i* of the structural connectome (SC) and row *i* of the
    functional connectome (FC), over the regions *j != i* with ``SC_ij > 0``.
    This is the study's measure.
``communication``
    Vázquez-Rodríguez et al. (2019) PNAS 116:21219: for region *i*, the
    adjusted R² of a multiple linear regression of FC row *i* on Euclidean
    distance, shortest-path length and communicability (the last two derived
    from the SC), over *j != i*.
``sdi``
    Preti & Van De Ville (2019) Nat Commun 10:4747: structural decoupling index,
    the ratio of the norms of the high- and low-frequency parts of the regional
    time series, after a graph Fourier transform on the group-average
    structural Laplacian.

Array conventions: a single subject's matrices are ``(N, N)``; a batch is
``(S, N, N)``; results are ``(N,)`` or ``(S, N)`` with NaN where a region has
too few structural neighbours (or no signal).  SC must be finite (a NaN in SC
is an error: the reader rejects it with the file name); NaN in FC marks missing
values and those edges are left out.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import io
from .errors import InputError

METHODS = ("spearman", "communication", "sdi")

# Subjects processed together by the batched Spearman kernel: 2 x 246 x 246
# 64-bit keys are 1 MB, so they stay in the CPU cache between the passes.
_CHUNK_ELEMENTS = 150_000


# ---------------------------------------------------------------------------
# Spearman (Baum et al. 2020), batched
# ---------------------------------------------------------------------------

def _payload_bits(n: int) -> int:
    """Bits needed for a column index (< n) and a doubled rank (<= 2n)."""
    return max(1, int(2 * n).bit_length())


def _tie_ranks(eq: np.ndarray, count: np.ndarray):
    """Average ranks (scipy's 'average' method) for sorted rows that contain ties.

    Parameters
    ----------
    eq : ndarray of bool, shape (R, N - 1)
        ``eq[r, p]``: sorted positions p and p + 1 of row r hold equal values.
    count : ndarray, shape (R,)
        Number of valid (leading) positions per row; the rest are padding.

    Returns
    -------
    rank2 : ndarray of uint32, shape (R, N)
        Twice the 1-based average rank at each sorted position (0 in padding).
    correction : ndarray of float64, shape (R,)
        Sum of ``t**3 - t`` over the tie groups of the valid positions.

    Notes
    -----
    Tie groups are found on the flattened array (a group starts wherever the
    value changes or a row begins); ``np.repeat`` spreads each group's rank
    over its members. No per-row loop and no ufunc.accumulate (slow on short rows).
    """
    rows, m = eq.shape
    n = m + 1
    new = np.empty((rows, n), dtype=bool)
    new[:, 0] = True
    np.logical_not(eq, out=new[:, 1:])
    starts = np.flatnonzero(new)
    size = np.diff(starts, append=rows * n)
    row = starts // n
    first = starts - row * n                                    # 0-based position in its row
    rank2 = np.repeat((2 * first + size + 1).astype(np.uint32), size).reshape(rows, n)
    rank2 *= np.arange(n) < count[:, None]
    big = np.flatnonzero(size > 1)                              # the tie groups proper
    tsize = size[big].astype(np.float64)
    valid = first[big] < count[row[big]]
    correction = np.bincount(row[big], weights=np.where(valid, tsize ** 3 - tsize, 0.0), minlength=rows)
    return rank2, correction


def _rows_with_ties(eq: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Rows whose valid (leading) part holds at least one tie; the padding ties are discounted."""
    n = eq.shape[1] + 1
    return np.flatnonzero(np.count_nonzero(eq, axis=1) > np.maximum(n - count - 1, 0))


class _Workspace:
    """Buffers reused across chunks (fresh large arrays cost page faults)."""

    def __init__(self, rows: int, n: int):
        self.f64 = np.empty((rows, n))
        self.u64 = np.empty((rows, n), dtype=np.uint64)
        self.mask = np.empty((rows, n), dtype=np.uint64)
        self.pad = np.empty((rows, n), dtype=np.uint64)
        self.tmp = np.empty((rows, n), dtype=np.int64)
        self.u32 = np.empty((rows, n), dtype=np.uint32)
        self.eq = np.empty((rows, n - 1), dtype=bool)
        self.invalid = np.empty((rows, n), dtype=bool)
        self.nan = np.empty((rows, n), dtype=bool)


def _spearman_chunk(sc: np.ndarray, fc: np.ndarray, min_neighbours: int, ws: _Workspace) -> np.ndarray:
    """Kernel of :func:`spearman` for a (C, N, N) chunk; returns (C, N).

    Ranks come from sorting 64-bit keys that pack the value (its order-preserving
    bit pattern, low bits cleared) with a small payload in the low bits, so each
    sort also carries the information that would otherwise need a gather:

    1. SC keys = value | column; sorted, they give SC ranks (ties averaged);
    2. (column << 16) | 2*rank, sorted as uint32, puts each SC rank back in its
       column (a scatter done by a sort, much faster than fancy indexing);
    3. FC keys = value | 2*SC rank; sorted, they give FC ranks in order with the
       matching SC rank beside each, so sum(rank_sc * rank_fc) is one dot product.

    Invalid edges (SC <= 0, the diagonal, NaN FC) get all-ones value bits and
    sort to the end of their row. Values that differ by less than ~1e-12
    (relative) count as ties.
    """
    c, n, _ = sc.shape
    rows = c * n
    bits = _payload_bits(n)
    low = (1 << bits) - 1
    himask = np.uint64(~low & 0xFFFFFFFFFFFFFFFF)
    pos = np.arange(n, dtype=np.int64)
    f64, key, mask, tmp, pad = ws.f64[:rows], ws.u64[:rows], ws.mask[:rows], ws.tmp[:rows], ws.pad[:rows]
    u32, eq, invalid, nan = ws.u32[:rows], ws.eq[:rows], ws.invalid[:rows], ws.nan[:rows]
    sc2 = sc.reshape(rows, n)
    fc2 = fc.reshape(rows, n)

    np.less_equal(sc2, 0.0, out=invalid)
    np.isnan(fc2, out=nan)
    invalid |= nan
    invalid.reshape(c, n, n)[:, pos, pos] = True
    count = n - np.count_nonzero(invalid, axis=1)                # n_i per row
    tail = n - count
    tail_ties = np.maximum(tail - 1, 0).sum()                    # equal padding keys at the row ends
    np.multiply(invalid, himask, out=pad)                        # value bits of padding: all ones

    # 1. SC ranks. SC > 0 where valid, so the raw float bits are already ordered.
    np.bitwise_and(sc2.view(np.uint64), himask, out=key)
    key |= pos.astype(np.uint64)
    key |= pad
    key.sort(axis=1)
    np.right_shift(key, np.uint64(bits), out=mask)
    np.equal(mask[:, 1:], mask[:, :-1], out=eq)
    sxx = (count ** 3 - count) / 12.0
    sc_ties = np.count_nonzero(eq) > tail_ties
    if sc_ties:
        # Ranks = position + 1 with the padding at 0, then the rows with ties redone.
        tied = _rows_with_ties(eq, count)
        if tied.size > rows // 2:                               # e.g. streamline counts: most rows
            rank2, corr = _tie_ranks(eq, count)                  # padding gets rank 0
            sxx -= corr / 12.0
        else:
            rank2 = (2 * pos + 2).astype(np.uint32) * (pos < count[:, None])
            rank2[tied], corr = _tie_ranks(eq[tied], count[tied])
            sxx[tied] -= corr / 12.0

    # 2. Scatter the SC ranks back to their columns by sorting (column << 16 | rank) pairs.
    np.copyto(u32, key, casting="unsafe")                       # low 32 bits
    u32 &= np.uint32(low)
    u32 <<= np.uint32(16)
    if sc_ties:
        u32 |= rank2
    else:
        u32 |= (2 * pos + 2).astype(np.uint32)                  # rank = position + 1
    u32.sort(axis=1)
    u32 &= np.uint32(0xFFFF)                                    # 2*SC rank, by column

    # 3. FC keys carry the SC rank of the same edge. Adding 0.0 folds -0.0 onto +0.0.
    np.add(fc2, 0.0, out=f64)
    ib = f64.view(np.int64)
    np.right_shift(ib, 63, out=tmp)
    tmp |= np.int64(-(1 << 63))
    ib ^= tmp                                                   # order-preserving as unsigned
    key = f64.view(np.uint64)
    key &= himask
    key |= u32
    key |= pad
    key.sort(axis=1)
    np.bitwise_and(key, np.uint64(low), out=mask)               # 2*SC rank, in FC order
    paired = mask.view(np.int64)
    np.right_shift(key, np.uint64(bits), out=tmp.view(np.uint64))
    np.equal(tmp[:, 1:], tmp[:, :-1], out=eq)
    syy = (count ** 3 - count) / 12.0
    np.copyto(f64, paired)
    dot = f64 @ (pos + 1.0)                                      # sum(2*rank_sc * rank_fc), exact
    if not sc_ties:
        # Padding carries 2*(p+1) for p >= count, in order: remove sum 2 m^2, m = count+1..n.
        dot -= 2.0 * (_sum_squares(n) - _sum_squares(count))
    if np.count_nonzero(eq) > tail_ties:
        tied = _rows_with_ties(eq, count)                        # usually few: redo those rows only
        if tied.size > rows // 2:
            rank2, corr = _tie_ranks(eq, count)                  # padding gets rank 0
            syy -= corr / 12.0
            dot = np.einsum("ij,ij->i", paired, rank2) / 2.0
        else:
            rank2, corr = _tie_ranks(eq[tied], count[tied])
            syy[tied] -= corr / 12.0
            dot[tied] = np.einsum("ij,ij->i", paired[tied], rank2) / 2.0

    # Centred sums: sum((r - m)(q - m)) = sum(r q) - n m^2 with m = (n + 1) / 2.
    sxy = dot / 2.0 - count * (count + 1.0) ** 2 / 4.0
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = sxy / np.sqrt(sxx * syy)
    rho[(count < max(min_neighbours, 2)) | (sxx <= 0) | (syy <= 0)] = np.nan
    return np.clip(rho, -1.0, 1.0).reshape(c, n)


def _sum_squares(m):
    """1^2 + ... + m^2."""
    m = np.asarray(m, dtype=np.float64)
    return m * (m + 1.0) * (2.0 * m + 1.0) / 6.0


def spearman(sc, fc, min_neighbours: int = 3, threads: int = 1) -> np.ndarray:
    """Regional SC-FC coupling as the Spearman correlation of connectome rows.

    For region *i*: Spearman's rho between ``sc[i, j]`` and ``fc[i, j]`` over
    the regions *j != i* with ``sc[i, j] > 0`` and finite ``fc[i, j]``, with
    tied values given their average rank (as :func:`scipy.stats.spearmanr`).

    Parameters
    ----------
    sc : array_like, shape (N, N) or (S, N, N)
        Structural connectome(s), non-negative, finite; zero means no connection.
    fc : array_like, same shape
        Functional connectome(s) (Pearson r or Fisher z: ranks are the same).
        NaN entries are left out.
    min_neighbours : int
        Regions with fewer structural neighbours get NaN (at least 2 are always
        required).
    threads : int
        Chunks of subjects computed in parallel (numpy's sorts and ufuncs
        release the GIL); the results do not depend on it.

    Returns
    -------
    ndarray, shape (N,) or (S, N)
        NaN where a region has fewer than ``min_neighbours`` neighbours or
        either row is constant over them.

    Notes
    -----
    All regions of all subjects are ranked together by sorting packed 64-bit
    keys (see ``_spearman_chunk``): no per-region loop, no scipy call. Values
    closer than about 1e-12 (relative) are treated as ties.

    References
    ----------
    Baum GL, Cui Z, Roalf DR, et al. (2020) Development of structure-function
    coupling in human brain networks during youth. PNAS 117(1):771-778.
    """
    sc = np.asarray(sc, dtype=np.float64)
    fc = np.asarray(fc, dtype=np.float64)
    single = sc.ndim == 2
    if single:
        sc, fc = sc[None], fc[None]
    _check_shapes(sc, fc)
    s, n, _ = sc.shape
    if n >= 1 << 15:
        raise ValueError(f"{n} regions: at most 32767 are supported")
    step = max(1, min(s, _CHUNK_ELEMENTS // (n * n)))
    starts = range(0, s, step)
    threads = max(1, min(int(threads), len(starts)))
    out = np.empty((s, n))

    def work(first):
        """Every ``threads``-th chunk from ``first`` on, with its own buffers; False if SC is not >= 0."""
        ws = _Workspace(step * n, n)
        for a in starts[first::threads]:
            chunk = sc[a:a + step]
            if not chunk.min() >= 0:                        # NaN or negative (checked here, in cache)
                return False
            out[a:a + step] = _spearman_chunk(chunk, fc[a:a + step], min_neighbours, ws)
        return True

    if threads > 1:                                         # sorts and ufuncs release the GIL
        with ThreadPoolExecutor(threads) as pool:
            ok = all(list(pool.map(work, range(threads))))
    else:
        ok = work(0)
    if not ok:
        _check_values(sc)
    return out[0] if single else out


def _check_shapes(sc: np.ndarray, fc: np.ndarray) -> None:
    if sc.ndim != 3 or sc.shape[1] != sc.shape[2]:
        raise ValueError(f"SC must be (N, N) or (S, N, N), got {sc.shape}")
    if fc.shape != sc.shape:
        raise ValueError(f"SC {sc.shape} and FC {fc.shape} differ in shape")


def _check_values(sc: np.ndarray) -> None:
    if np.isnan(sc).any():
        raise ValueError("SC contains NaN; write 0 for absent connections")
    if (sc < 0).any():
        raise ValueError("SC contains negative weights")


def _check_pair(sc: np.ndarray, fc: np.ndarray) -> None:
    _check_shapes(sc, fc)
    _check_values(sc)


# ---------------------------------------------------------------------------
# Communication model (Vázquez-Rodríguez et al. 2019)
# ---------------------------------------------------------------------------

def shortest_path_length(sc, transform: str = "inv") -> np.ndarray:
    """Weighted shortest-path length between all regions.

    Parameters
    ----------
    sc : array_like, shape (N, N)
        Structural weights (0 = no edge).
    transform : {"inv", "log"}
        Weight-to-length transform: ``1 / w`` (Rubinov & Sporns 2010, BCT's
        default) or ``-log(w / (1.0001 * max w))`` (Goñi et al. 2014; the
        factor keeps the strongest edge's length positive).

    Returns
    -------
    ndarray, shape (N, N)
        Path lengths; ``inf`` between disconnected components, 0 on the diagonal.
    """
    from scipy.sparse.csgraph import shortest_path

    w = np.asarray(sc, dtype=np.float64)
    length = np.zeros_like(w)
    edge = w > 0
    if transform == "inv":
        length[edge] = 1.0 / w[edge]
    elif transform == "log":
        length[edge] = -np.log(w[edge] / (1.0001 * w.max()))
    else:
        raise ValueError(f"unknown transform {transform!r}: use 'inv' or 'log'")
    return shortest_path(length, method="D", directed=False)


def communicability(sc) -> np.ndarray:
    """Weighted communicability ``expm(D^-1/2 W D^-1/2)`` (Crofts & Higham 2009).

    Regions with zero strength get zero rows and columns in the normalised
    matrix (and 1 on the diagonal of the exponential).
    """
    w = np.asarray(sc, dtype=np.float64)
    strength = w.sum(axis=1)
    inv = np.zeros_like(strength)
    inv[strength > 0] = 1.0 / np.sqrt(strength[strength > 0])
    norm = inv[:, None] * w * inv[None, :]
    norm = (norm + norm.T) / 2.0
    vals, vecs = np.linalg.eigh(norm)
    return (vecs * np.exp(vals)) @ vecs.T


def centroid_distance(coords) -> np.ndarray:
    """Euclidean distance (mm) between region centroids, ``coords`` (N, 3)."""
    xyz = np.asarray(coords, dtype=np.float64)
    return np.sqrt(((xyz[:, None, :] - xyz[None, :, :]) ** 2).sum(axis=-1))


def regional_r2(y, predictors, adjusted: bool = True, min_edges: int = 10) -> np.ndarray:
    """Per-row multiple regression R² of ``y[i, j]`` on ``predictors[k][i, j]``, j != i.

    All rows are fitted at once (normal equations on standardised predictors,
    masked by weights 0/1): no per-region loop. Edges where y or any predictor
    is not finite are left out of that row.

    Parameters
    ----------
    y : ndarray, shape (N, N)
    predictors : sequence of ndarray, each (N, N)
    adjusted : bool
        Return adjusted R² ``1 - (1 - R²)(n - 1)/(n - p - 1)``.
    min_edges : int
        Rows with fewer usable edges get NaN.

    Returns
    -------
    ndarray, shape (N,)
    """
    y = np.asarray(y, dtype=np.float64)
    n = y.shape[0]
    x = np.stack([np.asarray(p, dtype=np.float64) for p in predictors], axis=-1)   # (N, N, P)
    p = x.shape[-1]
    ok = np.isfinite(y) & np.isfinite(x).all(axis=-1)
    ok[np.arange(n), np.arange(n)] = False
    m = ok.astype(np.float64)
    cnt = m.sum(axis=1)
    safe = np.maximum(cnt, 1.0)
    y0 = np.where(ok, y, 0.0)
    x0 = np.where(ok[..., None], x, 0.0)
    ymean = y0.sum(axis=1) / safe
    xmean = x0.sum(axis=1) / safe[:, None]
    yc = (y0 - ymean[:, None]) * m
    xc = (x0 - xmean[:, None, :]) * m[..., None]
    scale = np.sqrt((xc ** 2).sum(axis=1))                       # (N, P)
    scale[scale == 0] = 1.0
    xc /= scale[:, None, :]
    xtx = np.einsum("ijk,ijl->ikl", xc, xc) + 1e-12 * np.eye(p)
    xty = np.einsum("ijk,ij->ik", xc, yc)
    beta = np.linalg.solve(xtx, xty[..., None])[..., 0]
    sst = (yc ** 2).sum(axis=1)
    sse = sst - np.einsum("ik,ik->i", beta, xty)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = 1.0 - sse / sst
        if adjusted:
            r2 = 1.0 - (1.0 - r2) * (cnt - 1.0) / (cnt - p - 1.0)
    r2[(cnt < max(min_edges, p + 2)) | (sst <= 0)] = np.nan
    return r2


def communication(sc, fc, distance, path_transform: str = "inv", adjusted: bool = True,
                  min_edges: int = 10) -> np.ndarray:
    """Regional coupling as the R² of FC predicted by communication measures.

    For region *i*: adjusted R² of the regression of ``fc[i, j]`` (j != i) on
    Euclidean distance, weighted shortest-path length and communicability, the
    last two computed from the SC (Vázquez-Rodríguez et al. 2019). Regions
    unreachable from *i* have infinite path length and are left out of row *i*.

    Parameters
    ----------
    sc : array_like, shape (N, N) or (S, N, N)
        Structural weights (0 = no edge).
    fc : array_like, same shape
    distance : array_like, shape (N, N)
        Euclidean distance between region centroids (see
        :func:`centroid_distance`; for BNA246 the label table's x_mm, y_mm, z_mm).
    path_transform : {"inv", "log"}
        Weight-to-length transform for the path length (default 1/w).
    adjusted : bool
        Adjusted (default) or plain R².
    min_edges : int
        Rows with fewer usable edges get NaN.

    Returns
    -------
    ndarray, shape (N,) or (S, N)

    References
    ----------
    Vázquez-Rodríguez B, Suárez LE, Markello RD, et al. (2019) Gradients of
    structure-function tethering across neocortex. PNAS 116(42):21219-21227.
    """
    sc = np.asarray(sc, dtype=np.float64)
    fc = np.asarray(fc, dtype=np.float64)
    single = sc.ndim == 2
    if single:
        sc, fc = sc[None], fc[None]
    _check_pair(sc, fc)
    distance = np.asarray(distance, dtype=np.float64)
    if distance.shape != sc.shape[1:]:
        raise ValueError(f"distance matrix is {distance.shape}, connectomes are {sc.shape[1:]}")
    out = np.empty(sc.shape[:2])
    for s in range(sc.shape[0]):
        spl = shortest_path_length(sc[s], path_transform)
        com = communicability(sc[s])
        out[s] = regional_r2(fc[s], [distance, spl, com], adjusted=adjusted, min_edges=min_edges)
    return out[0] if single else out


# ---------------------------------------------------------------------------
# Structural decoupling index (Preti & Van De Ville 2019)
# ---------------------------------------------------------------------------

def harmonics(sc_group):
    """Structural harmonics: eigenvectors of the symmetric normalised Laplacian.

    ``L = I - D^-1/2 A D^-1/2`` of the group-average SC ``A``.

    Returns
    -------
    eigenvalues : ndarray, shape (N,), ascending (graph frequencies)
    eigenvectors : ndarray, shape (N, N), columns are the harmonics
    """
    a = np.asarray(sc_group, dtype=np.float64)
    a = (a + a.T) / 2.0
    np.fill_diagonal(a, 0.0)
    strength = a.sum(axis=1)
    inv = np.zeros_like(strength)
    inv[strength > 0] = 1.0 / np.sqrt(strength[strength > 0])
    lap = np.eye(len(a)) - inv[:, None] * a * inv[None, :]
    return np.linalg.eigh((lap + lap.T) / 2.0)


def _standardise(ts: np.ndarray) -> np.ndarray:
    """Z-score each region's time series (rows: time, columns: regions)."""
    ts = np.asarray(ts, dtype=np.float64)
    sd = ts.std(axis=0)
    sd[sd == 0] = 1.0
    return (ts - ts.mean(axis=0)) / sd


def sdi_cutoff(timeseries, vecs) -> int:
    """Number of low-frequency harmonics that hold half of the mean spectral energy.

    Parameters
    ----------
    timeseries : sequence of ndarray, each (T_s, N)
        Every subject's regional time series (z-scored here).
    vecs : ndarray, shape (N, N)
        Harmonics from :func:`harmonics`.

    Returns
    -------
    int
        c such that harmonics ``[:c]`` are "coupled" (low frequency) and the rest
        "decoupled": the first index where the cumulative energy of the
        group-mean power spectrum reaches half its total.
    """
    power = np.zeros(vecs.shape[1])
    for ts in timeseries:
        coef = _standardise(ts) @ vecs            # (T, N) graph Fourier coefficients
        power += (coef ** 2).mean(axis=0)
    power /= max(len(timeseries), 1)
    if not len(timeseries) or not np.isfinite(power).all():
        raise ValueError("the group power spectrum is empty or not finite: an empty time series entered "
                         "the SDI cut-off (read_timeseries(min_volumes=2) names the file)")
    cum = np.cumsum(power)
    return int(np.searchsorted(cum, cum[-1] / 2.0) + 1)


def sdi(timeseries, vecs, cutoff: int, log2: bool = False) -> np.ndarray:
    """Structural decoupling index of one subject's regional time series.

    The z-scored signals X (T x N) are projected on the structural harmonics U;
    the low-pass part ``X_c = X U_c U_c^T`` (first ``cutoff`` harmonics) is
    coupled to structure, the high-pass part ``X_d = X U_d U_d^T`` decoupled.
    ``SDI_i = ||X_d[:, i]|| / ||X_c[:, i]||`` (norms over time). Above 1 (log2
    above 0): the region's activity is more decoupled from structure.

    Parameters
    ----------
    timeseries : ndarray, shape (T, N)
    vecs : ndarray, shape (N, N)
        Harmonics of the group-average SC (:func:`harmonics`).
    cutoff : int
        Number of low-frequency harmonics (:func:`sdi_cutoff`, computed once for
        the whole group so every subject is split at the same frequency).
    log2 : bool
        Return log2(SDI), as plotted by Preti & Van De Ville (default: the ratio).

    Returns
    -------
    ndarray, shape (N,); NaN for regions without signal.

    References
    ----------
    Preti MG, Van De Ville D (2019) Decoupling of brain function from structure
    reveals regional behavioral specialization in humans. Nat Commun 10:4747.
    """
    raw = np.asarray(timeseries, dtype=np.float64)
    x = _standardise(raw)
    coef = x @ vecs
    coupled = coef[:, :cutoff] @ vecs[:, :cutoff].T
    decoupled = coef[:, cutoff:] @ vecs[:, cutoff:].T
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.linalg.norm(decoupled, axis=0) / np.linalg.norm(coupled, axis=0)
        if log2:
            out = np.log2(out)
    dead = ~np.isfinite(raw).all(axis=0) | (np.nanstd(raw, axis=0) == 0)
    out[dead] = np.nan
    return out


def group_sdi(timeseries, sc_group, log2: bool = False):
    """SDI for every subject, split at the group's median-energy frequency.

    Parameters
    ----------
    timeseries : sequence of ndarray, each (T_s, N)
    sc_group : ndarray, shape (N, N)
        Group-average SC (e.g. :func:`group_average_sc` over included subjects).
    log2 : bool

    Returns
    -------
    values : ndarray, shape (S, N)
    cutoff : int
    """
    _, vecs = harmonics(sc_group)
    series = [np.nan_to_num(np.asarray(t, dtype=np.float64)) for t in timeseries]
    cut = sdi_cutoff(series, vecs)
    values = np.stack([sdi(t, vecs, cut, log2=log2) for t in series]) if series else np.empty((0, len(vecs)))
    for s, t in enumerate(timeseries):       # keep regions without signal NaN
        t = np.asarray(t, dtype=np.float64)
        values[s, ~np.isfinite(t).all(axis=0) | (np.nanstd(t, axis=0) == 0)] = np.nan
    return values, cut


def group_average_sc(sc) -> np.ndarray:
    """Mean SC over subjects, ``sc`` (S, N, N)."""
    return np.asarray(sc, dtype=np.float64).mean(axis=0)


# ---------------------------------------------------------------------------
# Fast batch reading of the per-subject matrices
# ---------------------------------------------------------------------------

def _pyarrow_reader():
    """pyarrow's CSV reader if installed (about 2x faster than pandas' C parser here), else None."""
    try:
        import pyarrow
        import pyarrow.csv as pcsv
    except ImportError:
        return None
    read_options = pcsv.ReadOptions(autogenerate_column_names=True, use_threads=False)
    parse_options = pcsv.ParseOptions(delimiter="\t")

    def read(path):
        first = Path(path).open("rb").readline()
        n = first.count(b"\t") + 1
        convert = pcsv.ConvertOptions(column_types={f"f{i}": pyarrow.float64() for i in range(n)},
                                      null_values=["n/a", "nan", "NaN"], strings_can_be_null=False)
        table = pcsv.read_csv(path, read_options=read_options, parse_options=parse_options,
                              convert_options=convert)
        if table.num_columns == 0:
            return np.empty((0, 0))
        return np.column_stack([col.to_numpy() for col in table.columns]).astype(np.float64, copy=False)

    return read


_FAST_READ = _pyarrow_reader()


def _read_numbers(path: Path) -> np.ndarray:
    """A headerless numeric TSV as a 2-D array (pyarrow if available, else pandas' C parser)."""
    if _FAST_READ is not None:
        try:
            return _FAST_READ(path)
        except Exception:   # noqa: BLE001 - anything odd: let pandas parse it and word the error
            pass
    try:   # no missing-value matching is about 10 % faster; a file with n/a fails it
        return pd.read_csv(path, sep="\t", header=None, dtype=np.float64, na_filter=False,
                           low_memory=False, engine="c").to_numpy()
    except ValueError:
        return pd.read_csv(path, sep="\t", header=None, dtype=np.float64, na_values=["n/a", "nan", "NaN"],
                           keep_default_na=False, low_memory=False, engine="c").to_numpy()


# Files parsed together by the batch reader: about 1-5 MB of text per pyarrow call
# (fewer calls, and blocks big enough that the per-block cost of 246 columns is paid rarely).
_BATCH_FILES = 16
_BATCH_BLOCK_BYTES = 1 << 20


def _pyarrow_batch_parser():
    """Parser for many files' bytes at once (one pyarrow call), or None without pyarrow.

    The options are those of the per-file reader (same float converter, same null
    values, hence the same numbers) except quoting, which is off: a quote in a
    numeric matrix fails the conversion and sends the batch to the per-file path.
    """
    try:
        import pyarrow
        import pyarrow.csv as pcsv
    except ImportError:
        return None
    parse_options = pcsv.ParseOptions(delimiter="\t", quote_char=False)

    def parse(data: bytes, n: int, out: np.ndarray) -> bool:
        """Parse ``data`` (whole lines of n fields) into ``out`` (rows, n); False if anything is off."""
        read_options = pcsv.ReadOptions(autogenerate_column_names=True, use_threads=False,
                                        block_size=_BATCH_BLOCK_BYTES)
        convert = pcsv.ConvertOptions(column_types={f"f{i}": pyarrow.float64() for i in range(n)},
                                      null_values=["n/a", "nan", "NaN"], strings_can_be_null=False)
        try:
            table = pcsv.read_csv(pyarrow.py_buffer(data), read_options=read_options,
                                  parse_options=parse_options, convert_options=convert)
        except Exception:   # noqa: BLE001 - any parse problem: the per-file path words the error
            return False
        if table.num_columns != n or table.num_rows != out.shape[0]:
            return False
        row = 0
        for batch in table.to_batches():        # row-major copies, null -> NaN (as to_numpy does)
            if _TO_TENSOR:
                out[row:row + batch.num_rows] = np.asarray(batch.to_tensor(null_to_nan=True))
            else:
                for j, col in enumerate(batch.columns):
                    out[row:row + batch.num_rows, j] = col.to_numpy(zero_copy_only=False)
            row += batch.num_rows
        return True

    return parse


_BATCH_PARSE = _pyarrow_batch_parser()
# pyarrow >= 16: one row-major copy per record batch, 2-4x cheaper than per-column copies
_TO_TENSOR = _BATCH_PARSE is not None and hasattr(__import__("pyarrow").RecordBatch, "to_tensor")


def _plain_lines(data: bytes, n: int) -> bytes | None:
    """``data`` as exactly n non-empty lines, each ending in LF, or None if it is not that.

    This is what lets several files be parsed as one text: each file then gives
    exactly n rows (the parser would skip an empty line and end a line at a lone
    CR). CRLF is turned into LF (the parser treats both alike); a missing final
    newline is added. One ``find`` per line (memchr) instead of counting bytes.
    """
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
        if b"\r" in data:
            return None
    if not data.endswith(b"\n"):
        data += b"\n"
    find = data.find
    pos = 0
    for _ in range(n):
        end = find(b"\n", pos)
        if end <= pos:                      # no further line (-1) or an empty one
            return None
        pos = end + 1
    return data if pos == len(data) else None


def _batch_suspects(block: np.ndarray, symmetric: bool, allow_nan: bool) -> np.ndarray:
    """Indices of the matrices in ``block`` (k, n, n) that may fail :func:`sfc.io.read_matrix`'s checks.

    Its NaN and symmetry tests, vectorised: NaN propagates through the sums and
    maxima, so a matrix with NaN is a suspect wherever NaN is not allowed or
    symmetry is required (the per-file check then decides, NaN included).
    """
    if symmetric:
        suspect = np.zeros(len(block), dtype=bool)
        diff = np.empty(block.shape[1:])
        for i, m in enumerate(block):                   # one cache-sized matrix at a time
            np.subtract(m, m.T, out=diff)
            scale = max(m.max(), -m.min(), 1e-12)
            # m - m.T is antisymmetric, so its maximum is its largest |value|; NaN: suspect
            suspect[i] = not (diff.max() <= 1e-6 * scale)
        return np.flatnonzero(suspect)
    if not allow_nan:
        return np.flatnonzero(np.isnan(block.sum(axis=(1, 2))))
    return np.empty(0, dtype=np.intp)


def _parse_matrix(path: Path, n_regions, kind: str, symmetric: bool, allow_nan: bool) -> np.ndarray:
    """:func:`sfc.io.read_matrix` (same checks and messages) on the faster parser."""
    return io.read_matrix(path, n_regions, kind, symmetric, allow_nan, parse=_read_numbers)


def read_matrices(paths, n_regions: int | None = None, kind: str = "matrix", symmetric: bool = False,
                  allow_nan: bool = True, threads: int = 1) -> np.ndarray:
    """Read many headerless TSV matrices into one ``(S, N, N)`` float64 array.

    The checks and error messages are those of :func:`sfc.io.read_matrix` (each
    names the file at fault). Parsing uses pyarrow's CSV reader when pyarrow is
    installed, else pandas' C parser; ``threads > 1`` parses in parallel (both
    parsers release the GIL).

    With pyarrow, files are parsed ``_BATCH_FILES`` at a time as one text (the
    per-call cost of 246 typed columns dominates a single 0.3 MB file), straight
    into the output array, and the NaN and symmetry checks run on the whole batch.
    Every file is first checked to hold exactly N plain lines; any file that
    fails a cheap check, and every file of a batch that fails to parse, goes
    through the per-file reader, which raises the usual message naming it (or
    reads it, e.g. a file with blank lines). The numbers are the per-file
    reader's: the same pyarrow conversion of the same fields.

    Parameters
    ----------
    paths : sequence of path-like
    n_regions : int, optional
        Expected N; by default the first file's.
    kind : str
        "SC" or "FC", for messages.
    symmetric, allow_nan : bool
        As in :func:`sfc.io.read_matrix`.
    threads : int

    Returns
    -------
    ndarray, shape (S, N, N)
    """
    paths = [Path(p) for p in paths]
    if not paths:
        return np.empty((0, n_regions or 0, n_regions or 0))
    first = None
    if n_regions is None or _BATCH_PARSE is None:
        first = _parse_matrix(paths[0], n_regions, kind, symmetric, allow_nan)
    n = first.shape[0] if first is not None else int(n_regions)
    out = np.empty((len(paths), n, n))
    start = 0
    if first is not None:
        out[0] = first
        start = 1

    def per_file(k):
        out[k] = _parse_matrix(paths[k], n, kind, symmetric, allow_nan)

    def batch(a):
        """Files a .. a + _BATCH_FILES - 1; per-file path for the ones that need it, in order."""
        ks = range(a, min(a + _BATCH_FILES, len(paths)))
        texts, good, slow = [], [], set()
        for k in ks:
            try:
                text = _plain_lines(paths[k].read_bytes(), n)
            except OSError:
                text = None
            if text is None:
                slow.add(k)
            else:
                texts.append(text)
                good.append(k)
        if good:
            block = np.empty((len(good), n, n))
            if _BATCH_PARSE(b"".join(texts), n, block.reshape(-1, n)):
                for i in _batch_suspects(block, symmetric, allow_nan):
                    slow.add(good[i])
                for i, k in enumerate(good):
                    if k not in slow:
                        out[k] = block[i]
            else:
                slow.update(good)
        for k in sorted(slow):
            per_file(k)

    if _BATCH_PARSE is not None:
        work, starts = batch, range(start, len(paths), _BATCH_FILES)
    else:
        work, starts = per_file, range(start, len(paths))
    if threads > 1 and len(starts) > 1:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, starts))
    else:
        for a in starts:
            work(a)
    return out


def read_sc(paths, n_regions=None, threads: int = 1) -> np.ndarray:
    """Structural connectomes: symmetric, finite (NaN is an error), non-negative."""
    sc = read_matrices(paths, n_regions, "SC", symmetric=True, allow_nan=False, threads=threads)
    bad = np.flatnonzero((sc < 0).any(axis=(1, 2)))
    if bad.size:
        raise InputError(paths[bad[0]], "SC matrix has negative weights",
                         "write streamline counts or weights (>= 0) with 0 for absent connections")
    return sc


def check_sc(sc: np.ndarray, paths) -> None:
    """SC a group computation can use: finite, with at least one connection (else the file is named)."""
    bad = np.flatnonzero(~np.isfinite(sc).all(axis=(1, 2)))
    if bad.size:
        raise InputError(paths[bad[0]], "SC matrix has infinite weights",
                         "rebuild the subject's connectome (dwi stage); weights must be finite")
    bad = np.flatnonzero(~(sc > 0).any(axis=(1, 2)))
    if bad.size:
        raise InputError(paths[bad[0]], "SC matrix has no connection at all (every weight 0)",
                         "check the subject's tractography and atlas in diffusion space (QC pictures), "
                         "or leave the subject out")


def check_fc(fc: np.ndarray, paths) -> None:
    """FC a group computation can use: Pearson r in [-1, 1], not n/a everywhere (else the file is named)."""
    with np.errstate(invalid="ignore"):
        outside = np.flatnonzero((np.abs(fc) > 1 + 1e-6).any(axis=(1, 2)))
    if outside.size:
        worst = float(np.nanmax(np.abs(fc[outside[0]])))
        raise InputError(paths[outside[0]], f"FC values outside [-1, 1] (largest |value| {worst:.3g}): not "
                         "Pearson correlations", "write Pearson r (not Fisher z, not covariances) as the FC "
                         "matrix")
    empty = np.flatnonzero(np.isnan(fc).all(axis=(1, 2)))
    if empty.size:
        raise InputError(paths[empty[0]], "FC matrix is n/a everywhere",
                         "rerun the subject's func stage, or leave the subject out")


def read_fc(paths, n_regions=None, threads: int = 1) -> np.ndarray:
    """Functional connectomes, Pearson r (NaN allowed: rows of regions without signal)."""
    return read_matrices(paths, n_regions, "FC", symmetric=False, allow_nan=True, threads=threads)


def centroids_from_image(image, n_regions: int) -> np.ndarray:
    """Centre of mass (mm, world coordinates) of labels 1..N of an atlas image.

    Parameters
    ----------
    image : nibabel image or path-like
        Integer label image (0 = background), e.g. ``sfc.paths.atlas_image``.
    n_regions : int

    Returns
    -------
    ndarray, shape (N, 3); NaN rows for labels absent from the image.
    """
    import nibabel as nib

    img = nib.load(str(image)) if isinstance(image, (str, Path)) else image
    data = np.asarray(img.dataobj).astype(np.int64).ravel()
    ijk = np.indices(img.shape[:3]).reshape(3, -1)
    keep = (data > 0) & (data <= n_regions)
    count = np.bincount(data[keep], minlength=n_regions + 1)[1:].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.stack([np.bincount(data[keep], weights=ijk[a, keep], minlength=n_regions + 1)[1:] / count
                         for a in range(3)], axis=1)
    return mean @ img.affine[:3, :3].T + img.affine[:3, 3]


def region_distance(labels: pd.DataFrame, distance=None, image=None) -> np.ndarray:
    """The Euclidean distance matrix for the communication model.

    In order of preference: ``distance`` (an (N, N) array or a path to a
    headerless TSV), the label table's centroid columns ``x_mm, y_mm, z_mm``
    (BNA246 has them), or the label centroids of the atlas ``image`` (HOA).
    """
    n = len(labels)
    if distance is not None:
        if isinstance(distance, (str, Path)):
            return io.read_matrix(distance, n_regions=n, kind="distance", symmetric=True, allow_nan=False)
        distance = np.asarray(distance, dtype=np.float64)
        if distance.shape != (n, n):
            raise ValueError(f"distance matrix is {distance.shape}, the atlas has {n} regions")
        return distance
    cols = ["x_mm", "y_mm", "z_mm"]
    if set(cols) <= set(labels.columns) and not labels[cols].isna().any().any():
        return centroid_distance(labels[cols].to_numpy(dtype=float))
    if image is not None:
        xyz = centroids_from_image(image, n)
        if np.isnan(xyz).any():
            missing = (np.flatnonzero(np.isnan(xyz).any(axis=1)) + 1).tolist()[:5]
            raise InputError(image, f"labels {missing} are absent from the atlas image",
                             "use the atlas image written by prepare_atlas")
        return centroid_distance(xyz)
    raise InputError(None, "the atlas label table has no region centroids (x_mm, y_mm, z_mm)",
                     "add centroid columns to the label table, or pass the atlas image or a distance matrix")


def write_region_tables(paths, values, labels: pd.DataFrame, column: str = "sfc") -> None:
    """Write one ``index, name, <column>`` table per subject (``values`` is (S, N)).

    Byte-identical to :func:`sfc.io.write_region_table` (``%.10g``, ``n/a``) but
    formats the rows with plain string operations: ~10x faster for many subjects.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] != len(labels) or len(values) != len(paths):
        raise ValueError(f"{len(paths)} paths and {len(labels)} regions, but values of shape {values.shape}")
    prefix = [f"{i}\t{name}\t" for i, name in zip(labels["index"].tolist(), labels["name"].astype(str))]
    header = f"index\tname\t{column}\n"
    for path, row in zip(paths, values.tolist()):
        body = "".join(p + ("n/a" if v != v else "%.10g" % v) + "\n" for p, v in zip(prefix, row))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as fh:
            fh.write(header + body)


def read_timeseries(path, labels: pd.DataFrame | None = None, min_volumes: int = 0) -> np.ndarray:
    """Regional time series (T x N, header: region names) as written by the func stage.

    ``min_volumes``: fewer rows, or no region with a finite signal, is an error naming the
    file (an empty series would give a NaN spectrum, and a wrong SDI cut-off for everyone).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "time series not found", "run the func stage or check the path")
    table = pd.read_csv(path, sep="\t", na_values=["n/a"])
    if labels is not None and table.columns.astype(str).tolist() != labels["name"].astype(str).tolist():
        raise InputError(path, "the time-series columns differ from the atlas label table",
                         "recompute the time series with the configured atlas")
    values = table.to_numpy(dtype=float)
    if min_volumes and (len(values) < min_volumes or not np.isfinite(values).all(axis=0).any()):
        raise InputError(path, f"the time series has {len(values)} volume(s) and "
                         f"{int(np.isfinite(values).all(axis=0).sum()) if len(values) else 0} region(s) with a "
                         "finite signal", "exclude the subject (func QC) or rerun its func stage")
    return values


@dataclass
class GroupCoupling:
    """Regional SFC of every unit of one (atlas, method) job."""

    values: np.ndarray        # (units, regions); NaN rows for excluded units
    kept: list                # indices of the computed units
    sc: np.ndarray            # SC of the computed units (S, N, N)
    cutoff: int | None = None  # SDI: number of coupled harmonics of the group


def compute_units(method: str, ids, excluded: dict, labels: pd.DataFrame, sc_paths, fc_paths=(),
                  timeseries_paths=(), *, image=None, min_neighbours: int = 3, path_transform: str = "inv",
                  distance=None, threads: int = 1) -> GroupCoupling:
    """One coupling method over a group's units, leaving the excluded ones out of everything.

    Parameters
    ----------
    method : {"spearman", "communication", "sdi"}
    ids : list of str
        Unit IDs, in the order of the path lists.
    excluded : dict
        ``{unit ID: reason}`` (group/excluded.tsv, :func:`sfc.io.excluded_units`): these
        units are not read and shape no group quantity (SDI's group-average SC, harmonics
        and cut-off come from the computed units only).
    labels : DataFrame
        The atlas label table (matrix order).
    sc_paths, fc_paths, timeseries_paths : lists of paths, one per unit
        FC for spearman and communication, time series for sdi.
    image, distance, path_transform, min_neighbours, threads
        Method options (config ``coupling``). SDI comes as the ratio; the group tables take
        its log2 (:func:`sfc.stats.log2_values`, config ``stats.sdi_log2``).
    """
    ids = list(ids)
    n = len(labels)
    kept = [i for i, pid in enumerate(ids) if pid not in excluded]
    if not kept:
        raise InputError(None, f"every one of the {len(ids)} subjects is excluded",
                         "see the reasons in group/excluded.tsv")
    def pick(paths):
        return [list(paths)[i] for i in kept]

    def read_checked_fc():
        fc = read_fc(pick(fc_paths), n, threads=threads)
        check_fc(fc, pick(fc_paths))
        return fc

    sc = read_sc(pick(sc_paths), n, threads=threads)
    check_sc(sc, pick(sc_paths))
    cutoff = None
    if method == "spearman":
        values = spearman(sc, read_checked_fc(), min_neighbours=min_neighbours, threads=threads)
    elif method == "communication":
        unset = distance is None or (isinstance(distance, (str, dict, list)) and not distance)
        dist = region_distance(labels, distance=None if unset else distance, image=image)
        values = communication(sc, read_checked_fc(), dist, path_transform=path_transform)
    elif method == "sdi":
        series = [read_timeseries(p, labels, min_volumes=2) for p in pick(timeseries_paths)]
        values, cutoff = group_sdi(series, group_average_sc(sc))
    else:
        raise ValueError(f"unknown coupling method {method!r}; known: {', '.join(METHODS)}")
    everyone = np.full((len(ids), n), np.nan)
    everyone[kept] = values
    return GroupCoupling(values=everyone, kept=kept, sc=sc, cutoff=cutoff)


def n_neighbours(sc) -> np.ndarray:
    """Number of structural neighbours per region (SC > 0 off the diagonal)."""
    sc = np.asarray(sc)
    off = sc > 0
    idx = np.arange(sc.shape[-1])
    off[..., idx, idx] = False
    return off.sum(axis=-1)


__all__ = [
    "METHODS", "spearman", "communication", "regional_r2", "shortest_path_length", "communicability",
    "centroid_distance", "harmonics", "sdi_cutoff", "sdi", "group_sdi", "group_average_sc",
    "read_matrices", "read_sc", "read_fc", "region_distance", "centroids_from_image", "compute_units",
    "GroupCoupling", "check_sc", "check_fc", "n_neighbours",
    "read_timeseries", "write_region_tables",
]
