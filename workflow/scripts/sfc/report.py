"""One self-contained HTML report of a run, built from its group outputs.

:func:`build_report` reads the tables of INTERFACES.md under the output folder
(group SFC, group statistics, clinical correlations, classification, exclusions,
atlas label tables and images) plus the participants table, draws the figures
with :mod:`sfc.plotting`, and writes one HTML file with every figure embedded as a
base64 PNG data URI: no server, no external resource, no script from elsewhere.
Per-subject QC pictures are embedded when the run made them (imaging route);
otherwise the gallery shows the SC and FC matrices. Any missing optional part
(classification, a second atlas, a site column, significant regions) becomes a
sentence instead of an error.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import importlib.metadata
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import participants as participants_table
from . import paths, plotting
from .registration import DOUBTFUL_MM
from .stats import model_covariates as stats_model_covariates

NA = ["n/a", "nan", "NaN", ""]


# --- inputs --------------------------------------------------------------------------------

@dataclass
class Unit:
    """One analysed subject (and session) and where its matrices and QC files are."""

    participant_id: str           # as in the group tables: sub-<s>[_ses-<t>]
    subject: str
    session: str | None = None
    source_dir: str = ""          # folder holding its SC / FC (this run's output, or a connectomes_dirs entry)
    qc_images: list = field(default_factory=list)   # [(title, path)] pictures made by the QC rules
    qc_tables: list = field(default_factory=list)   # per-subject QC TSVs (one row each)


@dataclass
class ReportSpec:
    """Everything :func:`build_report` needs besides the files under ``output_dir``."""

    output_dir: str
    participants: str
    atlases: list
    methods: list
    groups: list
    group_column: str = "group"
    covariates: list = field(default_factory=list)
    site_column: str | None = None
    clinical_scales: list = field(default_factory=list)
    alpha: float = 0.05
    classification: bool = True
    sc_weight: str = "count"
    units: list = field(default_factory=list)
    gallery_subjects: int = 12
    figures_dir: str | None = None   # main figures also written here as PNG (Snakemake --report)
    config: dict = field(default_factory=dict)
    command: str = ""
    route: str = "imaging"           # imaging | connectomes
    max_region_plots: int = 24
    positive: str = ""                # classification's positive group (weights' sign)


def _read(path) -> pd.DataFrame | None:
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        return pd.read_csv(path, sep="\t", na_values=NA, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return None


# --- HTML pieces ---------------------------------------------------------------------------

def esc(text) -> str:
    return html.escape(str(text), quote=True)


def png_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class Page:
    """Collects sections, the table of contents and the figures written for Snakemake."""

    def __init__(self, figures_dir=None):
        self.sections: list[tuple[str, str, str]] = []   # (anchor, title, html)
        self.n_figures = 0
        self.figures_dir = Path(figures_dir) if figures_dir else None
        if self.figures_dir:
            self.figures_dir.mkdir(parents=True, exist_ok=True)

    def figure(self, fig_or_png, caption: str, alt: str = "", save_as: str | None = None,
               width: str | None = None) -> str:
        """An embedded figure with its caption; ``save_as`` also writes it for ``snakemake --report``."""
        png = fig_or_png if isinstance(fig_or_png, bytes) else plotting.to_png(fig_or_png)
        self.n_figures += 1
        if save_as and self.figures_dir:
            (self.figures_dir / f"{save_as}.png").write_bytes(png)
        style = f' style="max-width:{width}"' if width else ""
        return (f'<figure><img src="{png_uri(png)}" alt="{esc(alt or caption[:120])}"{style}>'
                f"<figcaption>{caption}</figcaption></figure>")

    def add(self, anchor: str, title: str, body: str) -> None:
        self.sections.append((anchor, title, body))


def table_html(df: pd.DataFrame, sortable: bool = True, flag_column: str | None = None,
               digits: int = 3, max_rows: int | None = None) -> str:
    """A pandas table as HTML; numbers rounded; rows with a true ``flag_column`` highlighted."""
    if df is None or df.empty:
        return "<p class='note'>(no rows)</p>"
    shown = df if max_rows is None else df.head(max_rows)
    cls = "data sortable" if sortable else "data"
    head = "".join(f"<th>{esc(c)}</th>" for c in shown.columns)
    rows = []
    for _, row in shown.iterrows():
        flagged = bool(flag_column and row.get(flag_column) is True)
        cells = []
        for c in shown.columns:
            v = row[c]
            if isinstance(v, (float, np.floating)):
                if not np.isfinite(v):
                    text, key = "n/a", ""
                elif abs(v) != 0 and (abs(v) < 10 ** -digits or abs(v) >= 1e5):
                    text, key = f"{v:.2e}", repr(float(v))
                else:
                    text, key = f"{v:.{digits}f}", repr(float(v))
                cells.append(f'<td class="num" data-v="{key}">{text}</td>')
            elif isinstance(v, (bool, np.bool_)):
                cells.append(f"<td>{'yes' if v else ''}</td>")
            elif isinstance(v, (int, np.integer)):
                cells.append(f'<td class="num" data-v="{int(v)}">{int(v)}</td>')
            else:
                cells.append(f"<td>{esc('n/a' if v is None or (isinstance(v, float) and np.isnan(v)) else v)}</td>")
        rows.append(f"<tr{' class=flag' if flagged else ''}>{''.join(cells)}</tr>")
    more = (f"<p class='note'>First {max_rows} of {len(df)} rows.</p>"
            if max_rows is not None and len(df) > max_rows else "")
    return (f"<div class='tablewrap'><table class='{cls}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>{more}")


def note(text: str) -> str:
    return f"<p class='note'>{text}</p>"


# --- cohort --------------------------------------------------------------------------------

def read_participants(path, group_column: str) -> pd.DataFrame:
    """participants.tsv through the one reader (sfc.participants), indexed by participant_id."""
    return participants_table.read_participants(path, group_column).drop(columns="participant_id")


def demographics(table: pd.DataFrame, group_column: str, groups, columns) -> pd.DataFrame:
    """Per group: mean (SD) of numeric columns, counts of categorical ones, and the group test.

    Numeric columns are compared with a one-way ANOVA across the groups that have
    at least two values; categorical ones with a chi-square test of independence.

    Returns
    -------
    pandas.DataFrame
        One row per column: ``variable``, one column per group, ``test``, ``p``.
    """
    from scipy import stats as st

    rows = []
    present = [g for g in groups if (table[group_column] == g).any()]
    for col in columns:
        if col not in table.columns or col == group_column:
            continue
        row = {"variable": col}
        values = table[col]
        numeric = pd.api.types.is_numeric_dtype(values)
        if numeric:
            samples = []
            for g in present:
                v = values[table[group_column] == g].dropna().to_numpy(float)
                row[g] = f"{v.mean():.1f} ({v.std(ddof=1):.1f}), n={len(v)}" if len(v) > 1 else (
                    f"{v.mean():.1f}, n=1" if len(v) else "n/a")
                if len(v) > 1:
                    samples.append(v)
            if len(samples) >= 2 and all(np.ptp(s) > 0 for s in samples):
                res = st.f_oneway(*samples)
                row.update(test=f"ANOVA F = {res.statistic:.2f}", p=float(res.pvalue))
            else:
                row.update(test="n/a", p=np.nan)
        else:
            sub = table[table[group_column].isin(present)]
            ct = pd.crosstab(sub[col].dropna(), sub.loc[sub[col].notna(), group_column])
            for g in present:
                counts = ct[g] if g in ct.columns else pd.Series(dtype=int)
                row[g] = ", ".join(f"{k}: {int(n)}" for k, n in counts.items())
            if ct.shape[0] >= 2 and ct.shape[1] >= 2:
                chi2, p, dof, _ = st.chi2_contingency(ct.to_numpy())
                row.update(test=f"chi2({dof}) = {chi2:.2f}", p=float(p))
            else:
                row.update(test="n/a", p=np.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=["variable", *present, "test", "p"])


def cohort_section(page: Page, spec: ReportSpec, table: pd.DataFrame, analysed: list, excluded) -> None:
    g = spec.group_column
    sub = table.loc[[pid for pid in map(paths.participant_of, analysed) if pid in table.index]] \
        if analysed else table
    parts = [f"<p>{len(analysed) or len(sub)} participants (units) entered the group analysis; "
             f"{0 if excluded is None else len(excluded)} were left out (group/excluded.tsv).</p>"]
    # a missing covariate drops a participant from the ANCOVA and the partial correlations
    # (sfc.stats.merge_participants): say who, rather than a count that hides them
    covs = [c for c in spec.covariates if c in sub.columns]
    lacking = {pid: [c for c in covs if pd.isna(row[c])] for pid, row in sub[covs].iterrows()} if covs else {}
    lacking = {pid: cols for pid, cols in lacking.items() if cols}
    if lacking:
        parts.append(note(f"{len(lacking)} of them lack a covariate value and are left out of the group "
                          "comparison and the clinical correlations (the classification imputes the training "
                          "folds' median): " + esc("; ".join(f"{pid} ({', '.join(cols)})"
                                                             for pid, cols in lacking.items()))))
    if spec.site_column and spec.site_column in sub.columns:
        counts = pd.crosstab(sub[spec.site_column], sub[g]).reindex(columns=[x for x in spec.groups
                                                                           if x in set(sub[g])], fill_value=0)
        counts.loc["total"] = counts.sum()
        counts["total"] = counts.sum(axis=1)
        parts.append("<h3>Participants per group and site</h3>"
                     + table_html(counts.reset_index().rename(columns={spec.site_column: "site"}), sortable=False))
    else:
        counts = sub[g].value_counts().reindex([x for x in spec.groups], fill_value=0)
        parts.append("<h3>Participants per group</h3>"
                     + table_html(counts.rename("n").rename_axis("group").reset_index(), sortable=False)
                     + note("No site column is configured: a single-site analysis (no harmonisation)."))
    columns = [c for c in [*spec.covariates, *spec.clinical_scales] if c in sub.columns]
    columns += [c for c in sub.columns if c not in columns and c not in (g, spec.site_column)]
    demo = demographics(sub, g, spec.groups, columns)
    parts.append("<h3>Demographics and clinical scales by group</h3>" + table_html(demo, sortable=False)
                 + note("Mean (SD) and number of non-missing values; counts for categorical variables. "
                        "p: one-way ANOVA across groups (numeric) or chi-square test (categorical), "
                        "uncorrected; scales not collected in a group (n/a) are left out of its test."))
    parts.append("<h3>Exclusions</h3>")
    if excluded is None or excluded.empty:
        parts.append(note("No participant was excluded."))
    else:
        parts.append(table_html(excluded, sortable=True))
    page.add("cohort", "Cohort", "".join(parts))


# --- QC ------------------------------------------------------------------------------------

def robust_z(values) -> np.ndarray:
    """(x - median) / (1.4826 MAD): outliers are ``|z| > 3.5`` (Iglewicz & Hoaglin 1993)."""
    v = np.asarray(values, float)
    med = np.nanmedian(v)
    mad = 1.4826 * np.nanmedian(np.abs(v - med))
    if not np.isfinite(mad) or mad == 0:
        return np.zeros_like(v)
    return (v - med) / mad


def matrix_qc(units, atlas: str, weight: str) -> tuple[pd.DataFrame, dict]:
    """Per-unit measures of the SC and FC matrices (density, strength, mean FC, similarity to the group).

    Returns
    -------
    (pandas.DataFrame, dict)
        The measures per ``participant_id``, and ``{participant_id: (sc, fc)}``.
    """
    from . import io

    mats, rows = {}, []
    for u in units:
        sc_p = paths.sc_matrix(u.source_dir, u.subject, u.session, atlas, weight)
        fc_p = paths.fc_matrix(u.source_dir, u.subject, u.session, atlas)
        if not (Path(sc_p).is_file() and Path(fc_p).is_file()):
            continue
        mats[u.participant_id] = (io.read_matrix(sc_p, kind="SC"), io.read_matrix(fc_p, kind="FC"))
    if not mats:
        return pd.DataFrame(), {}
    iu = np.triu_indices(next(iter(mats.values()))[0].shape[0], 1)
    sc_mean = np.nanmean([np.log1p(np.clip(s[iu], 0, None)) for s, _ in mats.values()], axis=0)
    fc_mean = np.nanmean([f[iu] for _, f in mats.values()], axis=0)
    for pid, (s, f) in mats.items():
        sv, fv = s[iu], f[iu]
        rows.append({"participant_id": pid, "sc_density": float(np.mean(sv > 0)),
                     "sc_total_log10": float(np.log10(1 + np.nansum(np.clip(sv, 0, None)))),
                     "fc_mean": float(np.nanmean(fv)),
                     "sc_similarity": float(np.corrcoef(np.log1p(np.clip(sv, 0, None)), sc_mean)[0, 1]),
                     "fc_similarity": float(pd.Series(fv).corr(pd.Series(fc_mean)))})
    return pd.DataFrame(rows), mats


def qc_table(spec: ReportSpec, matrix_measures: pd.DataFrame, sfc: pd.DataFrame | None) -> pd.DataFrame:
    """All QC measures per unit with the outlier flag (any measure with ``|robust z| > 3.5``)."""
    frames = []
    for u in spec.units:
        row = {"participant_id": u.participant_id}
        for path in u.qc_tables:
            t = _read(path)
            if t is None or t.empty:
                continue
            for c, v in t.iloc[0].items():
                if c in ("participant_id", "session"):
                    continue
                row[c if c not in row else f"{Path(path).stem.split('_desc-')[-1]}_{c}"] = v
        frames.append(row)
    table = pd.DataFrame(frames) if frames else pd.DataFrame(columns=["participant_id"])
    if not matrix_measures.empty:
        table = table.merge(matrix_measures, on="participant_id", how="outer")
    if sfc is not None and not sfc.empty:
        mean_sfc = sfc.set_index("participant_id").mean(axis=1).rename("sfc_mean").reset_index()
        table = table.merge(mean_sfc, on="participant_id", how="outer")
    numeric = [c for c in table.columns if c != "participant_id" and pd.api.types.is_numeric_dtype(table[c])
               and not pd.api.types.is_bool_dtype(table[c]) and table[c].nunique(dropna=True) > 2]
    flags = []
    for _, row in table.iterrows():
        flags.append([])
    for c in numeric:
        z = robust_z(table[c])
        for i in np.nonzero(np.abs(z) > 3.5)[0]:
            flags[i].append(f"{c} (z={z[i]:+.1f})")
    # a registration whose second start lands elsewhere (sfc.registration.second_start) is flagged
    # whatever the rest of the cohort looks like: a whole cohort can share one bad setting
    for c in [c for c in table.columns if c.endswith("registration_doubtful")]:
        distance = c.replace("registration_doubtful", "second_start_mm")
        for i, value in enumerate(table[c]):
            if str(value).strip().lower() == "true":
                mm = table[distance].iloc[i] if distance in table else float("nan")
                flags[i].append(f"{c} (a second start converged {float(mm):.1f} mm away)")
    table["outlier"] = [bool(f) for f in flags]
    table["outlier_measures"] = ["; ".join(f) for f in flags]
    return table.sort_values(["outlier", "participant_id"], ascending=[False, True]).reset_index(drop=True)


def qc_section(page: Page, spec: ReportSpec, sfc_first: pd.DataFrame | None) -> dict:
    """The QC section; returns :func:`steps_ran` of its table (for the methods paragraph)."""
    atlas = spec.atlases[0]
    measures, mats = matrix_qc(spec.units, atlas, spec.sc_weight)
    table = qc_table(spec, measures, sfc_first)
    parts = ["<h3>QC measures</h3>",
             note("One row per subject; click a column header to sort. Rows flagged as outliers "
                  "(highlighted) have at least one measure more than 3.5 robust SD (median absolute "
                  "deviation) from the cohort median, or a T1w -> DWI or BOLD -> T1w registration that a "
                  "second start, 4 mm and 4 degrees away, did not reproduce within "
                  f"{DOUBTFUL_MM:.1f} mm (<code>*_registration_doubtful</code>). "
                  f"Matrix measures are computed on atlas {esc(atlas)}: "
                  "SC density and total strength, mean FC, and the correlation of the subject's SC "
                  "(log) and FC with the cohort mean (similarity). sfc_mean: mean regional SFC "
                  f"({esc(spec.methods[0])})."),
             table_html(table, sortable=True, flag_column="outlier")]
    has_images = any(u.qc_images for u in spec.units)
    if not has_images:
        parts.append(note("The imaging QC pictures (atlas over b0 and T1w, FA, FD trace, carpet plot) are "
                          "not available: this run started from connectomes, so the report shows the SC and "
                          "FC matrices of each subject instead. Open the QC pictures of the sites' own runs "
                          "for the imaging checks."))
    order = list(table["participant_id"])
    chosen = order[:max(spec.gallery_subjects, 0)]
    by_id = {u.participant_id: u for u in spec.units}
    parts.append("<h3>Gallery</h3>" + note(
        f"{len(chosen)} of {len(order)} subjects (outliers first, then by ID; config "
        "<code>report.gallery_subjects</code> sets how many)."))
    for pid in chosen:
        u = by_id.get(pid)
        cells = []
        if u is not None:
            for title, path in u.qc_images:
                if Path(path).is_file():
                    cells.append(page.figure(Path(path).read_bytes(), esc(title), alt=f"{pid} {title}"))
        if pid in mats:
            sc, fc = mats[pid]
            cells.append(page.figure(plotting.heatmap(sc, f"SC ({spec.sc_weight}, log10 1+x)", log=True,
                                                      cmap="magma"), f"SC, atlas {esc(atlas)}",
                                     alt=f"{pid} SC heatmap"))
            cells.append(page.figure(plotting.heatmap(fc, "FC (Pearson r)", cmap="RdBu_r", symmetric=True),
                                     f"FC, atlas {esc(atlas)}", alt=f"{pid} FC heatmap"))
        flag = table.loc[table.participant_id == pid, "outlier_measures"]
        flag_text = f" <span class='flagtext'>outlier: {esc(flag.iloc[0])}</span>" if len(flag) and flag.iloc[0] \
            else ""
        parts.append(f"<div class='subject'><h4>{esc(pid)}{flag_text}</h4><div class='gallery'>"
                     f"{''.join(cells) or note('no QC picture or matrix found')}</div></div>")
    page.add("qc", "Quality control", "".join(parts))
    return steps_ran(table)


# --- coupling and group differences --------------------------------------------------------

def _labels(spec, atlas) -> pd.DataFrame | None:
    return _read(paths.atlas_labels(spec.output_dir, atlas))


def _atlas_image(spec, atlas):
    p = Path(paths.atlas_image(spec.output_dir, atlas))
    return p if p.is_file() else None


def _with_groups(sfc: pd.DataFrame, participants: pd.DataFrame, group_column: str) -> pd.Series:
    ids = sfc["participant_id"].map(paths.participant_of)
    return pd.Series(participants[group_column].reindex(ids).to_numpy(), index=sfc.index)


def coupling_section(page: Page, spec: ReportSpec, data: dict, participants: pd.DataFrame) -> None:
    parts = [note("Mean regional SFC of each group painted into the atlas (glass brain: all regions "
                  "projected; left, front and top views), and the distribution of the group means across "
                  "regions.")]
    for (atlas, method), d in data.items():
        sfc, labels, img = d["sfc"], d["labels"], d["image"]
        parts.append(f"<h3>{esc(atlas)}, {esc(method)}</h3>")
        if sfc is None:
            parts.append(note("The group SFC table is missing."))
            continue
        groups = _with_groups(sfc, participants, spec.group_column)
        regions = [c for c in sfc.columns if c != "participant_id"]
        means = {g: sfc.loc[groups == g, regions].mean().to_numpy() for g in spec.groups if (groups == g).any()}
        allv = np.concatenate([v[np.isfinite(v)] for v in means.values()]) if means else np.zeros(1)
        vmax = float(np.nanpercentile(np.abs(allv), 99)) if allv.size else 1.0
        indices = _indices(labels, regions)
        if img is None:
            parts.append(note("The atlas image is missing, so no brain map can be drawn."))
        else:
            for i, (g, v) in enumerate(means.items()):
                parts.append(page.figure(
                    plotting.glass_brain(img, v, indices, cmap="RdBu_r", vmax=vmax),
                    f"Mean SFC ({esc(method)}) of <b>{esc(g)}</b> (n = {int((groups == g).sum())}), atlas "
                    f"{esc(atlas)}.", save_as=f"atlas-{atlas}_desc-{method}_group-{g}_meansfc" if i == 0 else None))
        parts.append(page.figure(plotting.sfc_distribution(means, xlabel=f"mean SFC ({method})"),
                                 f"Distribution across the {len(regions)} regions of the group-mean SFC "
                                 f"({esc(method)}, {esc(atlas)}).", width="560px"))
    page.add("coupling", "Structure-function coupling", "".join(parts))


def _indices(labels: pd.DataFrame | None, regions) -> np.ndarray | None:
    if labels is None:
        return None
    lookup = dict(zip(labels["name"], labels["index"]))
    return np.array([lookup.get(r, -1) for r in regions])


def significant_regions(stats: pd.DataFrame, labels: pd.DataFrame | None, groups, alpha: float) -> pd.DataFrame:
    """Regions whose group effect survives FDR (``p_fdr < alpha``), with names and post hoc tests.

    Returns
    -------
    pandas.DataFrame
        ``name``, label columns (hemisphere, lobe, gyrus, description where the label
        table has them), ``F``, ``p``, ``p_fdr``, partial eta squared with its 95% CI, and
        each pair's ``t``, protected post hoc ``p_holm`` and adjusted Cohen's d; sorted by
        ``p``.
    """
    sig = stats[stats["p_fdr"] < alpha].sort_values("p")
    cols = ["name"]
    if labels is not None:
        extra = [c for c in ("description", "hemisphere", "lobe", "gyrus") if c in labels.columns]
        sig = sig.merge(labels[["name", *extra]], on="name", how="left")
        cols += extra
    cols += ["F", "p", "p_fdr", "eta2p", "eta2p_ci_low", "eta2p_ci_high"]
    cols += [c for c in stats.columns if c.startswith(("t_", "p_holm_"))
             or (c.startswith("d_") and not c.endswith(("_ci_low", "_ci_high")))]
    return sig[[c for c in cols if c in sig.columns]].reset_index(drop=True)


def pairs_of(stats: pd.DataFrame) -> list[tuple[str, str]]:
    return [tuple(c[2:].split("_vs_")) for c in stats.columns if c.startswith("t_") and "_vs_" in c]


def differences_section(page: Page, spec: ReportSpec, data: dict, participants: pd.DataFrame) -> dict:
    harmonised = spec.site_column and spec.config.get("stats", {}).get("harmonize", True)
    covariates = stats_model_covariates(spec.covariates, spec.site_column, bool(harmonised))
    parts = [note(f"ANCOVA per region (covariates: {esc(', '.join(covariates) or 'none')}"
                  f"{'; ComBat-harmonised across ' + esc(spec.site_column) if harmonised else ''}), "
                  f"Benjamini-Hochberg FDR across regions at q = {spec.alpha:g}; post hoc t tests between "
                  "each pair of groups only in regions with an FDR-significant group effect, Holm-corrected "
                  "across the pairs (p_holm). F map: every region; t maps: regions with a significant post hoc "
                  "difference only.")]
    found = {}
    for (atlas, method), d in data.items():
        stats, labels, img, sfc = d["stats"], d["labels"], d["image"], d["sfc"]
        parts.append(f"<h3>{esc(atlas)}, {esc(method)}</h3>")
        if stats is None:
            parts.append(note("The group statistics table is missing."))
            continue
        indices = _indices(labels, stats["name"])
        if img is not None:
            parts.append(page.figure(
                plotting.stat_map(img, stats["F"].to_numpy(), indices, cmap="hot", symmetric=False),
                f"Group effect F per region ({esc(atlas)}, {esc(method)}), axial slices of MNI152 (z in mm).",
                save_as=f"atlas-{atlas}_desc-{method}_F"))
            for a, b in pairs_of(stats):
                t = stats[f"t_{a}_vs_{b}"].to_numpy(float)
                # the protected post hoc test (tables from before it: the pair's FDR)
                q = stats.get(f"p_holm_{a}_vs_{b}", stats.get(f"p_fdr_{a}_vs_{b}"))
                shown = np.where(q.to_numpy(float) < spec.alpha, t, np.nan) if q is not None else t
                n_sig = int(np.isfinite(shown).sum())
                vmax = float(np.nanmax(np.abs(t))) if np.isfinite(t).any() else 1.0
                parts.append(page.figure(
                    plotting.glass_brain(img, shown, indices, cmap="RdBu_r", vmax=vmax),
                    f"Post hoc t, <b>{esc(a)} vs {esc(b)}</b> ({esc(atlas)}, {esc(method)}): {n_sig} regions "
                    f"with a significant post hoc difference (p_Holm &lt; {spec.alpha:g} in a region with an "
                    f"FDR-significant group effect); blue = lower SFC in {esc(a)}, red = higher.",
                    save_as=f"atlas-{atlas}_desc-{method}_t-{a}-vs-{b}"))
        sig = significant_regions(stats, labels, spec.groups, spec.alpha)
        found[(atlas, method)] = list(sig["name"])
        if sig.empty:
            parts.append(note(f"No region has an FDR-significant group effect (p_FDR &lt; {spec.alpha:g}) "
                              f"in {esc(atlas)} with {esc(method)}."))
            continue
        parts.append(f"<h4>FDR-significant regions ({len(sig)})</h4>"
                     f"<div class='sigtable' data-atlas='{esc(atlas)}' data-method='{esc(method)}'>"
                     + table_html(sig) + "</div>")
        if sfc is not None:
            groups = _with_groups(sfc, participants, spec.group_column)
            shown = sig.head(spec.max_region_plots)
            cells = [page.figure(plotting.group_strip(sfc[r], groups, spec.groups, title=r,
                                                      ylabel=f"SFC ({method})"),
                                 f"{esc(r)}: F = {row.F:.2f}, p_FDR = {row.p_fdr:.2g}", alt=f"SFC by group in {r}")
                     for r, row in zip(shown["name"], shown.itertuples()) if r in sfc.columns]
            more = (note(f"Box plots of the {len(shown)} most significant of {len(sig)} regions.")
                    if len(sig) > len(shown) else "")
            parts.append("<h4>SFC by group in the significant regions</h4>" + more
                         + f"<div class='gallery'>{''.join(cells)}</div>")
    page.add("differences", "Group differences", "".join(parts))
    return found


def clinical_section(page: Page, spec: ReportSpec, data: dict, participants: pd.DataFrame) -> None:
    parts = [note("Correlations between regional SFC and each clinical scale within each patient group "
                  "(covariates partialled out; FDR across regions). The scatter plots show the raw values "
                  "with a least-squares line and its 95% confidence band; r and p_FDR are those of the "
                  "analysis.")]
    any_rows = False
    for (atlas, method), d in data.items():
        clin, sfc = d["clinical"], d["sfc"]
        parts.append(f"<h3>{esc(atlas)}, {esc(method)}</h3>")
        if clin is None or clin.empty:
            parts.append(note("No clinical correlation table (no clinical scales configured, or none computed)."))
            continue
        sig = clin[clin["p_fdr"] < spec.alpha].sort_values("p")
        if sig.empty:
            best = clin.sort_values("p").head(1)
            extra = (f" The strongest was {esc(best.iloc[0]['name'])} with {esc(best.iloc[0]['scale'])} in "
                     f"{esc(best.iloc[0]['group'])} (r = {best.iloc[0]['r']:.2f}, p = {best.iloc[0]['p']:.2g}, "
                     f"p_FDR = {best.iloc[0]['p_fdr']:.2g}).") if len(best) else ""
            parts.append(note(f"No region-scale pair is FDR-significant (p_FDR &lt; {spec.alpha:g}).{extra}"))
            continue
        any_rows = True
        parts.append(table_html(sig.reset_index(drop=True)))
        if sfc is None:
            continue
        ids = sfc["participant_id"].map(paths.participant_of)
        colours = plotting.group_colours(spec.groups)
        cells = []
        for row in sig.head(spec.max_region_plots).itertuples():
            if row.name not in sfc.columns or row.scale not in participants.columns:
                continue
            groups = participants[spec.group_column].reindex(ids).to_numpy()
            mask = groups == row.group
            x = participants[row.scale].reindex(ids).to_numpy(float)[mask]
            y = sfc[row.name].to_numpy(float)[mask]
            method_text = f" ({row.method})" if hasattr(row, "method") else ""
            cells.append(page.figure(plotting.scatter_fit(
                x, y, title=f"{row.name}, {row.group}", xlabel=row.scale, ylabel=f"SFC ({method})",
                colour=colours.get(row.group, "#0072B2"),
                annotation=f"r = {row.r:.2f}{method_text}, p_FDR = {row.p_fdr:.2g}, n = {row.n}"),
                f"{esc(row.name)} vs {esc(row.scale)} in {esc(row.group)}", alt=f"{row.name} {row.scale}"))
        parts.append(f"<div class='gallery'>{''.join(cells)}</div>")
    if not any_rows:
        parts.insert(1, note("<b>No FDR-significant clinical correlation</b> in any atlas or method."))
    page.add("clinical", "Clinical correlations", "".join(parts))


# --- classification ------------------------------------------------------------------------

def nested_vs_study(summary: pd.DataFrame) -> pd.DataFrame:
    """Nested and study-mode AUC side by side per atlas, method and model, with their difference."""
    mode = summary["mode"].astype(str).str.split(" (", regex=False).str[0]
    if not {"nested", "study"} <= set(mode):
        return pd.DataFrame()
    wide = (summary.assign(_mode=mode)[lambda d: d["_mode"].isin(["nested", "study"])]
            .pivot_table(index=["atlas", "method", "model"], columns="_mode", values="auc", sort=False)
            .reset_index().rename(columns={"nested": "auc_nested", "study": "auc_study"}))
    wide.columns.name = None
    wide["inflation"] = wide["auc_study"] - wide["auc_nested"]
    return wide


def classification_section(page: Page, spec: ReportSpec, data: dict) -> dict:
    out = spec.output_dir
    summary = _read(paths.classification(out)) if spec.classification else None
    if summary is None or summary.empty:
        page.add("classification", "Classification",
                 note("No classification was run (or its tables are missing)."))
        return {}
    parts = [note("Out-of-fold AUC with bootstrap 95% CI and permutation p (the whole procedure repeated "
                  "with permuted labels). <i>nested</i> is the unbiased estimate; <i>study</i> repeats the "
                  "study's procedure with features chosen on all subjects, optimistically biased; "
                  "<i>leave-one-site-out</i> tests generalisation to an unseen site.")]
    show = [c for c in ["atlas", "method", "mode", "model", "auc", "auc_ci_low", "auc_ci_high", "p_permutation",
                        "balanced_accuracy", "sensitivity", "specificity", "n_positive", "n_negative"]
            if c in summary.columns]
    parts.append("<h3>All models</h3>" + table_html(summary[show]))
    inflation = nested_vs_study(summary)
    if not inflation.empty:
        parts.append("<h3>Nested against study-mode AUC</h3>"
                     + note("The same models and folds, once with every data-dependent step inside the training "
                            "folds (<i>nested</i>) and once with the regions chosen on all subjects first, as in "
                            "the study (<i>study</i>). <i>inflation</i> is how much the study's procedure adds to "
                            "the AUC: it is optimism, not skill.")
                     + table_html(inflation, sortable=True))
    wide = _read(paths.group_file(out, "classification_atlases.tsv"))
    if wide is not None and not wide.empty and len(spec.atlases) > 1:
        parts.append("<h3>Cross-atlas AUC</h3>" + table_html(wide, sortable=False))
    elif len(spec.atlases) <= 1:
        parts.append(note("One atlas only: no cross-atlas comparison."))
    best = {}
    for atlas in spec.atlases:
        for method in spec.methods:
            files = {k: _read(paths.group_file(out, f"classification/atlas-{atlas}_desc-{method}_{k}.tsv"))
                     for k in ("roc", "features", "null", "classification")}
            parts.append(f"<h3>{esc(atlas)}, {esc(method)}</h3>")
            cls, roc = files["classification"], files["roc"]
            if cls is None or roc is None:
                parts.append(note("Classification tables missing."))
                continue
            cells = []
            for mode in cls["mode"].unique():
                rows = cls[cls["mode"] == mode]
                curves, legends = {}, {}
                for r in rows.itertuples():
                    c = roc[(roc["mode"] == mode) & (roc["model"] == r.model)]
                    if c.empty:
                        continue
                    sd = c["tpr_sd"].fillna(0).to_numpy() if "tpr_sd" in c else None
                    tpr = c["tpr"].to_numpy()
                    curves[r.model] = (c["fpr"].to_numpy(), tpr,
                                       None if sd is None else np.clip(tpr - sd, 0, 1),
                                       None if sd is None else np.clip(tpr + sd, 0, 1))
                    legends[r.model] = f"AUC {r.auc:.2f} [{r.auc_ci_low:.2f}, {r.auc_ci_high:.2f}]"
                short = str(mode).split(" (")[0]
                cells.append(page.figure(plotting.roc_curves(curves, legends, title=f"{atlas}, {method}: {short}"),
                                         f"ROC curves, {esc(mode)} ({esc(atlas)}, {esc(method)}): mean over "
                                         "repeats, band = ±1 SD across repeats; legend: AUC [bootstrap 95% CI].",
                                         save_as=f"atlas-{atlas}_desc-{method}_roc-{short}"
                                         if short == "nested" else None))
            parts.append(f"<div class='gallery'>{''.join(cells)}</div>")
            null = files["null"]
            nested = cls[cls["mode"].astype(str).str.startswith("nested")]
            if null is not None and not null.empty:
                cells = []
                for r in nested.itertuples():
                    if r.model in null.columns:
                        nn = null[null["mode"].astype(str).str.startswith("nested")][r.model]
                        cells.append(page.figure(plotting.null_histogram(nn, r.auc, title=r.model,
                                                                         p=r.p_permutation),
                                                 f"Permutation null of {esc(r.model)} ({len(nn)} permutations) "
                                                 f"and the observed AUC ({esc(atlas)}, {esc(method)}, nested)."))
                parts.append("<h4>Permutation nulls</h4>" + f"<div class='gallery'>{''.join(cells)}</div>")
            else:
                parts.append(note("No permutation null (classification.n_permutations = 0)."))
            feats = files["features"]
            if feats is not None and not feats.empty and not nested.empty:
                top = nested.sort_values("auc", ascending=False).iloc[0]
                best[(atlas, method)] = top.model
                f = feats[(feats["model"] == top.model) & feats["mode"].astype(str).str.startswith("nested")]
                img = data.get((atlas, method), {}).get("image")
                labels = data.get((atlas, method), {}).get("labels")
                if img is not None and not f.empty:
                    idx = _indices(labels, f["name"]) if labels is not None else f["index"].to_numpy()
                    parts.append(page.figure(
                        plotting.glass_brain(img, f["selection_frequency"].to_numpy(), idx, cmap="viridis",
                                             symmetric=False, vmax=1.0),
                        f"How often each region was selected in the outer training folds by the best nested model "
                        f"(<b>{esc(top.model)}</b>, AUC {top.auc:.2f}), {esc(atlas)}, {esc(method)}.",
                        save_as=f"atlas-{atlas}_desc-{method}_selection"))
                    if f["weight_mean"].notna().any():
                        parts.append(page.figure(
                            plotting.glass_brain(img, f["weight_mean"].to_numpy(), idx, cmap="RdBu_r"),
                            f"Mean model weight per region ({esc(top.model)}; 0 when not selected): positive "
                            f"pushes towards {esc(spec.positive or 'the positive class')}."))
                topf = f.sort_values("selection_frequency", ascending=False).head(15)
                parts.append(page.figure(plotting.bar_chart(topf["name"], topf["selection_frequency"],
                                                            xlabel="selection frequency",
                                                            title=f"{top.model}: most selected regions"),
                                         f"The 15 regions most often selected ({esc(top.model)}, {esc(atlas)}, "
                                         f"{esc(method)}).", width="520px"))
    page.add("classification", "Classification", "".join(parts))
    return best


# --- provenance ----------------------------------------------------------------------------

PACKAGES = {"Snakemake": ("snakemake",), "antspyx (ANTs)": ("antspyx",), "nilearn": ("nilearn",),
            "scikit-learn": ("scikit-learn",), "XGBoost": ("xgboost", "xgboost-cpu"), "nibabel": ("nibabel",),
            "NumPy": ("numpy",), "pandas": ("pandas",), "SciPy": ("scipy",), "statsmodels": ("statsmodels",),
            "matplotlib": ("matplotlib", "matplotlib-base")}


def software_versions() -> dict:
    """Versions of the workflow's main software as installed where the report runs."""
    out = {}
    for label, dists in PACKAGES.items():
        version = None
        for d in dists:
            try:
                version = importlib.metadata.version(d)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        out[label] = version or "not installed in the report environment"
    exe = shutil.which("mrconvert")
    version = "not on PATH of the report job"
    if exe:
        try:
            first = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=20).stdout
            version = (first.splitlines() or ["?"])[0].replace("== mrconvert", "").strip(" =")
        except (OSError, subprocess.SubprocessError):
            version = "on PATH, version unreadable"
    out["MRtrix3"] = version
    return dict(sorted(out.items(), key=lambda kv: kv[0].lower()))


METHOD_TEXT = {
    "spearman": "the Spearman correlation between each region's SC and FC profiles (Baum et al. 2020)",
    "communication": "the adjusted R² of a multiple regression of each region's FC profile on its Euclidean "
                     "distance, shortest-path length and communicability profiles (Vázquez-Rodríguez et al. 2019)",
    "sdi": "the structural-decoupling index from graph signal processing (Preti & Van De Ville 2019)",
}


#: optional steps decided per subject or per run (``auto``), as the structural QC table records them
STEP_COLUMNS = {"degibbs": "dwi_degibbs", "eddy": "dwi_eddy", "act": "tracking_act"}


def steps_ran(qc: pd.DataFrame | None) -> dict:
    """``{step: (units that ran it, units recorded)}`` for :data:`STEP_COLUMNS` found in ``qc``."""
    out = {}
    for step, column in STEP_COLUMNS.items():
        if qc is not None and column in qc:
            values = qc[column].dropna().map(lambda v: str(v).strip().lower() == "true")
            out[step] = (int(values.sum()), len(values))
    return out


def _ran_text(ran: dict, step: str, text: str) -> str:
    """``", <text>"`` when every unit ran ``step``, ``", <text> (k of n subjects)"`` for some, else ``""``."""
    done, total = ran.get(step, (0, 0))
    if not done:
        return ""
    return f", {text}" + (f" ({done} of {total} subjects)" if done < total else "")


def methods_paragraph(config: dict, methods=None, ran: dict | None = None) -> str:
    """A methods paragraph written from the config (what this run did, in words).

    ``ran`` (:func:`steps_ran` of the QC table) overrides the config for the steps whose
    running depends on the data or the tools found (``dwi.eddy``/``dwi.tracking.act``: auto).
    """
    c = config
    connectomes = c.get("input") == "connectomes"
    atlases = {"BNA246": "the Brainnetome atlas (246 regions)",
               "HOA": "the Harvard-Oxford cortical and subcortical atlas (110 regions)"}
    atl = " and ".join(atlases.get(a, a) for a in c.get("atlases", []))
    meth = "; ".join(METHOD_TEXT.get(m, m) for m in (methods or c.get("coupling", {}).get("methods", [])))
    text = []
    if connectomes:
        text.append(f"Structural and functional connectomes computed earlier by this workflow "
                    f"({len(c.get('connectomes_dirs', []))} folder(s)) were pooled.")
    else:
        d, f = c.get("dwi", {}), c.get("func", {})
        tr = d.get("tracking", {})
        ran = {**{s: (int(d.get(s) is True), 1) for s in ("degibbs", "eddy")}, "act": (int(tr.get("act") is True), 1),
               **(ran or {})}
        streamlines = tr.get("streamlines")
        count = f"{streamlines:,}" if isinstance(streamlines, int) else "?"
        chunks = tr.get("chunks", 1) if tr.get("reproducible", True) else 1
        text.append(
            "T1-weighted images were bias-corrected (N4) and registered to MNI152 space with antspyx "
            f"({c.get('anat', {}).get('registration', 'SyN')}). Diffusion MRI was processed with MRtrix3"
            f"{' (MP-PCA denoising' if d.get('denoise') else ' ('}{_ran_text(ran, 'degibbs', 'Gibbs-ringing removal')}"
            f"{_ran_text(ran, 'eddy', 'eddy-current and motion correction with FSL eddy')}"
            f", bias correction {d.get('bias', 'n4')}), fibre orientations estimated by constrained spherical "
            f"deconvolution and {count} streamlines generated with {tr.get('algorithm', '?')} "
            f"({tr.get('seeding', '?')} seeding{f', in {chunks} seeded parts' if chunks > 1 else ''})"
            f"{_ran_text(ran, 'act', 'with anatomically constrained tractography')}; structural connectivity "
            f"(SC) was the streamline {c.get('sc_weight', 'count')} between regions. Resting-state fMRI "
            f"({'fMRIPrep derivatives' if c.get('input', {}).get('func') == 'fmriprep' else 'motion-corrected and normalised with antspyx'})"
            f" was cleaned with the {f.get('confounds')} confound model, band-pass {f.get('bandpass')} Hz, and "
            f"scrubbed at FD > {f.get('fd_threshold')} mm; subjects with mean FD > {f.get('max_mean_fd')} mm or "
            f"under {f.get('min_kept_minutes')} minutes of retained data were excluded. Functional connectivity "
            "(FC) was the Pearson correlation of regional mean time series.")
    text.append(f"Regions were defined by {atl}. Regional structure-function coupling (SFC) was {meth}.")
    s = c.get("stats", {})
    site = c.get("site_column")
    covariates = stats_model_covariates(c.get("covariates", []), site, s.get("harmonize", True))
    text.append(
        f"Group differences between {', '.join(c.get('groups', []))} were tested per region with an ANCOVA "
        f"adjusting for {', '.join(covariates) or 'no covariates'}"
        f"{', after ComBat harmonisation across ' + site if site and s.get('harmonize', True) else ''}, with "
        f"post hoc pairwise tests; p-values were FDR-corrected (Benjamini-Hochberg, q = {s.get('alpha', 0.05)}) "
        "across regions, separately for the omnibus test and each pair. Effect sizes are partial eta squared and "
        "covariate-adjusted Cohen's d with 95% confidence intervals (noncentral F and t).")
    used = methods or c.get("coupling", {}).get("methods", [])
    if "sdi" in used and s.get("sdi_log2", True):
        text.append("SDI entered every group analysis as log2(SDI).")
    if c.get("clinical_scales"):
        text.append(f"Within {', '.join(s.get('patient_groups', []))}, SFC was correlated with "
                    f"{', '.join(c['clinical_scales'])} ({', '.join(s.get('clinical_methods', []))}, "
                    "covariates partialled out, FDR-corrected).")
    k = c.get("classification", {})
    if k:
        text.append(
            f"{k.get('positive')} and {k.get('negative')} were classified from regional SFC with "
            f"{', '.join(k.get('models', []))} in nested cross-validation ({k.get('n_splits')}-fold, "
            f"{k.get('n_repeats')} repeats, {k.get('inner_splits')}-fold inner hyper-parameter search, feature "
            f"screening inside the training folds); AUC 95% CIs from {k.get('n_bootstrap')} bootstrap "
            f"resamples and p-values from {k.get('n_permutations')} label permutations of the whole procedure"
            + (" (fewer than the 1000 a publication uses: the smallest possible p is "
               f"{1 / (int(k['n_permutations']) + 1):.2g})" if 0 < int(k.get("n_permutations") or 0) < 1000 else "")
            + ".")
    text.append(f"Random seed {c.get('seed')}.")
    return " ".join(text)


def provenance_section(page: Page, spec: ReportSpec, ran: dict | None = None) -> None:
    import yaml

    versions = pd.DataFrame(list(software_versions().items()), columns=["software", "version"])
    when = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    parts = ["<h3>Methods</h3>", f"<p class='methods'>{esc(methods_paragraph(spec.config, spec.methods, ran))}</p>",
             "<h3>Run</h3>",
             f"<p>Report written {esc(when)}. Input route: {esc(spec.route)}.</p>",
             f"<p>Command line:</p><pre>{esc(spec.command or 'not recorded')}</pre>",
             "<h3>Software</h3>", table_html(versions, sortable=False),
             "<h3>Configuration</h3>",
             f"<pre>{esc(yaml.safe_dump(spec.config, sort_keys=False, default_flow_style=None))}</pre>"]
    page.add("provenance", "Provenance", "".join(parts))


# --- assembly ------------------------------------------------------------------------------

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f3b57;color:#fff;padding:18px 32px}header h1{margin:0;font-size:24px}
header p{margin:4px 0 0;opacity:.85}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:8px 32px;z-index:2}
nav a{margin-right:18px;color:#1f3b57;text-decoration:none;font-weight:600}
main{padding:8px 32px 40px;max-width:1400px}
section{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:8px 20px 16px;margin:18px 0}
h2{color:#1f3b57;border-bottom:2px solid #1f3b57;padding-bottom:4px}h3{color:#2c5d87;margin-top:22px}
figure{display:inline-block;margin:6px;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:12px;color:#444;max-width:720px}
.gallery{display:flex;flex-wrap:wrap;align-items:flex-start}
.gallery figure{max-width:360px}
.subject{border-top:1px solid #eee}.subject h4{margin:8px 0 0}.flagtext{color:#b00020;font-weight:normal}
.tablewrap{overflow-x:auto;max-height:520px;overflow-y:auto}
table.data{border-collapse:collapse;font-size:12px;margin:6px 0}
table.data th,table.data td{border:1px solid #ddd;padding:3px 7px;text-align:left}
table.data th{background:#eef3f8;position:sticky;top:0}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer}table.sortable th:after{content:" \\2195";color:#999}
tr.flag td{background:#fde8e8}.note{color:#555;font-size:13px}
.keyfacts li{margin:3px 0}.methods{line-height:1.5;max-width:1000px}pre{background:#f4f4f4;padding:8px;
overflow-x:auto;font-size:12px}
"""

# Records errors and image status for automated checks; makes tables sortable. No external code.
JS = """
(function(){
  var errors=[];
  window.addEventListener('error',function(e){errors.push(String(e.message||e));},true);
  var ce=console.error;console.error=function(){errors.push(Array.prototype.join.call(arguments,' '));
    return ce.apply(console,arguments);};
  function sortTable(th){
    var table=th.closest('table'),body=table.tBodies[0],i=Array.prototype.indexOf.call(th.parentNode.children,th);
    var asc=th.getAttribute('data-dir')!=='asc';th.setAttribute('data-dir',asc?'asc':'desc');
    var rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(a,b){var x=a.cells[i],y=b.cells[i];
      var xv=x.getAttribute('data-v'),yv=y.getAttribute('data-v');
      var r=(xv!==null&&yv!==null&&xv!==''&&yv!=='')?(parseFloat(xv)-parseFloat(yv)):
        x.textContent.localeCompare(y.textContent,undefined,{numeric:true});
      return asc?r:-r;});
    rows.forEach(function(r){body.appendChild(r);});
  }
  document.addEventListener('click',function(e){
    if(e.target.tagName==='TH'&&e.target.closest('table.sortable')){sortTable(e.target);}});
  window.addEventListener('load',function(){
    var imgs=document.images,broken=0;
    for(var k=0;k<imgs.length;k++){if(!imgs[k].complete||imgs[k].naturalWidth===0){broken++;}}
    var s=document.getElementById('render-status');
    s.setAttribute('data-images',imgs.length);s.setAttribute('data-broken',broken);
    s.setAttribute('data-errors',JSON.stringify(errors));s.setAttribute('data-loaded','true');
  });
})();
"""


def key_findings(spec: ReportSpec, found: dict, n_analysed: int) -> str:
    items = [f"<li>{n_analysed} participants analysed in groups {esc(', '.join(spec.groups))}; atlases "
             f"{esc(', '.join(spec.atlases))}; coupling methods {esc(', '.join(spec.methods))}.</li>"]
    for (atlas, method), names in found.items():
        if names:
            shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
            items.append(f"<li><b>{esc(atlas)}, {esc(method)}</b>: {len(names)} region(s) with an FDR-significant "
                         f"group effect: {esc(shown)}.</li>")
        else:
            items.append(f"<li><b>{esc(atlas)}, {esc(method)}</b>: no FDR-significant group effect.</li>")
    summary = _read(paths.classification(spec.output_dir)) if spec.classification else None
    if summary is not None and not summary.empty:
        nested = summary[summary["mode"].astype(str).str.startswith("nested")]
        if not nested.empty:
            b = nested.sort_values("auc", ascending=False).iloc[0]
            p = b.get("p_permutation")
            inflation = nested_vs_study(summary)
            same = inflation[(inflation["atlas"] == b.atlas) & (inflation["method"] == b.method)
                             & (inflation["model"] == b.model)] if not inflation.empty else inflation
            study = (f"; the study's procedure on the same subjects gives {same['auc_study'].iloc[0]:.2f} "
                     f"({same['inflation'].iloc[0]:+.2f} optimism)" if len(same) else "")
            items.append(f"<li>Best nested classification: <b>{esc(b.model)}</b> on {esc(b.atlas)} "
                         f"({esc(b.method)}), AUC {b.auc:.2f} [{b.auc_ci_low:.2f}, {b.auc_ci_high:.2f}]"
                         f"{', permutation p = ' + format(p, '.3g') if pd.notna(p) else ''}"
                         f"{study}.</li>")
    return f"<ul class='keyfacts'>{''.join(items)}</ul>"


def build_report(out_html, spec: ReportSpec) -> dict:
    """Write the report and return a summary (figure count, significant regions per atlas/method).

    Parameters
    ----------
    out_html : path-like
        The HTML file to write (``report.html``).
    spec : ReportSpec
        Settings and the per-subject files; everything else is read from
        ``spec.output_dir`` through :mod:`sfc.paths`.

    Returns
    -------
    dict
        ``n_figures``, ``significant`` (``"atlas/method" -> [region names]``), ``bytes``.
    """
    out = spec.output_dir
    participants = read_participants(spec.participants, spec.group_column)
    data = {}
    for atlas in spec.atlases:
        labels = _labels(spec, atlas)
        img = _atlas_image(spec, atlas)
        for method in spec.methods:
            data[(atlas, method)] = {
                "sfc": _read(paths.group_sfc(out, atlas, method)),
                "stats": _read(paths.group_stats(out, atlas, method)),
                "clinical": _read(paths.group_clinical(out, atlas, method)),
                "labels": labels, "image": img}
    first = data.get((spec.atlases[0], spec.methods[0]), {}).get("sfc") if spec.methods else None
    analysed = list(first["participant_id"].astype(str)) if first is not None else []
    excluded = _read(paths.excluded(out))
    page = Page(spec.figures_dir)
    cohort_section(page, spec, participants, analysed, excluded)
    ran = qc_section(page, spec, first)
    coupling_section(page, spec, data, participants)
    found = differences_section(page, spec, data, participants)
    clinical_section(page, spec, data, participants)
    classification_section(page, spec, data)
    provenance_section(page, spec, ran)
    findings = key_findings(spec, found, len(analysed))
    toc = "".join(f"<a href='#{a}'>{esc(t)}</a>" for a, t, _ in [("summary", "Summary", ""), *page.sections])
    body = "".join(f"<section id='{a}'><h2>{esc(t)}</h2>{b}</section>" for a, t, b in page.sections)
    title = "Structure-function coupling report"
    doc = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
           f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style>"
           f"<script>{JS}</script></head><body>"
           f"<header><h1>{title}</h1><p>{esc(', '.join(spec.groups))} &middot; {len(analysed)} participants "
           f"&middot; {esc(spec.route)} route &middot; "
           f"{esc(_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M'))}</p></header>"
           f"<nav>{toc}</nav><main><section id='summary'><h2>Summary</h2>{findings}</section>{body}</main>"
           f"<div id='render-status' hidden data-loaded='false'></div></body></html>")
    Path(out_html).parent.mkdir(parents=True, exist_ok=True)
    Path(out_html).write_text(doc, encoding="utf-8")
    return {"n_figures": page.n_figures, "bytes": len(doc),
            "significant": {f"{a}/{m}": v for (a, m), v in found.items()}}


def summary_json(summary: dict) -> str:
    return json.dumps(summary, indent=1)
