"""Nuisance regressors for resting-state FC: motion, framewise displacement,
confound strategies by name, and scrubbing.

The built-in route writes its confounds with fMRIPrep's column names
(``trans_x`` ... ``rot_z``, ``white_matter``, ``csf``, ``global_signal`` and
their ``_derivative1``, ``_power2``, ``_derivative1_power2`` expansions,
``framewise_displacement``), so one strategy table serves both routes: the
fMRIPrep route hands the same strategy to nilearn's
:func:`nilearn.interfaces.fmriprep.load_confounds` (see :mod:`sfc.fmriprep`),
the built-in route selects the same columns with :func:`select_confounds`
(a unit test checks that both give the same regressors).

Units: translations in mm, rotations in radians (fMRIPrep / MCFLIRT
convention); FD in mm.

References
----------
Friston KJ et al. (1996) Movement-related effects in fMRI time-series.
    Magn Reson Med 35:346-355 (24-parameter motion model).
Power JD et al. (2012) Spurious but systematic correlations in functional
    connectivity MRI networks arise from subject motion. NeuroImage 59:2142-2154
    (framewise displacement, scrubbing).
Satterthwaite TD et al. (2013) An improved framework for confound regression
    and filtering for control of motion artifact. NeuroImage 64:240-256 (36P).
Behzadi Y et al. (2007) A component based noise correction method (CompCor)
    for BOLD and perfusion based fMRI. NeuroImage 37:90-101.
Ciric R et al. (2017) Benchmarking of participant-level confound regression
    strategies. NeuroImage 154:174-187 (the strategy names used here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .errors import InputError

TRANSLATIONS = ["trans_x", "trans_y", "trans_z"]
ROTATIONS = ["rot_x", "rot_y", "rot_z"]
MOTION_COLUMNS = TRANSLATIONS + ROTATIONS
EXPANSIONS = {
    "basic": [],
    "derivatives": ["derivative1"],
    "power2": ["power2"],
    "full": ["derivative1", "power2", "derivative1_power2"],
}


@dataclass(frozen=True)
class Strategy:
    """A named confound strategy, in the vocabulary of nilearn's ``load_confounds``.

    ``components`` and the keyword arguments are passed unchanged to
    :func:`nilearn.interfaces.fmriprep.load_confounds` on the fMRIPrep route.
    """

    name: str
    components: tuple = ()
    kwargs: dict = field(default_factory=dict)
    description: str = ""


STRATEGIES = {
    "none": Strategy("none", (), {}, "no nuisance regression (detrending and filtering only)"),
    "6P": Strategy("6P", ("motion",), {"motion": "basic"}, "6 rigid-body motion parameters"),
    "24P": Strategy("24P", ("motion",), {"motion": "full"},
                    "6 motion parameters, their temporal derivatives, and the squares of both "
                    "(Friston 1996; Satterthwaite 2013)"),
    "24P+WM+CSF": Strategy("24P+WM+CSF", ("motion", "wm_csf"), {"motion": "full", "wm_csf": "basic"},
                           "24P plus mean white-matter and CSF signals (26 regressors)"),
    "36P": Strategy("36P", ("motion", "wm_csf", "global_signal"),
                    {"motion": "full", "wm_csf": "full", "global_signal": "full"},
                    "24P plus WM, CSF and global signal with derivatives and squares "
                    "(Satterthwaite 2013; 36 regressors)"),
    "aCompCor": Strategy("aCompCor", ("high_pass", "motion", "compcor"),
                         {"motion": "full", "compcor": "anat_combined", "n_compcor": "all"},
                         "24P plus fMRIPrep's anatomical CompCor components (combined WM+CSF mask, "
                         "those explaining 50% of variance) and the cosine drift regressors they were "
                         "computed with (Behzadi 2007; nilearn's 'compcor' preset); fMRIPrep route only"),
}


def strategy(name: str) -> Strategy:
    """Look a confound strategy up by its config name (case-insensitive).

    Raises
    ------
    ValueError
        If the name is unknown (a config error, caught by the schema first).
    """
    for key, value in STRATEGIES.items():
        if key.lower() == str(name).lower():
            return value
    raise ValueError(f"unknown confound strategy {name!r}; choose one of {sorted(STRATEGIES)}")


def _expand(names, model):
    out = list(names)
    for base in names:
        out += [f"{base}_{suffix}" for suffix in EXPANSIONS[model]]
    return out


def required_columns(strat: Strategy | str) -> list[str]:
    """Confound columns (fMRIPrep names) a strategy needs, CompCor aside.

    CompCor columns depend on the JSON sidecar and are checked by nilearn.
    """
    strat = strategy(strat) if isinstance(strat, str) else strat
    cols = []
    if "motion" in strat.components:
        cols += _expand(MOTION_COLUMNS, strat.kwargs.get("motion", "full"))
    if "wm_csf" in strat.components:
        cols += _expand(["csf", "white_matter"], strat.kwargs.get("wm_csf", "basic"))
    if "global_signal" in strat.components:
        cols += _expand(["global_signal"], strat.kwargs.get("global_signal", "basic"))
    return cols


def framewise_displacement(motion, radius: float = 50.0) -> np.ndarray:
    """Framewise displacement (Power et al. 2012).

    ``FD_t = |dx| + |dy| + |dz| + r (|da| + |db| + |dg|)``, the sum of the
    absolute backward differences of the three translations (mm) and of the
    three rotations (radians) converted to arc length on a sphere of radius
    ``r`` (50 mm, roughly the cortex-to-head-centre distance).

    Parameters
    ----------
    motion : pandas.DataFrame or array-like, shape (T, 6)
        A table with columns ``trans_x, trans_y, trans_z, rot_x, rot_y, rot_z``
        (any order), or an array in exactly that column order.
    radius : float
        Sphere radius in mm.

    Returns
    -------
    numpy.ndarray, shape (T,)
        FD in mm; ``FD[0] = 0`` (fMRIPrep writes ``n/a`` there).
    """
    if isinstance(motion, pd.DataFrame):
        missing = [c for c in MOTION_COLUMNS if c not in motion.columns]
        if missing:
            raise ValueError(f"motion table lacks columns {missing}")
        values = motion[MOTION_COLUMNS].to_numpy(dtype=float)
    else:
        values = np.asarray(motion, dtype=float)
    if values.ndim != 2 or values.shape[1] != 6:
        raise ValueError(f"expected T x 6 motion parameters, got shape {values.shape}")
    diff = np.abs(np.diff(values, axis=0))
    fd = diff[:, :3].sum(axis=1) + radius * diff[:, 3:].sum(axis=1)
    return np.concatenate([[0.0], fd])


def expand_regressors(table: pd.DataFrame, columns=None) -> pd.DataFrame:
    """Add fMRIPrep-style derivative and square columns.

    For each column ``x``: ``x_derivative1`` (backward difference, NaN at the
    first volume as fMRIPrep writes ``n/a``), ``x_power2`` and
    ``x_derivative1_power2``.
    """
    columns = list(table.columns if columns is None else columns)
    out = {}
    for col in columns:
        x = table[col].to_numpy(dtype=float)
        d = np.concatenate([[np.nan], np.diff(x)])
        out[col] = x
        out[f"{col}_derivative1"] = d
        out[f"{col}_power2"] = x ** 2
        out[f"{col}_derivative1_power2"] = d ** 2
    return pd.DataFrame(out, index=table.index)


def confounds_table(motion: pd.DataFrame, white_matter=None, csf=None, global_signal=None,
                    fd_radius: float = 50.0) -> pd.DataFrame:
    """The built-in route's confounds table, with fMRIPrep's column names.

    Parameters
    ----------
    motion : pandas.DataFrame
        ``trans_x, trans_y, trans_z`` (mm), ``rot_x, rot_y, rot_z`` (rad), one row per volume.
    white_matter, csf, global_signal : array-like, shape (T,), optional
        Mean signals in the WM / CSF masks and the brain mask.
    fd_radius : float
        Head radius for FD (mm).

    Returns
    -------
    pandas.DataFrame
        Motion, tissue and global signals, each with ``_derivative1``,
        ``_power2`` and ``_derivative1_power2``, and ``framewise_displacement``
        (NaN derivatives and FD in the first row, as fMRIPrep writes ``n/a``).
    """
    parts = [expand_regressors(motion[MOTION_COLUMNS].reset_index(drop=True))]
    signals = {"white_matter": white_matter, "csf": csf, "global_signal": global_signal}
    for name, values in signals.items():
        if values is not None:
            values = np.asarray(values, dtype=float)
            if values.shape != (len(motion),):
                raise ValueError(f"{name} has shape {values.shape}, expected ({len(motion)},)")
            parts.append(expand_regressors(pd.DataFrame({name: values})))
    table = pd.concat(parts, axis=1)
    fd = framewise_displacement(motion, radius=fd_radius)
    fd[0] = np.nan
    table["framewise_displacement"] = fd
    return table


def select_confounds(table: pd.DataFrame, strat: Strategy | str, path=None,
                     demean: bool = True) -> pd.DataFrame | None:
    """Pick a strategy's regressors from a confounds table (built-in route).

    Mirrors :func:`nilearn.interfaces.fmriprep.load_confounds` for the
    motion / WM-CSF / global-signal components: the same columns, NaN in the
    first row replaced by the second row's value, demeaned.

    Parameters
    ----------
    table : pandas.DataFrame
        Confounds with fMRIPrep column names (e.g. from :func:`confounds_table`).
    strat : Strategy or str
        Strategy or its name.
    path : path-like, optional
        The confounds file, named in error messages.
    demean : bool
        Subtract each column's mean.

    Returns
    -------
    pandas.DataFrame or None
        ``None`` for the ``none`` strategy.

    Raises
    ------
    InputError
        If a needed column is missing, or the strategy needs fMRIPrep's
        CompCor components.
    """
    strat = strategy(strat) if isinstance(strat, str) else strat
    if "compcor" in strat.components:
        raise InputError(path, f"confound strategy '{strat.name}' needs fMRIPrep's a_comp_cor_* "
                               "columns, which the built-in preprocessing does not compute",
                         "set input.func: fmriprep, or choose func.confounds: 24P+WM+CSF or 36P")
    cols = required_columns(strat)
    if not cols:
        return None
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise InputError(path, f"confounds table lacks column(s) {missing} needed by strategy "
                               f"'{strat.name}'",
                         "recompute the confounds, or choose a strategy whose columns exist "
                         f"({', '.join(sorted(STRATEGIES))})")
    out = table[cols].astype(float).copy()
    first_nan = out.iloc[0].isna().to_numpy()
    if len(out) > 1:
        out.iloc[0, first_nan] = out.iloc[1, first_nan].to_numpy()
    if out.isna().to_numpy().any():
        bad = out.columns[out.isna().any()].tolist()
        raise InputError(path, f"confound column(s) {bad} contain n/a beyond the first row",
                         "recompute the confounds; only derivatives may be n/a at the first volume")
    if demean:
        out = out - out.mean(axis=0)
    return out


def scrub_mask(fd, threshold: float = 0.5, min_segment: int = 0) -> np.ndarray:
    """Volumes kept after scrubbing at an FD threshold (Power et al. 2012, 2014).

    A volume is censored when its FD exceeds ``threshold``; then runs of
    kept volumes shorter than ``min_segment`` are censored too (Power 2014
    drop segments of fewer than 5 contiguous volumes; 0 disables this).

    Parameters
    ----------
    fd : array-like, shape (T,)
        Framewise displacement (mm); NaN (the first volume) counts as 0.
    threshold : float or None
        FD threshold in mm; ``None`` disables scrubbing.
    min_segment : int
        Minimum length of a run of kept volumes.

    Returns
    -------
    numpy.ndarray of bool, shape (T,)
        True for kept volumes.
    """
    fd = np.nan_to_num(np.asarray(fd, dtype=float), nan=0.0)
    if threshold is None:
        return np.ones(fd.shape, bool)
    keep = fd <= threshold
    if min_segment and min_segment > 1:
        t = 0
        while t < len(keep):
            if keep[t]:
                end = t
                while end < len(keep) and keep[end]:
                    end += 1
                if end - t < min_segment:
                    keep[t:end] = False
                t = end
            else:
                t += 1
    return keep
