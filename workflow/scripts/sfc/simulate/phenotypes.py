"""Synthetic participants table with the study's group structure.

Group means follow Ye et al. 2026 (npj Mental Health Research 5:27): HAMD-24 before
and after treatment TRD 31.3 -> 25.7, nTRD 31.0 -> 6.1, healthy controls low; TRD
with earlier onset and longer illness. Missing values are written as ``n/a``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GROUPS = ("TRD", "nTRD", "HC")

#: Column order of participants.tsv.
COLUMNS = ["participant_id", "group", "age", "sex", "site", "education_years", "hamd24_pre",
           "hamd24_post", "bsi", "onset_age", "illness_duration"]

#: (mean, sd) per group; None = not applicable (written as n/a).
_SPEC = {
    #          age        educ       hamd_pre     hamd_post    bsi         onset
    "TRD": dict(age=(36, 10), edu=(12, 3), pre=(31.3, 5.0), post=(25.7, 6.0), bsi=(14, 9), onset=(24, 6)),
    "nTRD": dict(age=(34, 10), edu=(12.5, 3), pre=(31.0, 5.0), post=(6.1, 3.5), bsi=(12, 9), onset=(29, 7)),
    "HC": dict(age=(33, 10), edu=(13.5, 3), pre=(2.0, 1.5), post=None, bsi=(1, 1), onset=None),
}
BSI_MAX = 38  # Beck Scale for Suicide Ideation range 0..38


def subject_labels(n: int) -> list[str]:
    """Zero-padded labels ``001, 002, ...`` (at least three digits)."""
    width = max(3, len(str(n)))
    return [f"{k:0{width}d}" for k in range(1, n + 1)]


def _truncated(rng: np.random.Generator, mean: float, sd: float, low: float, high: float) -> float:
    """A normal draw inside [low, high] (redrawn, not clipped, so no pile-up at the bounds)."""
    if high <= low:
        return float(low)
    for _ in range(100):
        v = rng.normal(mean, sd)
        if low <= v <= high:
            return float(v)
    return float(rng.uniform(low, high))


def simulate_participants(n_per_group: dict, rng: np.random.Generator, n_sites: int = 2,
                          missing_fraction: float = 0.02) -> tuple[pd.DataFrame, np.ndarray]:
    """Draw the participants table.

    Groups are interleaved in a random order (``sub-001`` is not always TRD) and
    sites are assigned independently of group, so a site effect can never stand in
    for a group effect. ``missing_fraction`` of ``education_years`` and ``bsi``
    values are blanked (``n/a``) after the brain was simulated from the full values.

    Parameters
    ----------
    n_per_group : dict
        Subjects per group, keys among ``TRD``, ``nTRD``, ``HC``.
    rng : numpy.random.Generator
    n_sites : int
    missing_fraction : float

    Returns
    -------
    table : pandas.DataFrame
        The table to write (columns :data:`COLUMNS`, NaN where missing).
    bsi_true : numpy.ndarray
        The complete BSI values (before blanking), used by the brain simulation.
    """
    groups = np.concatenate([[g] * int(n_per_group.get(g, 0)) for g in GROUPS])
    unknown = set(n_per_group) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown group(s) {sorted(unknown)}; use {GROUPS}")
    groups = groups[rng.permutation(len(groups))]
    n = len(groups)
    rows = []
    for g in groups:
        s = _SPEC[g]
        age = _truncated(rng, *s["age"], 18, 65)
        if s["onset"] is not None:
            onset = _truncated(rng, *s["onset"], 12, age - 0.5)
            duration = round(age - onset, 1)
            onset = round(onset, 1)
        else:
            onset = duration = np.nan
        pre = float(np.clip(np.round(rng.normal(*s["pre"])), 0, 76))
        post = np.nan if s["post"] is None else float(np.clip(np.round(rng.normal(*s["post"])), 0, 76))
        rows.append(dict(group=g, age=round(age, 1), sex=rng.choice(["F", "M"], p=[0.6, 0.4]),
                         education_years=float(np.clip(np.round(rng.normal(*s["edu"])), 6, 22)),
                         hamd24_pre=pre, hamd24_post=post,
                         bsi=float(np.clip(np.round(rng.normal(*s["bsi"])), 0, BSI_MAX)),
                         onset_age=onset, illness_duration=duration))
    table = pd.DataFrame(rows)
    table.insert(0, "participant_id", [f"sub-{lab}" for lab in subject_labels(n)])
    sites = np.arange(n) % max(1, n_sites)
    table.insert(4, "site", [f"site{k + 1}" for k in sites[rng.permutation(n)]])
    bsi_true = table["bsi"].to_numpy(copy=True)
    for col in ("education_years", "bsi"):
        blank = rng.random(n) < missing_fraction
        table.loc[blank, col] = np.nan
    return table[COLUMNS], bsi_true
