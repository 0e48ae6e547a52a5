"""Group statistics of regional SFC: ANCOVA with post hoc contrasts, clinical
correlations within groups, and regions that replicate across atlases.

Every region is fitted with the same ordinary least-squares model (as
``statsmodels.api.OLS``), but all regions that share the same subjects are solved
together with one pseudo-inverse of the design matrix; regions with missing
values are grouped by their pattern of missingness and each pattern is solved
once. The unit tests compare the results with statsmodels region by region.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pandas as pd
from scipy import stats as sps

from .errors import InputError
from .paths import participant_of

log = logging.getLogger("sfc")

ID = "participant_id"


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------

def assemble(subjects, tables, labels: pd.DataFrame, column: str = "sfc") -> pd.DataFrame:
    """Group table: ``participant_id`` + one column per region name.

    Parameters
    ----------
    subjects : sequence of str
        Participant ids (``sub-<label>``, with ``_ses-<label>`` where sessions exist).
    tables : sequence of path-like or DataFrame
        The per-subject region tables (``index, name, sfc``) in the same order.
    labels : DataFrame
        Atlas label table (matrix order); each table's names must match it.
    """
    names = labels["name"].astype(str).tolist()
    rows = np.full((len(subjects), len(names)), np.nan)
    for k, table in enumerate(tables):
        source = table if isinstance(table, pd.DataFrame) else pd.read_csv(table, sep="\t", na_values=["n/a"])
        where = None if isinstance(table, pd.DataFrame) else table
        if column not in source.columns or "name" not in source.columns:
            raise InputError(where, f"region table lacks the columns 'name' and '{column}'",
                             "use a table written by the workflow's coupling rule")
        if source["name"].astype(str).tolist() != names:
            raise InputError(where, "region names differ from the atlas label table",
                             "recompute coupling with the configured atlas")
        rows[k] = source[column].to_numpy(dtype=float)
    out = pd.DataFrame(rows, columns=names)
    out.insert(0, ID, list(subjects))
    return out


def log2_values(table: pd.DataFrame) -> pd.DataFrame:
    """A group table's region values as log2 (SDI is a ratio of energies: right-skewed, log2 makes
    it symmetric about 0, coupled below, decoupled above). A ratio that is not > 0 is an error."""
    regions = [c for c in table.columns if c != ID]
    values = table[regions].to_numpy(dtype=float)
    bad = np.isfinite(values) & (values <= 0)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"{table[ID].iloc[row]}, {regions[col]}: SDI {values[row, col]:g} is not > 0, "
                         "so it has no log2")
    out = table.copy()
    out[regions] = np.log2(values)
    return out


def read_group_table(path) -> pd.DataFrame:
    """Read ``group/atlas-*_desc-*_sfc.tsv`` (``n/a`` = missing)."""
    table = pd.read_csv(path, sep="\t", na_values=["n/a"])
    if ID not in table.columns:
        raise InputError(path, f"group table lacks the column '{ID}'", "use the table written by assemble_group_sfc")
    return table


# ---------------------------------------------------------------------------
# Multiple comparisons
# ---------------------------------------------------------------------------

def fdr_bh(p) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values; NaN stays NaN and is not counted.

    Same numbers as ``statsmodels.stats.multitest.multipletests(p, method="fdr_bh")[1]``
    on the finite entries.
    """
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return out
    pv = p[ok]
    order = np.argsort(pv)
    ranked = pv[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    adj = np.empty(m)
    adj[order] = np.minimum(ranked, 1.0)
    out[ok] = adj
    return out


# ---------------------------------------------------------------------------
# Design
# ---------------------------------------------------------------------------

def _covariate_matrix(table: pd.DataFrame, covariates) -> pd.DataFrame:
    """Numeric covariates as they are; text ones (sex, site) as 0/1 dummies (first level dropped)."""
    parts = []
    for name in covariates:
        col = table[name]
        numeric = pd.to_numeric(col, errors="coerce")
        if numeric.notna().sum() == col.notna().sum():
            parts.append(numeric.astype(float).rename(name))
        else:
            levels = sorted(col.dropna().astype(str).unique())
            for level in levels[1:]:
                parts.append((col.astype(str) == level).astype(float).where(col.notna()).rename(f"{name}[{level}]"))
    return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=table.index)


def _one_unit_per_participant(owner: pd.Series) -> None:
    """Two sessions of one person are not two independent subjects of a group fit."""
    repeated = sorted(owner[owner.duplicated()].unique())
    if repeated:
        raise InputError(None, f"{len(repeated)} participant(s) have more than one unit in one group fit "
                         f"(e.g. {repeated[0]})",
                         "analyse one session per participant: set the config key sessions to first or a label")


def model_covariates(covariates, site_column: str | None, harmonize: bool) -> list[str]:
    """The covariates of the group models: the configured ones, plus the site when the data are
    not ComBat-harmonised across it (a multi-site cohort is never analysed as if from one site)."""
    covariates = list(covariates)
    if site_column and not harmonize and site_column not in covariates:
        covariates.append(site_column)
    return covariates


def merge_participants(sfc: pd.DataFrame, participants: pd.DataFrame, group_column: str, groups,
                       columns=()) -> pd.DataFrame:
    """Subjects of ``sfc`` with their group in ``groups`` and the given participant columns.

    Subjects without a participants row, outside the configured groups, or with
    a missing value in ``columns`` are dropped, with a log line saying how many.
    """
    needed = [group_column, *[c for c in columns if c != group_column]]
    if ID in participants.columns:
        participants = participants.set_index(ID)
    missing = [c for c in needed if c not in participants.columns]
    if missing:
        raise InputError(None, f"participants table lacks column(s) {missing}",
                         "add them to participants.tsv or remove them from the config")
    # Sessions: unit IDs like sub-01_ses-1 match the participant sub-01.
    base = sfc[ID].map(participant_of)
    _one_unit_per_participant(base)
    info = participants[needed]
    info = info[~info.index.duplicated()]
    merged = info.reindex(base.to_numpy())
    merged.index = sfc.index
    keep = merged[group_column].isin(list(groups)) & merged[list(columns)].notna().all(axis=1)
    dropped = int((~keep).sum())
    if dropped:
        log.info("%d of %d subjects left out (group not in %s or missing %s)", dropped, len(sfc),
                 list(groups), ", ".join(columns) or "-")
    return merged[keep]


def _solve(x: np.ndarray, y: np.ndarray):
    """OLS of every column of y on x: coefficients, residual sum of squares, (X'X)^-1, df."""
    pinv = np.linalg.pinv(x)
    beta = pinv @ y
    resid = y - x @ beta
    sse = (resid ** 2).sum(axis=0)
    rank = np.linalg.matrix_rank(x)
    return beta, sse, pinv @ pinv.T, x.shape[0] - rank


def _by_missing_pattern(y: np.ndarray):
    """Yield (row mask, column indices) for each distinct pattern of finite values."""
    finite = np.isfinite(y)
    if finite.all():
        yield np.ones(y.shape[0], dtype=bool), np.arange(y.shape[1])
        return
    patterns, inverse = np.unique(finite.T, axis=0, return_inverse=True)
    for k, rows in enumerate(patterns):
        yield rows, np.flatnonzero(inverse.ravel() == k)


# ---------------------------------------------------------------------------
# Effect sizes and their confidence intervals
# ---------------------------------------------------------------------------

CI_LEVEL = 0.95


def _invert(cdf, observed: np.ndarray, lo: np.ndarray, hi: np.ndarray, target: float, centre: np.ndarray,
            iters: int = 100):
    """The noncentrality ``x`` in [lo, hi] with ``cdf(observed, x) = target``, for every element.

    ``cdf`` falls as the noncentrality grows (noncentral t and F), so bisection on all regions
    at once; 100 halvings narrow any bracket below float resolution. scipy's noncentral
    distributions return NaN at some points far in a tail (scipy 1.15: ``nct.cdf(5.3, 303,
    -5.0)``), where the answer is plain from the side: below ``centre`` (the noncentrality
    that puts ``observed`` mid-distribution) the cdf is near 1, above it near 0.
    """
    lo, hi = lo.astype(float).copy(), hi.astype(float).copy()
    for _ in range(iters):
        mid = (lo + hi) / 2
        value = cdf(observed, mid)
        above = np.where(np.isnan(value), mid < centre, value > target)
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    return (lo + hi) / 2


def partial_eta_squared_ci(f: np.ndarray, df1, df2, level: float = CI_LEVEL):
    """Partial eta squared of F tests, with the CI from the noncentral F distribution.

    eta2p = F df1 / (F df1 + df2). The interval inverts the noncentral F at the observed F
    (Steiger 2004): the noncentrality bounds L with ``ncf.cdf(F, df1, df2, L)`` = 1 - a/2 and
    a/2, mapped by L / (L + df1 + df2 + 1); a bound with no solution above 0 is 0.
    """
    f = np.asarray(f, dtype=float)
    df1, df2 = np.broadcast_to(df1, f.shape).astype(float), np.broadcast_to(df2, f.shape).astype(float)
    eta = f * df1 / (f * df1 + df2)
    ok = np.isfinite(f) & (df2 > 0)
    lower, upper = np.full(f.shape, np.nan), np.full(f.shape, np.nan)
    if ok.any():
        fo, d1, d2 = f[ok], df1[ok], df2[ok]
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            def cdf(x, lam):
                return sps.ncf.cdf(x, d1, d2, lam)

            at_zero = sps.f.cdf(fo, d1, d2)
            top = np.maximum(100.0, 4 * fo * d1 + 100.0)
            alpha = 1 - level
            centre = np.maximum(fo * d1 - d1, 0.0)  # E[F] = (d1 + L) / d1 (large d2)
            lam_lo = np.where(at_zero > 1 - alpha / 2,
                              _invert(cdf, fo, np.zeros_like(fo), top, 1 - alpha / 2, centre), 0.0)
            lam_hi = np.where(at_zero > alpha / 2, _invert(cdf, fo, np.zeros_like(fo), top, alpha / 2, centre),
                              0.0)
        lower[ok] = lam_lo / (lam_lo + d1 + d2 + 1)
        upper[ok] = lam_hi / (lam_hi + d1 + d2 + 1)
    return eta, lower, upper


def noncentral_t_ci(t: np.ndarray, df, level: float = CI_LEVEL):
    """The CI of a t statistic's noncentrality parameter (inverting the noncentral t).

    A standardised effect ``d = t * k`` (k fixed by the design) has the CI ``bounds * k``.
    """
    t = np.asarray(t, dtype=float)
    df = np.broadcast_to(df, t.shape).astype(float)
    lower, upper = np.full(t.shape, np.nan), np.full(t.shape, np.nan)
    ok = np.isfinite(t) & (df > 0)
    if ok.any():
        to, d = t[ok], df[ok]
        # the bounds lie about 2 standard errors of the noncentrality, sqrt(1 + t^2 / 2df), from t
        width = 8 * np.sqrt(1 + to ** 2 / (2 * d)) + 2

        def cdf(x, ncp):
            return sps.nct.cdf(x, d, ncp)

        alpha = 1 - level
        with np.errstate(invalid="ignore", over="ignore"):
            lower[ok] = _invert(cdf, to, to - width, to + width, 1 - alpha / 2, to)
            upper[ok] = _invert(cdf, to, to - width, to + width, alpha / 2, to)
    return lower, upper


def fisher_ci(r: np.ndarray, n: np.ndarray, n_covariates: int = 0, level: float = CI_LEVEL):
    """CI of a (partial) correlation by Fisher's z: tanh(atanh r -/+ z / sqrt(n - 3 - q))."""
    r, n = np.asarray(r, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = 1 / np.sqrt(n - 3 - n_covariates)
        z = np.arctanh(np.clip(r, -1 + 1e-15, 1 - 1e-15))
        half = sps.norm.ppf(0.5 + level / 2) * se
        return np.tanh(z - half), np.tanh(z + half)


def protected_posthoc(table: pd.DataFrame, pairs, alpha: float) -> dict:
    """``{p_holm_A_vs_B: values}``: Holm across the pairs of each region whose omnibus test
    passes FDR (``p_fdr < alpha``), NaN for the other regions (no post hoc test without an
    omnibus effect), so the pairs are corrected for each other and the regions by the gate."""
    from statsmodels.stats.multitest import multipletests

    raw = table[[f"p_{a}_vs_{b}" for a, b in pairs]].to_numpy(dtype=float)
    holm = np.full(raw.shape, np.nan)
    gate = (table["p_fdr"].to_numpy(dtype=float) < alpha) & np.isfinite(raw).all(axis=1)
    for row in np.flatnonzero(gate):
        holm[row] = multipletests(raw[row], method="holm")[1]
    return {f"p_holm_{a}_vs_{b}": holm[:, k] for k, (a, b) in enumerate(pairs)}


def ancova(sfc: pd.DataFrame, participants: pd.DataFrame, group_column: str, groups, covariates=(),
           labels: pd.DataFrame | None = None, min_per_group: int = 2, alpha: float = 0.05) -> pd.DataFrame:
    """One-way ANCOVA of each region's SFC across groups, with pairwise contrasts.

    Model per region (OLS): ``sfc ~ 1 + group dummies + covariates``. The F
    test compares it with the model without the group terms (the type II F of
    the group factor); each pair of groups A, B gets the t test of the
    difference of their adjusted means (coefficient contrast) from the same fit.
    p-values are FDR-corrected (Benjamini-Hochberg) across regions, separately
    for the F test and for each pair.

    Parameters
    ----------
    sfc : DataFrame
        ``participant_id`` + one column per region (:func:`assemble`).
    participants : DataFrame
        participants.tsv (``participant_id`` as a column or as the index, as
        :func:`sfc.bids.read_participants` returns it; group column, covariates).
    group_column : str
    groups : sequence of str
        Groups compared, in the order used for the pair names.
    covariates : sequence of str
        Numeric or categorical (text, dummy-coded) columns of ``participants``.
    labels : DataFrame, optional
        Label table, for the ``index`` column (default 1..R).
    min_per_group : int
        Regions where a group has fewer subjects with a value get NaN.
    alpha : float
        FDR level of the omnibus test that opens a region's post hoc tests (``p_holm_*``).

    Returns
    -------
    DataFrame
        ``index, name, F, p, p_fdr`` and for each pair A, B (``groups`` order):
        ``t_A_vs_B, p_A_vs_B, p_fdr_A_vs_B`` (t > 0: A higher). Also
        ``n`` (subjects used) and the adjusted means ``mean_<group>`` are added
        at the end, then the effect sizes with 95% CIs: ``eta2p`` (partial eta
        squared of the group factor, :func:`partial_eta_squared_ci`) and per pair
        ``d_A_vs_B``: the covariate-adjusted Cohen's d, the difference of adjusted
        means over the model's residual SD (sqrt of its mean squared error, all
        groups pooled, as emmeans' ``eff_size`` with ``sigma(model)``), its CI
        from the noncentral t of the contrast; each with ``_ci_low``/``_ci_high``.
        Last, the protected post hoc tests ``p_holm_A_vs_B``: for regions whose
        omnibus ``p_fdr < alpha`` only, the pairs' p Holm-corrected across the
        pairs of that region (statsmodels ``multipletests``); NaN elsewhere.
    """
    groups = list(groups)
    covariates = list(covariates)
    regions = [c for c in sfc.columns if c != ID]
    info = merge_participants(sfc, participants, group_column, groups, covariates)
    y_all = sfc.loc[info.index, regions].to_numpy(dtype=float)
    g = info[group_column].to_numpy()
    dummies = np.column_stack([(g == grp).astype(float) for grp in groups[1:]]) if len(groups) > 1 else np.empty((len(g), 0))
    cov = _covariate_matrix(info, covariates).to_numpy(dtype=float)
    n_sub = len(g)
    x_full = np.column_stack([np.ones(n_sub), dummies, cov])
    x_red = np.column_stack([np.ones(n_sub), cov])
    k = len(groups)
    pairs = list(itertools.combinations(groups, 2))
    nreg = len(regions)
    f = np.full(nreg, np.nan)
    p = np.full(nreg, np.nan)
    n_used = np.zeros(nreg, dtype=int)
    t_pair = {pair: np.full(nreg, np.nan) for pair in pairs}
    p_pair = {pair: np.full(nreg, np.nan) for pair in pairs}
    adj_mean = {grp: np.full(nreg, np.nan) for grp in groups}
    df1, df_err = np.full(nreg, np.nan), np.full(nreg, np.nan)
    d_scale = {pair: np.full(nreg, np.nan) for pair in pairs}  # d = t * sqrt(c' (X'X)^-1 c)

    for rows, cols in _by_missing_pattern(y_all):
        counts = [(g[rows] == grp).sum() for grp in groups]
        if min(counts) < min_per_group:
            continue
        xf, xr, y = x_full[rows], x_red[rows], y_all[np.ix_(rows, cols)]
        beta, sse_f, xtx_inv, df = _solve(xf, y)
        _, sse_r, _, df_r = _solve(xr, y)
        if df <= 0:
            continue
        mse = sse_f / df
        with np.errstate(invalid="ignore", divide="ignore"):
            fval = ((sse_r - sse_f) / (df_r - df)) / mse
        f[cols] = fval
        p[cols] = sps.f.sf(fval, df_r - df, df)
        df1[cols], df_err[cols] = df_r - df, df
        n_used[cols] = rows.sum()

        def coef_vector(grp):
            c = np.zeros(xf.shape[1])
            if grp != groups[0]:
                c[groups.index(grp)] = 1.0
            return c

        for grp in groups:                                  # adjusted means at the covariate means
            c = coef_vector(grp)
            c[0] = 1.0
            c[k:] = cov[rows].mean(axis=0)
            adj_mean[grp][cols] = c @ beta
        for a, b in pairs:
            c = coef_vector(a) - coef_vector(b)
            se = np.sqrt(mse * (c @ xtx_inv @ c))
            with np.errstate(invalid="ignore", divide="ignore"):
                t = (c @ beta) / se
            t_pair[(a, b)][cols] = t
            p_pair[(a, b)][cols] = 2 * sps.t.sf(np.abs(t), df)
            d_scale[(a, b)][cols] = np.sqrt(c @ xtx_inv @ c)

    names = regions
    index = labels["index"].to_numpy() if labels is not None else np.arange(1, nreg + 1)
    if labels is not None and labels["name"].astype(str).tolist() != names:
        raise ValueError("region columns of the group table differ from the label table")
    out = pd.DataFrame({"index": index, "name": names, "F": f, "p": p, "p_fdr": fdr_bh(p)})
    for a, b in pairs:
        out[f"t_{a}_vs_{b}"] = t_pair[(a, b)]
        out[f"p_{a}_vs_{b}"] = p_pair[(a, b)]
        out[f"p_fdr_{a}_vs_{b}"] = fdr_bh(p_pair[(a, b)])
    out["n"] = n_used
    for grp in groups:
        out[f"mean_{grp}"] = adj_mean[grp]
    out["eta2p"], out["eta2p_ci_low"], out["eta2p_ci_high"] = partial_eta_squared_ci(f, df1, df_err)
    for a, b in pairs:
        low, high = noncentral_t_ci(t_pair[(a, b)], df_err)
        out[f"d_{a}_vs_{b}"] = t_pair[(a, b)] * d_scale[(a, b)]
        out[f"d_{a}_vs_{b}_ci_low"] = low * d_scale[(a, b)]
        out[f"d_{a}_vs_{b}_ci_high"] = high * d_scale[(a, b)]
    for column, values in protected_posthoc(out, pairs, alpha).items():
        out[column] = values
    log.info("ANCOVA over %d regions, %d subjects (%s), covariates: %s; %d regions with p_fdr < 0.05",
             nreg, n_sub, ", ".join(f"{grp} {c}" for grp, c in zip(groups, [(g == x).sum() for x in groups])),
             ", ".join(covariates) or "none", int((out["p_fdr"] < 0.05).sum()))
    return out


# ---------------------------------------------------------------------------
# Clinical correlations
# ---------------------------------------------------------------------------

def _rank_columns(a: np.ndarray) -> np.ndarray:
    return np.apply_along_axis(sps.rankdata, 0, a) if a.size else a


def partial_correlation(y: np.ndarray, scale: np.ndarray, covariates: np.ndarray, method: str = "pearson"):
    """Partial correlation of each column of ``y`` with ``scale`` given ``covariates``.

    Both are residualised on ``[1, covariates]`` by OLS and the residuals
    correlated (Pearson); ``method="spearman"`` ranks y, the scale and the
    covariates first (the usual partial Spearman, as in pingouin.partial_corr).
    p from t = r sqrt(df / (1 - r^2)), df = n - 2 - (number of covariates).

    Parameters
    ----------
    y : ndarray (n, R), finite
    scale : ndarray (n,), finite
    covariates : ndarray (n, q), finite
    method : {"pearson", "spearman"}

    Returns
    -------
    r, p : ndarray (R,)
    """
    if method == "spearman":
        y, scale, covariates = _rank_columns(y), sps.rankdata(scale), _rank_columns(covariates)
    elif method != "pearson":
        raise ValueError(f"unknown correlation method {method!r}: use 'pearson' or 'spearman'")
    n = len(scale)
    x = np.column_stack([np.ones(n), covariates])
    pinv = np.linalg.pinv(x)
    ry = y - x @ (pinv @ y)
    rs = scale - x @ (pinv @ scale)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (ry * rs[:, None]).sum(axis=0) / np.sqrt((ry ** 2).sum(axis=0) * (rs ** 2).sum())
        df = n - 2 - (np.linalg.matrix_rank(x) - 1)
        t = r * np.sqrt(df / np.maximum(1 - r ** 2, 1e-300))
        p = 2 * sps.t.sf(np.abs(t), df) if df > 0 else np.full_like(r, np.nan)
    return np.clip(r, -1, 1), p


def clinical_correlations(sfc: pd.DataFrame, participants: pd.DataFrame, group_column: str, patient_groups,
                          scales, covariates=(), labels: pd.DataFrame | None = None, regions=None,
                          methods=("pearson", "spearman"), min_subjects: int = 8) -> pd.DataFrame:
    """Partial correlations of regional SFC with clinical scales, within each patient group.

    For each group in ``patient_groups``, each scale and each method, every
    tested region's SFC is correlated with the scale, covariates partialled out;
    FDR (Benjamini-Hochberg) within group, scale and method.

    Parameters
    ----------
    sfc, participants, group_column : as in :func:`ancova`
    patient_groups : sequence of str
    scales : sequence of str
        Clinical columns of participants.tsv (e.g. ``hamd24_pre``, ``bsi``).
    covariates : sequence of str
    labels : DataFrame, optional
    regions : sequence of str, optional
        Region names to test (e.g. :func:`significant_regions`); default all.
    methods : sequence of {"pearson", "spearman"}
    min_subjects : int
        Fewer subjects with complete data in a group: that group/scale is skipped
        with a log line.

    Returns
    -------
    DataFrame
        ``group, index, name, scale, r, p, p_fdr, n, method, r_ci_low, r_ci_high``
        (95% CI of the partial r by Fisher's z, :func:`fisher_ci`, with the
        covariates counted).
    """
    all_regions = [c for c in sfc.columns if c != ID]
    regions = all_regions if regions is None else [r for r in all_regions if r in set(regions)]
    index_of = dict(zip(labels["name"].astype(str), labels["index"])) if labels is not None else \
        {name: k + 1 for k, name in enumerate(all_regions)}
    out = []
    for grp in patient_groups:
        for scale in scales:
            info = merge_participants(sfc, participants, group_column, [grp], [*covariates, scale])
            if len(info) < min_subjects:
                log.info("clinical correlations: %s / %s skipped (%d subjects with complete data)", grp, scale,
                         len(info))
                continue
            s = pd.to_numeric(info[scale], errors="coerce").to_numpy(dtype=float)
            c = _covariate_matrix(info, covariates).to_numpy(dtype=float)
            y_all = sfc.loc[info.index, regions].to_numpy(dtype=float)
            for method in methods:
                r = np.full(len(regions), np.nan)
                p = np.full(len(regions), np.nan)
                n = np.zeros(len(regions), dtype=int)
                for rows, cols in _by_missing_pattern(y_all):
                    if rows.sum() < min_subjects:
                        continue
                    r[cols], p[cols] = partial_correlation(y_all[np.ix_(rows, cols)], s[rows], c[rows], method)
                    n[cols] = rows.sum()
                low, high = fisher_ci(r, n, c.shape[1])
                out.append(pd.DataFrame({"group": grp, "index": [index_of[x] for x in regions], "name": regions,
                                         "scale": scale, "r": r, "p": p, "p_fdr": fdr_bh(p), "n": n,
                                         "method": method, "r_ci_low": low, "r_ci_high": high}))
    columns = ["group", "index", "name", "scale", "r", "p", "p_fdr", "n", "method", "r_ci_low", "r_ci_high"]
    return pd.concat(out, ignore_index=True)[columns] if out else pd.DataFrame(columns=columns)


# ---------------------------------------------------------------------------
# What each column means, and which tests each correction spans (sidecar JSON)
# ---------------------------------------------------------------------------

def groupstats_sidecar(table: pd.DataFrame, groups, covariates, site_column=None) -> dict:
    """BIDS-style column descriptions of an :func:`ancova` table, correction families named."""
    groups, n_regions = list(groups), len(table)
    model = f"OLS per region: SFC ~ group ({', '.join(groups)}) + {' + '.join(covariates) or 'no covariates'}"
    harmonised = f"; SFC ComBat-harmonised across '{site_column}' first" if site_column else ""
    doc = {
        "Description": f"Group comparison of regional SFC. {model}{harmonised}. Effect-size intervals: "
                       f"{CI_LEVEL:.0%}.",
        "F": {"Description": "F test of the group factor (type II: the model against the model without group)"},
        "p": {"Description": "p of F, uncorrected"},
        "p_fdr": {"Description": f"Benjamini-Hochberg FDR of p over the {n_regions} regions of this table. "
                                 "Family: this atlas x this coupling method x the group F test"},
        "n": {"Description": "subjects in the fit of this region"},
        "eta2p": {"Description": "partial eta squared of the group factor, F df1 / (F df1 + df2)"},
        "eta2p_ci_low": {"Description": f"lower bound of the {CI_LEVEL:.0%} CI of eta2p (noncentral F, Steiger 2004)"},
        "eta2p_ci_high": {"Description": f"upper bound of the {CI_LEVEL:.0%} CI of eta2p"},
    }
    for grp in groups:
        doc[f"mean_{grp}"] = {"Description": f"adjusted mean SFC of {grp} at the covariate means"}
    for a, b in itertools.combinations(groups, 2):
        pair = f"{a}_vs_{b}"
        doc[f"t_{pair}"] = {"Description": f"t of the contrast {a} minus {b} of adjusted means (> 0: {a} higher)"}
        doc[f"p_{pair}"] = {"Description": f"p of t_{pair}, uncorrected"}
        doc[f"p_fdr_{pair}"] = {
            "Description": f"Benjamini-Hochberg FDR of p_{pair} over the {n_regions} regions. Family: this atlas x "
                           "this coupling method x this pair of groups; computed for every region whatever its F "
                           f"test, and not corrected across the pairs (p_holm_{pair} is)"}
        doc[f"p_holm_{pair}"] = {
            "Description": f"p_{pair} Holm-corrected across the {len(groups) * (len(groups) - 1) // 2} pairs of this "
                           "region, only where the region's omnibus p_fdr passes the FDR level (stats.alpha); n/a "
                           "elsewhere. The post hoc test to read for a region with a group effect"}
        doc[f"d_{pair}"] = {"Description": f"covariate-adjusted Cohen's d: (adjusted mean {a} - {b}) / residual SD "
                                           "of the model (sqrt MSE, all groups pooled)"}
        doc[f"d_{pair}_ci_low"] = {"Description": f"lower bound of the {CI_LEVEL:.0%} CI of d_{pair} (noncentral t)"}
        doc[f"d_{pair}_ci_high"] = {"Description": f"upper bound of the {CI_LEVEL:.0%} CI of d_{pair}"}
    return {k: v for k, v in doc.items() if k == "Description" or k in table.columns}


def clinical_sidecar(table: pd.DataFrame, covariates, site_column=None) -> dict:
    """BIDS-style column descriptions of a :func:`clinical_correlations` table."""
    harmonised = f" SFC ComBat-harmonised across '{site_column}' first." if site_column else ""
    return {
        "Description": "Partial correlations of regional SFC with clinical scales within each patient group, "
                       f"covariates partialled out: {', '.join(covariates) or 'none'}.{harmonised}",
        "r": {"Description": "partial correlation (Pearson, or Spearman: all variables ranked first)"},
        "p": {"Description": "p of r (t with n - 2 - covariates df), uncorrected"},
        "p_fdr": {"Description": "Benjamini-Hochberg FDR over the regions tested. Family: this atlas x this "
                                 "coupling method x one patient group x one scale x one correlation method"},
        "n": {"Description": "subjects with the scale, the covariates and the region's SFC"},
        "r_ci_low": {"Description": f"lower bound of the {CI_LEVEL:.0%} CI of r (Fisher z, se 1 / "
                                    "sqrt(n - 3 - covariates))"},
        "r_ci_high": {"Description": f"upper bound of the {CI_LEVEL:.0%} CI of r"},
    }


def significant_regions(groupstats: pd.DataFrame, column: str = "p_fdr", alpha: float = 0.05) -> list[str]:
    """Names of regions with ``column < alpha`` in a group-statistics table."""
    return groupstats.loc[groupstats[column] < alpha, "name"].astype(str).tolist()


# ---------------------------------------------------------------------------
# Cross-atlas replication
# ---------------------------------------------------------------------------

def replicated_regions(results: dict, column: str = "p_fdr", alpha: float = 0.05,
                       keys=("gyrus", "hemisphere")) -> pd.DataFrame:
    """Anatomical units (gyrus code and hemisphere) with a significant region in every atlas.

    Parameters
    ----------
    results : dict
        ``{atlas: (groupstats DataFrame, label table DataFrame)}``; the label
        tables share the ``gyrus`` codes and ``hemisphere`` (BNA246 and HOA do).
    column : str
        The p-value column that decides significance (e.g. ``p_fdr`` or
        ``p_fdr_TRD_vs_nTRD``).
    alpha : float
    keys : sequence of str
        Label-table columns that link atlases (``("gyrus",)`` ignores the side).

    Returns
    -------
    DataFrame
        One row per unit significant in at least one atlas: the ``keys``,
        ``n_atlases`` (in how many atlases), ``replicated`` (in all of them), and
        per atlas ``regions_<atlas>`` (significant region names, ``;``-joined)
        and ``min_p_<atlas>``. Replicated units first.
    """
    keys = list(keys)
    per_atlas = {}
    for atlas, (table, labels) in results.items():
        missing = [k for k in keys if k not in labels.columns]
        if missing:
            raise InputError(None, f"the {atlas} label table has no column(s) {missing}",
                             "use the label tables shipped in resources/atlases")
        merged = table.drop(columns=[k for k in keys if k in table.columns]).merge(
            labels[["name", *keys]], on="name", how="left")
        named = merged[keys].notna().all(axis=1) & (merged[keys].astype(str) != "").all(axis=1)
        sig = merged[(merged[column] < alpha) & named].copy()
        sig["_unit"] = ["|".join(map(str, unit)) for unit in sig[keys].itertuples(index=False)]
        per_atlas[atlas] = sig
    units = sorted(set().union(*[set(s["_unit"]) for s in per_atlas.values()])) if per_atlas else []
    rows = []
    for unit in units:
        row = dict(zip(keys, unit.split("|")))
        present = 0
        for atlas, sig in per_atlas.items():
            hit = sig[sig["_unit"] == unit]
            row[f"regions_{atlas}"] = ";".join(hit["name"].astype(str))
            row[f"min_p_{atlas}"] = hit[column].min() if len(hit) else np.nan
            present += bool(len(hit))
        row["n_atlases"] = present
        row["replicated"] = present == len(per_atlas)
        rows.append(row)
    cols = keys + ["n_atlases", "replicated"] + [c for a in per_atlas for c in (f"regions_{a}", f"min_p_{a}")]
    return pd.DataFrame(rows, columns=cols).sort_values(["replicated", "n_atlases", *keys],
                                                       ascending=[False, False] + [True] * len(keys),
                                                       ignore_index=True)

