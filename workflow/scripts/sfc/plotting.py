"""Figures of the report: matplotlib (Agg) and nilearn plotting, returned as PNG bytes.

Every function takes arrays or tables and returns a :class:`matplotlib.figure.Figure`
(or PNG bytes through :func:`to_png`), never reads Snakemake or the config, and never
shows a window. Brain maps paint one value per atlas region into the atlas image
(:func:`region_image`) and draw it with nilearn's glass brain or stat-map plots
(Abraham et al. 2014, Front. Neuroinform. 8:14).
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

#: One colour per group, in the configured group order (colour-blind safe, Okabe-Ito).
GROUP_COLOURS = ["#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
DPI = 90


def to_png(fig, dpi: int = DPI) -> bytes:
    """Render a figure to PNG bytes and close it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    dpi : int

    Returns
    -------
    bytes
        The PNG file's content (starts with ``b"\\x89PNG"``).
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buf.getvalue()


def group_colours(groups) -> dict:
    """``{group: colour}`` in the given order."""
    return {g: GROUP_COLOURS[i % len(GROUP_COLOURS)] for i, g in enumerate(groups)}


# --- brain maps ------------------------------------------------------------------------------

def region_image(atlas_img, values, indices=None, background: float = 0.0) -> nib.Nifti1Image:
    """Paint one value per region into the atlas image.

    Parameters
    ----------
    atlas_img : nibabel image or path
        Integer label image (values ``1..N``, 0 = background).
    values : array-like, shape (n,)
        One value per region; NaN regions are left at ``background``.
    indices : array-like of int, optional
        The label value of each entry of ``values``; default ``1..n`` (matrix order).
    background : float
        Value outside the listed regions.

    Returns
    -------
    nibabel.Nifti1Image
        Float image on the atlas grid.
    """
    img = nib.load(atlas_img) if not isinstance(atlas_img, nib.spatialimages.SpatialImage) else atlas_img
    labels = np.asarray(img.dataobj).astype(np.int64)
    values = np.asarray(values, dtype=float)
    indices = np.arange(1, len(values) + 1) if indices is None else np.asarray(indices, dtype=np.int64)
    if len(indices) != len(values):
        raise ValueError(f"{len(values)} values but {len(indices)} region indices")
    lookup = np.full(max(int(labels.max()), int(indices.max(initial=0))) + 1, background, dtype=np.float32)
    finite = np.isfinite(values)
    lookup[indices[finite]] = values[finite]
    lookup[0] = background
    return nib.Nifti1Image(lookup[labels], img.affine)


def signed_projection(data: np.ndarray, axis: int) -> np.ndarray:
    """Maximum-intensity projection keeping the sign: along ``axis``, the value of largest magnitude.

    NaN voxels are ignored; rays with no finite voxel give NaN.
    """
    filled = np.where(np.isfinite(data), data, 0.0)
    idx = np.expand_dims(np.argmax(np.abs(filled), axis=axis), axis)
    out = np.take_along_axis(filled, idx, axis=axis).squeeze(axis)
    out[~np.isfinite(data).any(axis=axis)] = np.nan
    return out


def glass_brain(atlas_img, values, indices=None, title: str = "", cmap: str = "RdBu_r",
                symmetric: bool = True, vmax: float | None = None, threshold=None, colorbar_label: str = ""):
    """Regional values on a glass brain: signed maximum-intensity projections in three views.

    The same picture as nilearn's ``plot_glass_brain(..., plot_abs=False)`` (each ray
    shows its value of largest magnitude) with the brain outline taken from the atlas,
    drawn directly with matplotlib: about ten times faster, which matters for a report
    with dozens of maps.

    Parameters
    ----------
    atlas_img : nibabel image or path
        Integer label image in MNI space.
    values : array-like
        One value per region (matrix order, or the order of ``indices``); NaN regions
        are not drawn (e.g. non-significant ones).
    indices : array-like of int, optional
    title : str
    cmap : str
    symmetric : bool
        Colour scale from ``-vmax`` to ``vmax`` (signed maps); otherwise ``0`` to ``vmax``.
    vmax : float, optional
        Upper end of the colour scale; default the largest absolute value.
    threshold : float, optional
        Values with absolute value below this are not drawn.
    colorbar_label : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    img = nib.load(atlas_img) if not isinstance(atlas_img, nib.spatialimages.SpatialImage) else atlas_img
    img = nib.as_closest_canonical(img)
    brain = np.asarray(img.dataobj) > 0
    values = np.asarray(values, dtype=float)
    painted = region_image(img, values, indices, background=np.nan).get_fdata()
    painted[~brain] = np.nan
    if threshold is not None:
        painted[np.abs(painted) < threshold] = np.nan
    finite = values[np.isfinite(values)]
    if vmax is None:
        vmax = float(np.max(np.abs(finite))) if finite.size else 1.0
    vmax = vmax or 1.0
    vmin = -vmax if symmetric else (0.0 if not finite.size or finite.min() >= 0 else float(finite.min()))
    aff = img.affine
    shape = np.array(brain.shape)
    lo = aff[:3, 3]
    hi = lo + np.diag(aff[:3, :3]) * (shape - 1)
    views = [("L", 0, (1, 2), "y (mm)", "z (mm)"), ("coronal", 1, (0, 2), "x (mm)", "z (mm)"),
             ("axial", 2, (0, 1), "x (mm)", "y (mm)")]
    widths = [hi[a] - lo[a] for a in (1, 0, 0)]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.1), gridspec_kw={"width_ratios": widths})
    im = None
    for ax, (name, axis, (a, b), xl, yl) in zip(axes, views):
        outline = brain.any(axis=axis).T.astype(float)
        proj = signed_projection(painted, axis).T
        extent = (lo[a], hi[a], lo[b], hi[b])
        ax.imshow(np.where(outline > 0, 0.93, 1.0), cmap="gray", vmin=0, vmax=1, origin="lower", extent=extent,
                  interpolation="nearest")
        ax.contour(outline, levels=[0.5], colors="#888888", linewidths=0.8, origin="lower", extent=extent)
        im = ax.imshow(np.ma.masked_invalid(proj), cmap=cmap, vmin=vmin, vmax=vmax, origin="lower",
                       extent=extent, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title({"L": "sagittal (front to the right)", "coronal": "coronal (left on the left)",
                      "axial": "axial (front up, left on the left)"}[name], fontsize=8)
    cb = fig.colorbar(im, ax=list(axes), fraction=0.025, pad=0.01)
    cb.ax.tick_params(labelsize=7)
    if colorbar_label:
        cb.set_label(colorbar_label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def stat_map(atlas_img, values, indices=None, title: str = "", cmap: str = "RdBu_r", symmetric: bool = True,
             vmax: float | None = None, threshold=None, cut_coords=(-30, -10, 10, 30, 50, 65)):
    """Regional values on axial slices of the MNI152 template (nilearn ``plot_stat_map``).

    Parameters are those of :func:`glass_brain`; ``cut_coords`` are the axial slice
    positions in mm. Returns a :class:`matplotlib.figure.Figure`.
    """
    from nilearn import datasets, plotting

    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    if vmax is None:
        vmax = float(np.max(np.abs(finite))) if finite.size else 1.0
    vmax = vmax or 1.0
    fig = plt.figure(figsize=(11, 2.6))
    plotting.plot_stat_map(
        region_image(atlas_img, values, indices), bg_img=datasets.load_mni152_template(resolution=2),
        display_mode="z", cut_coords=list(cut_coords), colorbar=True, cmap=cmap, vmax=vmax,
        vmin=None if symmetric else 0.0, symmetric_cbar=symmetric, threshold=threshold, figure=fig,
        annotate=True, draw_cross=False, black_bg=False, title=None)
    if title:
        fig.suptitle(title, fontsize=11, y=1.02)
    return fig


# --- matrices and QC -------------------------------------------------------------------------

def heatmap(matrix, title: str = "", cmap: str = "viridis", symmetric: bool = False, log: bool = False,
            label: str = ""):
    """A connectivity matrix as an image (regions in atlas order).

    Parameters
    ----------
    matrix : array-like, shape (N, N)
    title : str
    cmap : str
    symmetric : bool
        Colour scale symmetric around zero (FC).
    log : bool
        Show ``log10(1 + x)`` (streamline counts span orders of magnitude).
    label : str
        Colour bar label.

    Returns
    -------
    matplotlib.figure.Figure
    """
    m = np.array(matrix, dtype=float)
    if log:
        m = np.log10(1.0 + np.clip(m, 0, None))
    fig, ax = plt.subplots(figsize=(3.4, 3.0))
    finite = m[np.isfinite(m)]
    if symmetric:
        vmax = float(np.nanpercentile(np.abs(finite), 99)) if finite.size else 1.0
        im = ax.imshow(m, cmap=cmap, vmin=-(vmax or 1.0), vmax=vmax or 1.0, interpolation="nearest")
    else:
        im = ax.imshow(m, cmap=cmap, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("region", fontsize=8)
    ax.set_ylabel("region", fontsize=8)
    ax.tick_params(labelsize=7)
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.ax.tick_params(labelsize=7)
    if label:
        cb.set_label(label, fontsize=8)
    return fig


# --- distributions and group comparisons -----------------------------------------------------

def sfc_distribution(group_means: dict, title: str = "", xlabel: str = "SFC"):
    """Distribution across regions of the group-mean SFC, one histogram outline per group.

    Parameters
    ----------
    group_means : dict
        ``{group: array of regional mean SFC}``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    colours = group_colours(group_means)
    allv = np.concatenate([np.asarray(v, float)[np.isfinite(v)] for v in group_means.values()] or [np.zeros(1)])
    bins = np.histogram_bin_edges(allv, bins=30) if allv.size else 10
    for g, v in group_means.items():
        v = np.asarray(v, float)
        v = v[np.isfinite(v)]
        ax.hist(v, bins=bins, histtype="step", linewidth=1.8, color=colours[g],
                label=f"{g} (median {np.median(v):.3f})" if v.size else g)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("regions")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def group_strip(values: pd.Series, groups: pd.Series, order, title: str = "", ylabel: str = "SFC",
                seed: int = 0):
    """Box plot with the individual subjects as jittered points, one box per group.

    Parameters
    ----------
    values : pandas.Series
        One value per subject.
    groups : pandas.Series
        The group of each subject (same index).
    order : list
        Groups in display order (groups without subjects are skipped).
    seed : int
        Seed of the horizontal jitter (deterministic figures).

    Returns
    -------
    matplotlib.figure.Figure
    """
    rng = np.random.default_rng(seed)
    colours = group_colours(order)
    present = [g for g in order if ((groups == g) & values.notna()).any()]
    data = [values[(groups == g) & values.notna()].to_numpy(float) for g in present]
    fig, ax = plt.subplots(figsize=(2.9, 3.0))
    if data:
        box = ax.boxplot(data, widths=0.55, patch_artist=True, showfliers=False)
        for patch, g in zip(box["boxes"], present):
            patch.set_facecolor(colours[g])
            patch.set_alpha(0.25)
        for median in box["medians"]:
            median.set_color("black")
        for i, (g, v) in enumerate(zip(present, data), start=1):
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(v)), v, s=12, color=colours[g], alpha=0.85, zorder=3)
        ax.set_xticks(range(1, len(present) + 1), present)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def scatter_fit(x, y, title: str = "", xlabel: str = "", ylabel: str = "SFC", colour: str = "#0072B2",
                annotation: str = ""):
    """Scatter plot with the least-squares line and its 95% confidence band.

    Parameters
    ----------
    x, y : array-like
        Paired values; pairs with a NaN are dropped.
    annotation : str
        Text written in the corner (e.g. ``"r = -0.52, p_FDR = 0.01"``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    fig, ax = plt.subplots(figsize=(3.4, 3.0))
    ax.scatter(x, y, s=16, color=colour, alpha=0.85)
    if len(x) >= 3 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        grid = np.linspace(x.min(), x.max(), 50)
        fit = intercept + slope * grid
        resid = y - (intercept + slope * x)
        s = np.sqrt(np.sum(resid ** 2) / max(len(x) - 2, 1))
        se = s * np.sqrt(1 / len(x) + (grid - x.mean()) ** 2 / np.sum((x - x.mean()) ** 2))
        from scipy import stats as st

        tq = st.t.ppf(0.975, max(len(x) - 2, 1))
        ax.plot(grid, fit, color="black", linewidth=1.5)
        ax.fill_between(grid, fit - tq * se, fit + tq * se, color=colour, alpha=0.15, linewidth=0)
    if annotation:
        ax.text(0.02, 0.98, annotation, transform=ax.transAxes, va="top", fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


# --- classification --------------------------------------------------------------------------

def roc_curves(curves: dict, aucs: dict | None = None, title: str = ""):
    """ROC curves of several models on one axis.

    Parameters
    ----------
    curves : dict
        ``{model: (fpr, tpr, tpr_low, tpr_high)}``; the band arrays may be None.
    aucs : dict, optional
        ``{model: legend text}`` such as ``"AUC 0.78 [0.66, 0.88]"``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    cmap = plt.get_cmap("tab10")
    for i, (model, (fpr, tpr, low, high)) in enumerate(curves.items()):
        colour = cmap(i % 10)
        label = f"{model}: {aucs[model]}" if aucs and model in aucs else model
        ax.plot(fpr, tpr, color=colour, linewidth=1.6, label=label)
        if low is not None and high is not None:
            ax.fill_between(fpr, low, high, color=colour, alpha=0.12, linewidth=0)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate (1 - specificity)", fontsize=8)
    ax.set_ylabel("true positive rate (sensitivity)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right", frameon=False)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=8)
    return fig


def null_histogram(null, observed: float, title: str = "", p: float | None = None):
    """Permutation null distribution of the AUC with the observed value marked.

    Parameters
    ----------
    null : array-like
        AUCs of the permuted-label runs.
    observed : float
        The AUC with the true labels.
    p : float, optional
        Permutation p-value shown in the legend.

    Returns
    -------
    matplotlib.figure.Figure
    """
    null = np.asarray(null, float)
    null = null[np.isfinite(null)]
    fig, ax = plt.subplots(figsize=(3.4, 2.8))
    if null.size:
        ax.hist(null, bins=min(30, max(5, null.size // 3)), color="#999999", edgecolor="white")
    label = f"observed {observed:.3f}" + (f" (p = {p:.3g})" if p is not None and np.isfinite(p) else "")
    ax.axvline(observed, color="#D55E00", linewidth=2, label=label)
    ax.set_xlabel("AUC under permuted labels", fontsize=8)
    ax.set_ylabel("permutations", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    ax.tick_params(labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def bar_chart(labels, values, title: str = "", xlabel: str = "", colour: str = "#0072B2"):
    """Horizontal bars (e.g. the regions most often selected), largest at the top."""
    labels = list(labels)
    values = np.asarray(values, float)
    fig, ax = plt.subplots(figsize=(4.6, 0.25 * max(len(labels), 4) + 0.9))
    ax.barh(range(len(labels))[::-1], values, color=colour)
    ax.set_yticks(range(len(labels))[::-1], labels, fontsize=7)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return fig
