"""fMRIPrep derivatives as functional input (config ``input: {func: fmriprep}``).

Finds a subject's preprocessed resting BOLD in MNI space
(``*_space-MNI152NLin6Asym[_res-*]_desc-preproc_bold.nii.gz``, else
``MNI152NLin2009cAsym``), its brain mask and confounds, and reads the
confounds with nilearn's fMRIPrep loader
(:func:`nilearn.interfaces.fmriprep.load_confounds`), so strategy names map
onto fMRIPrep's own columns and conventions (non-steady-state volumes from
``non_steady_state_outlier*``, CompCor components chosen from the JSON
sidecar).

Note on templates: the atlases are defined in MNI152NLin6Asym (FSL). fMRIPrep's
default output space, MNI152NLin2009cAsym, differs from it by a few mm at the
cortex; using it with these atlases is common practice but is logged as a
warning. Ask fMRIPrep for ``--output-spaces MNI152NLin6Asym:res-2`` to avoid it.

References
----------
Esteban O et al. (2019) fMRIPrep: a robust preprocessing pipeline for
    functional MRI. Nat Methods 16:111-116.
Wang HT et al. (2024) Continuous evaluation of denoising strategies in
    resting-state fMRI connectivity using fMRIPrep and Nilearn. PLoS Comput
    Biol 20:e1011942 (``load_confounds``).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import confounds as conf
from .errors import InputError
from .func import repetition_time

SPACES = ("MNI152NLin6Asym", "MNI152NLin2009cAsym")
ATLAS_SPACE = "MNI152NLin6Asym"


@dataclass(frozen=True)
class FmriprepRun:
    bold: str
    confounds: str
    confounds_json: str | None
    mask: str | None
    sidecar: str | None
    space: str


def _entities(name: str) -> dict:
    return dict(re.findall(r"([a-zA-Z]+)-([a-zA-Z0-9]+)", name.split(".")[0]))


def find_run(fmriprep_dir, subject: str, session: str | None = None, task: str = "rest",
             spaces=SPACES, run: str | None = None) -> FmriprepRun:
    """Locate one subject's fMRIPrep resting BOLD, mask and confounds.

    Parameters
    ----------
    fmriprep_dir : path-like
        fMRIPrep's output folder (the one holding ``sub-*/``).
    subject, session, task : str
    spaces : sequence of str
        Template spaces in order of preference.
    run : str, optional
        The ``run-`` entity to take; default the first run found.

    Raises
    ------
    InputError
        If no preprocessed BOLD in an accepted space, or no confounds file, exists.
    """
    func_dir = Path(fmriprep_dir) / f"sub-{subject}" / (f"ses-{session}" if session else "") / "func"
    names = sorted(p.name for p in func_dir.glob("*")) if func_dir.is_dir() else []
    candidates = []
    for name in names:
        if not name.endswith("_desc-preproc_bold.nii.gz"):
            continue
        ent = _entities(name)
        if ent.get("sub") != subject or ent.get("task") != task or (session and ent.get("ses") != session):
            continue
        if ent.get("space") not in spaces or (run and ent.get("run") != str(run)):
            continue
        candidates.append((list(spaces).index(ent["space"]), ent.get("run") or "", ent.get("res") or "", name))
    if not candidates:
        raise InputError(func_dir, f"no fMRIPrep BOLD *_task-{task}_space-{{{','.join(spaces)}}}"
                                   "_desc-preproc_bold.nii.gz for this subject",
                         "run fMRIPrep with --output-spaces MNI152NLin6Asym:res-2 (or MNI152NLin2009cAsym), "
                         "or set the config key derivatives.fmriprep to its output folder")
    candidates.sort()
    name = candidates[0][3]
    space = _entities(name)["space"]
    if len({c[1] for c in candidates if c[0] == candidates[0][0]}) > 1:
        warnings.warn(f"{func_dir}: several runs found, using {name}", stacklevel=2)
    bold = func_dir / name
    stem = name.split("_space-")[0]
    conf_path = None
    for suffix in ("_desc-confounds_timeseries.tsv", "_desc-confounds_regressors.tsv"):
        if (func_dir / (stem + suffix)).is_file():
            conf_path = func_dir / (stem + suffix)
            break
    if conf_path is None:
        raise InputError(bold, f"has no confounds file {stem}_desc-confounds_timeseries.tsv next to it",
                         "copy fMRIPrep's complete func/ folder (confounds TSV and JSON included)")
    conf_json = conf_path.with_suffix(".json")
    mask = func_dir / name.replace("_desc-preproc_bold.nii.gz", "_desc-brain_mask.nii.gz")
    sidecar = func_dir / name.replace(".nii.gz", ".json")
    if space != ATLAS_SPACE:
        warnings.warn(f"{bold.name} is in {space}; the atlases are in {ATLAS_SPACE} (a few mm apart). "
                      f"Prefer fMRIPrep --output-spaces {ATLAS_SPACE}:res-2", stacklevel=2)
    return FmriprepRun(str(bold), str(conf_path), str(conf_json) if conf_json.is_file() else None,
                       str(mask) if mask.is_file() else None, str(sidecar) if sidecar.is_file() else None, space)


def read_confounds_tsv(path) -> pd.DataFrame:
    """fMRIPrep's confounds table (``n/a`` -> NaN)."""
    try:
        return pd.read_csv(path, sep="\t", na_values=["n/a"])
    except FileNotFoundError:
        raise InputError(path, "confounds file not found", "copy fMRIPrep's complete func/ folder") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot be read as a tab-separated table ({exc})",
                         "use the confounds TSV exactly as fMRIPrep wrote it") from None


def load_confounds(run: FmriprepRun, strategy, fd_threshold=0.5, scrub_min_segment: int = 5):
    """Regressors, kept volumes and FD for one fMRIPrep run.

    The regressors come from :func:`nilearn.interfaces.fmriprep.load_confounds`
    with the strategy's components (demeaned; first-row ``n/a`` of derivatives
    replaced by the second row, as nilearn does). Non-steady-state volumes
    flagged by fMRIPrep are dropped; scrubbing uses fMRIPrep's
    ``framewise_displacement`` with :func:`sfc.confounds.scrub_mask`, the
    same rule as the built-in route (FD only; DVARS is not used).

    Parameters
    ----------
    run : FmriprepRun
    strategy : str or Strategy
    fd_threshold : float or None
    scrub_min_segment : int

    Returns
    -------
    regressors : pandas.DataFrame or None
        ``None`` for the ``none`` strategy.
    keep : numpy.ndarray of bool, shape (T,)
    fd : numpy.ndarray, shape (T,)

    Raises
    ------
    InputError
        If a column the strategy needs is missing (naming the columns and the
        file), or the CompCor JSON sidecar is absent.
    """
    from nilearn.interfaces.fmriprep import load_confounds as nilearn_load_confounds

    strat = conf.strategy(strategy) if isinstance(strategy, str) else strategy
    table = read_confounds_tsv(run.confounds)
    missing = [c for c in conf.required_columns(strat) + ["framewise_displacement"] if c not in table.columns]
    if missing:
        raise InputError(run.confounds, f"lacks column(s) {missing} needed by confound strategy '{strat.name}'",
                         "use the complete confounds TSV from fMRIPrep >= 20.2, or choose a strategy whose "
                         f"columns exist (func.confounds: one of {', '.join(sorted(conf.STRATEGIES))})")
    if "compcor" in strat.components:
        if run.confounds_json is None:
            raise InputError(run.confounds, "has no JSON sidecar, which nilearn needs to pick the aCompCor "
                                            "components", "copy fMRIPrep's *_desc-confounds_timeseries.json too")
        if not [c for c in table.columns if c.startswith("a_comp_cor_")]:
            raise InputError(run.confounds, "has no a_comp_cor_* columns for the aCompCor strategy",
                             "choose func.confounds: 24P+WM+CSF or 36P")
    n_time = len(table)
    nss = [c for c in table.columns if c.startswith("non_steady_state_outlier")]
    keep_nss = ~(table[nss].to_numpy(dtype=float) > 0.5).any(axis=1) if nss else np.ones(n_time, bool)
    regressors = None
    if strat.components:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                regressors, _ = nilearn_load_confounds(run.bold, strategy=strat.components, demean=True,
                                                       **strat.kwargs)
        except ValueError as exc:
            raise InputError(run.confounds, f"nilearn could not load strategy '{strat.name}' ({exc})",
                             "use fMRIPrep's complete confounds TSV and JSON, or another func.confounds") from None
        regressors = regressors.reset_index(drop=True)
    fd = table["framewise_displacement"].to_numpy(dtype=float)
    fd = np.nan_to_num(fd, nan=0.0)
    keep = conf.scrub_mask(fd, fd_threshold, scrub_min_segment) & keep_nss
    return regressors, keep, fd


def bold_repetition_time(run: FmriprepRun) -> float:
    """TR from fMRIPrep's BOLD sidecar (``*_desc-preproc_bold.json``)."""
    return repetition_time(run.bold, run.sidecar)
