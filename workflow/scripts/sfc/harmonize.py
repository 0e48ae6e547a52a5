"""Site harmonisation of regional measures with ComBat.

A faithful NumPy implementation of parametric empirical-Bayes ComBat as in
neuroCombat (Fortin et al. 2017, 2018; Johnson et al. 2007): the same
standardisation (pooled variance over all subjects, grand mean weighted by site
size), the same priors (normal for the site shifts, inverse gamma for the site
scales) and the same iterative solution. The biological covariates (group,
age, sex, ...) are kept in the model, so their effects are preserved.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger("sfc")


def _aprior(delta: np.ndarray) -> float:
    m, s2 = delta.mean(), delta.var(ddof=1)
    return (2 * s2 + m ** 2) / s2


def _bprior(delta: np.ndarray) -> float:
    m, s2 = delta.mean(), delta.var(ddof=1)
    return (m * s2 + m ** 3) / s2


def _solve_eb(sdata: np.ndarray, g_hat, d_hat, g_bar, t2, a, b, tol=1e-4, max_iter=1000):
    """Iterative posterior means of the site shift (gamma) and scale (delta)."""
    n = sdata.shape[0]
    g_old, d_old = g_hat.copy(), d_hat.copy()
    for _ in range(max_iter):
        g_new = (t2 * n * g_hat + d_old * g_bar) / (t2 * n + d_old)
        sum2 = ((sdata - g_new) ** 2).sum(axis=0)
        d_new = (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)
        change = max(np.max(np.abs(g_new - g_old) / np.abs(g_old)), np.max(np.abs(d_new - d_old) / d_old))
        g_old, d_old = g_new, d_new
        if change <= tol:
            break
    return g_old, d_old


def combat(data, batch, covariates: pd.DataFrame | None = None, eb: bool = True) -> np.ndarray:
    """Remove site (batch) effects from every column of ``data`` with ComBat.

    Parameters
    ----------
    data : array_like, shape (n_subjects, n_features)
        Finite values (regional SFC of the subjects).
    batch : array_like, shape (n_subjects,)
        Site of each subject (at least two subjects per site).
    covariates : DataFrame, optional
        Effects to preserve, numeric columns (dummy-code categorical ones,
        e.g. groups, before calling), one row per subject.
    eb : bool
        Empirical-Bayes shrinkage of the site parameters (default, as
        neuroCombat); False gives the per-feature location/scale estimates.

    Returns
    -------
    ndarray, shape (n_subjects, n_features)
        Harmonised data.

    References
    ----------
    Johnson WE, Li C, Rabinovic A (2007) Adjusting batch effects in microarray
    expression data using empirical Bayes methods. Biostatistics 8:118-127.
    Fortin J-P, Cullen N, Sheline YI, et al. (2018) Harmonization of cortical
    thickness measurements across scanners and sites. NeuroImage 167:104-120.
    """
    y = np.asarray(data, dtype=np.float64)
    if not np.isfinite(y).all():
        raise ValueError("ComBat needs finite data; drop or impute missing values first")
    batch = np.asarray(batch)
    levels, bidx = np.unique(batch, return_inverse=True)
    n, _ = y.shape
    sizes = np.bincount(bidx)
    if len(levels) < 2:
        return y.copy()
    if sizes.min() < 2:
        raise ValueError(f"every site needs at least two subjects, got {dict(zip(levels, sizes))}")
    onehot = (bidx[:, None] == np.arange(len(levels))[None, :]).astype(float)
    cov = np.empty((n, 0)) if covariates is None or covariates.shape[1] == 0 else \
        np.asarray(covariates, dtype=np.float64)
    design = np.column_stack([onehot, cov])
    # 1. Standardise: site-size-weighted grand mean, pooled variance, covariate effects kept.
    beta = np.linalg.solve(design.T @ design, design.T @ y)
    grand = (sizes / n) @ beta[: len(levels)]
    var_pooled = ((y - design @ beta) ** 2).mean(axis=0)
    var_pooled[var_pooled == 0] = np.median(var_pooled[var_pooled > 0]) if (var_pooled > 0).any() else 1.0
    stand_mean = grand[None, :] + cov @ beta[len(levels):]
    sdata = (y - stand_mean) / np.sqrt(var_pooled)
    # 2. Site parameters and their empirical-Bayes posteriors.
    gamma_hat = np.linalg.solve(onehot.T @ onehot, onehot.T @ sdata)
    delta_hat = np.stack([sdata[bidx == k].var(axis=0, ddof=1) for k in range(len(levels))])
    if eb:
        gamma_bar = gamma_hat.mean(axis=1)
        t2 = gamma_hat.var(axis=1, ddof=1)
        a = np.array([_aprior(d) for d in delta_hat])
        b = np.array([_bprior(d) for d in delta_hat])
        gamma_star = np.empty_like(gamma_hat)
        delta_star = np.empty_like(delta_hat)
        for k in range(len(levels)):
            gamma_star[k], delta_star[k] = _solve_eb(sdata[bidx == k], gamma_hat[k], delta_hat[k],
                                                     gamma_bar[k], t2[k], a[k], b[k])
    else:
        gamma_star, delta_star = gamma_hat, delta_hat
    # 3. Remove them and return to the original scale.
    adjusted = (sdata - gamma_star[bidx]) / np.sqrt(delta_star[bidx])
    return adjusted * np.sqrt(var_pooled) + stand_mean


def harmonize_table(sfc: pd.DataFrame, info: pd.DataFrame, site_column: str | None, group_column: str,
                    covariates=(), id_column: str = "participant_id") -> pd.DataFrame:
    """ComBat on a group SFC table, preserving group and covariates.

    Parameters
    ----------
    sfc : DataFrame
        ``participant_id`` + one column per region.
    info : DataFrame
        Participant rows aligned with ``sfc`` (same index), holding the site,
        group and covariate columns (see :func:`sfc.stats.merge_participants`).
    site_column : str or None
        Without it (None, or absent from ``info``, or a single site) nothing is
        done and a log line says so.
    group_column : str
    covariates : sequence of str

    Returns
    -------
    DataFrame
        The same table, harmonised. Regions with a missing value in any
        subject are left as they are (logged): ComBat needs complete data.
    """
    from .stats import _covariate_matrix

    if not site_column or site_column not in info.columns:
        log.info("site harmonisation skipped: no site column%s", f" '{site_column}'" if site_column else "")
        return sfc
    sfc = sfc.loc[info.index]
    site = info[site_column].astype(str)
    counts = site.value_counts()
    alone = site.isin(counts.index[counts < 2])
    if alone.any():
        # ComBat estimates each site's shift and scale from that site's subjects: one is too few
        who = ", ".join(f"{pid} (site {s!r})" for pid, s in zip(sfc.loc[alone, id_column], site[alone]))
        log.warning("left out of the harmonised group fits: %s, the only subject of its site; ComBat needs "
                    "at least two per site. Fix: add that site's subjects, merge the site with another in "
                    "the site column, or set stats.harmonize: false", who)
        sfc, info, site = sfc.loc[~alone], info.loc[~alone], site[~alone]
    site = site.to_numpy()
    if len(np.unique(site)) < 2:
        log.info("site harmonisation skipped: one site only")
        return sfc
    design = _covariate_matrix(info, [group_column, *covariates])
    regions = [c for c in sfc.columns if c != id_column]
    values = sfc[regions].to_numpy(dtype=float)
    complete = np.isfinite(values).all(axis=0)
    if (~complete).any():
        log.info("ComBat: %d regions with missing values left unharmonised", int((~complete).sum()))
    out = sfc.copy()
    out.loc[:, np.array(regions)[complete]] = combat(values[:, complete], site, design)
    log.info("ComBat across %d sites (%s) on %d regions, preserving %s", len(np.unique(site)),
             ", ".join(f"{s}: {c}" for s, c in zip(*np.unique(site, return_counts=True))), int(complete.sum()),
             ", ".join([group_column, *covariates]))
    return out
