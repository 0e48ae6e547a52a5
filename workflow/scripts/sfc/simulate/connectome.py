"""Connectome-level synthetic cohort: per-subject SC and FC for BNA-246 and HOA.

Writes the INTERFACES.md layout straight away (no images), at the study's scale,
with the study's findings planted in the brain (see :mod:`sfc.simulate.brain`):

- TRD: structure-function decoupling in right middle frontal gyrus (MFG_R_7_*),
  left inferior parietal lobule (IPL_L_6_*), left precentral gyrus (PrG_L_6_*) and
  right superior temporal gyrus (STG_R_6_*);
- nTRD: left rostral hippocampus (Hipp_L_2_1) coupling that rises with BSI.

``null=True`` plants nothing (the leakage guard for classification tests).

Example
-------
>>> from sfc.simulate.connectome import simulate_connectome_cohort
>>> res = simulate_connectome_cohort("out", n_per_group={"TRD": 10, "nTRD": 10, "HC": 10})
>>> res.planted["HOA"]["trd_decoupling"]
['Left_Precentral_Gyrus', ...]
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paths
from . import brain
from .phenotypes import simulate_participants

ATLASES = ("BNA246", "HOA")
STUDY_SIZES = {"TRD": 72, "nTRD": 152, "HC": 84}
DEMO_SIZES = {"TRD": 5, "nTRD": 5, "HC": 2}

#: Brainnetome gyri of the study's TRD findings (all their subregions are planted by default).
TRD_GYRI = ("MFG_R_7_", "IPL_L_6_", "PrG_L_6_", "STG_R_6_")
HIPP_REGIONS = ("Hipp_L_2_1",)


@dataclass(frozen=True)
class Effects:
    """Planted effect sizes (all 0 under ``null``).

    Attributes
    ----------
    trd_decoupling : float
        Share (0..1) of the signal variance of every TRD-planted region that comes
        from a random region without fibres to it (non-structural input), in
        ``trd_group``. 0.7 lowers the true regional SFC by ~0.3 on average (from ~0.6).
    trd_regions : tuple of str
        BNA-246 names (or name prefixes ending in ``_``) of the TRD-planted regions.
    hipp_bsi : float
        In ``hipp_group``, the non-structural share of ``hipp_regions`` at BSI = 0;
        it falls linearly to 0 at ``bsi_ref``, so coupling rises with BSI.
    """

    trd_decoupling: float = 0.7
    trd_regions: tuple = TRD_GYRI
    trd_group: str = "TRD"
    hipp_bsi: float = 1.0
    hipp_regions: tuple = HIPP_REGIONS
    hipp_group: str = "nTRD"
    bsi_ref: float = 30.0

    @classmethod
    def null(cls) -> "Effects":
        return cls(trd_decoupling=0.0, hipp_bsi=0.0)


@dataclass(frozen=True)
class BrainParams:
    """Non-effect parameters of the simulated brains (defaults give realistic SFC ~0.3-0.5)."""

    n_timepoints: int = 200          # BOLD volumes behind each FC
    coupling: float = 0.85           # SAR global coupling g (times 1/spectral radius)
    coupling_sd: float = 0.02        # between-subject sd of g (SFC is steep in g near 1)
    sc_subject_sd: float = 0.25      # log-normal between-subject variation of fibre densities
    n_streamlines: int = 200_000     # streamlines per subject (count weights are Poisson)
    sift2_sd: float = 0.15           # log-normal per-edge spread of SIFT2 weight per streamline
    voxel_noise_sd: float = 6.0      # thermal noise per 2 mm voxel, relative to neural signal sd ~1
    ar1: float = 0.5                 # temporal autocorrelation of neural inputs (per TR)
    global_signal: float = 0.3       # sd of a global signal added to every voxel
    site_sc_sd: float = 0.15         # per-site log-normal bias of fibre densities (scanner effect)
    site_noise_step: float = 0.25    # site k has voxel noise times (1 + k * step)
    template_density: float = 0.3


@dataclass
class CohortModel:
    """Everything shared by the subjects: geometry, template, site biases, effects."""

    geometry: brain.Geometry
    template: np.ndarray
    site_bias: np.ndarray            # (n_sites, 246, 246)
    effects: Effects
    params: BrainParams
    labels: dict                     # atlas -> label table
    seed: int

    def planted_weights(self) -> dict:
        """atlas -> effect -> weight per atlas region (share of its signal from planted BNA regions)."""
        out = {}
        for atlas in self.labels:
            mix = self.geometry.signal_mixing(atlas)
            out[atlas] = {eff: mix @ mask.astype(float) for eff, mask in self.effect_masks().items()}
        return out

    def effect_masks(self) -> dict:
        names = self.labels["BNA246"]["name"].astype(str)
        return {"trd_decoupling": _match(names, self.effects.trd_regions),
                "hipp_bsi": _match(names, self.effects.hipp_regions)}

    def strengths(self, group: str, bsi: float) -> np.ndarray:
        """Re-wired fraction per extended BNA region for one subject."""
        e = self.effects
        d = np.zeros(self.geometry.n_regions)
        masks = self.effect_masks()
        if group == e.trd_group and e.trd_decoupling > 0:
            d[masks["trd_decoupling"]] = e.trd_decoupling
        if group == e.hipp_group and e.hipp_bsi > 0:
            b = 0.0 if not np.isfinite(bsi) else float(bsi)
            d[masks["hipp_bsi"]] = e.hipp_bsi * float(np.clip(1 - b / e.bsi_ref, 0, 1))
        return d


def _match(names: pd.Series, patterns) -> np.ndarray:
    mask = np.zeros(len(names), bool)
    for p in patterns:
        hit = names.str.startswith(p) if p.endswith("_") else names == p
        if not hit.any():
            raise ValueError(f"planted region '{p}' matches no BNA246 region")
        mask |= hit.to_numpy()
    return mask


def load_geometry(atlas_dir=None) -> tuple[brain.Geometry, dict]:
    """Atlas images (via ``sfc.atlases``, never downloaded) -> geometry and label tables."""
    from .. import atlases

    imgs = {a: atlases.load_atlas_image(a, atlas_dir, allow_download=False) for a in ATLASES}
    labels = {a: atlases.label_table(a) for a in ATLASES}
    return brain.build_geometry(imgs["BNA246"], imgs["HOA"], labels), labels


def build_model(atlas_dir=None, seed: int = 0, effects: Effects | None = None, null: bool = False,
                params: BrainParams | None = None, n_sites: int = 2, geometry=None) -> CohortModel:
    """The cohort-level part of the simulation (deterministic from ``seed``)."""
    if geometry is None:
        geometry, labels = load_geometry(atlas_dir)
    else:
        geometry, labels = geometry
    params = params or BrainParams()
    effects = Effects.null() if null else (effects or Effects())
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    template = brain.template_sc(geometry.centroids, rng, density=params.template_density)
    n = geometry.n_regions
    bias = np.exp(rng.normal(0, params.site_sc_sd, (max(1, n_sites), n, n)))
    bias = np.sqrt(bias * bias.transpose(0, 2, 1))
    return CohortModel(geometry, template, bias, effects, params, labels, seed)


@dataclass
class SubjectBrain:
    """One subject's truth at the extended-BNA level and as each atlas sees it."""

    sc_density: np.ndarray           # (246, 246) true fibre density (expected streamlines)
    decoupling: np.ndarray           # B: observed signals = B @ network signals
    strengths: np.ndarray            # non-structural share per region
    coupling: float
    signals: np.ndarray              # (T, 246) neural signals
    count_ext: np.ndarray            # (246, 246) Poisson streamline counts
    sift2_factor: np.ndarray         # (246, 246) SIFT2 weight per streamline
    noise_var: float                 # voxel noise variance
    signal_cov: np.ndarray = None    # (246, 246) covariance of the neural signals (incl. global signal)
    global_signal: np.ndarray = None  # (T, 1) the global signal added to every voxel
    atlas: dict = field(default_factory=dict)   # atlas -> dict(sc_true, fc_true, count, sift2, fc)


def simulate_subject(model: CohortModel, index: int, group: str, bsi: float, site: int,
                     with_atlases: bool = True) -> SubjectBrain:
    """Simulate one subject (deterministic from the cohort seed and the subject index)."""
    p = model.params
    g = model.geometry
    rng = np.random.default_rng(np.random.SeedSequence(model.seed, spawn_key=(1, index)))
    n = g.n_regions
    noise = np.exp(rng.normal(0, p.sc_subject_sd, (n, n)))
    noise = np.sqrt(noise * noise.T)
    dens = model.template * noise * model.site_bias[site % len(model.site_bias)]
    dens = dens / dens.sum() * p.n_streamlines
    iu = np.triu_indices(n, 1)
    count = np.zeros((n, n))
    count[iu] = rng.poisson(dens[iu])
    count = count + count.T
    sift = np.exp(rng.normal(0, p.sift2_sd, (n, n)))
    sift = np.sqrt(sift * sift.T) * 0.05
    d = model.strengths(group, bsi)
    a = dens / dens.sum()
    coupling = float(np.clip(rng.normal(p.coupling, p.coupling_sd), 0.05, 0.95))
    mix = brain.sar_mixing(a, coupling)
    mix /= np.sqrt(np.mean(np.diag(mix @ mix.T)))  # neural signal sd ~ 1
    masks = model.effect_masks()
    b = brain.decoupling_operator(a, mix @ mix.T, d, rng, masks["trd_decoupling"] | masks["hipp_bsi"])
    mix = b @ mix
    e = brain.ar1_noise(rng, p.n_timepoints, n, p.ar1)
    x = e @ mix.T
    noise_var = (p.voxel_noise_sd * (1 + p.site_noise_step * (site % len(model.site_bias)))) ** 2
    sb = SubjectBrain(dens, b, d, coupling, x, count, sift, noise_var)
    if with_atlases:
        sig_cov = mix @ mix.T + p.global_signal ** 2
        gsig = brain.ar1_noise(rng, p.n_timepoints, 1, p.ar1) * p.global_signal
        sb.signal_cov, sb.global_signal = sig_cov, gsig
        k = len(g.cluster_size)
        vox = rng.standard_normal((p.n_timepoints, k)) * np.sqrt(noise_var / g.cluster_size)
        for atlas in model.labels:
            sm = g.signal_mixing(atlas)
            em = g.endpoint_mixing(atlas)
            nm = g.noise_mixing(atlas)
            sc_true = em.T @ dens @ em
            np.fill_diagonal(sc_true, 0)
            # Symmetrise before rounding: float round-off in the two products can put
            # x.5 on different sides for (i, j) and (j, i), and SC must be symmetric.
            cnt = em.T @ count @ em
            cnt = np.rint((cnt + cnt.T) / 2)
            np.fill_diagonal(cnt, 0)
            s2 = em.T @ (count * sift) @ em
            s2 = (s2 + s2.T) / 2
            np.fill_diagonal(s2, 0)
            s2[cnt == 0] = 0
            s2 = np.round(s2, 6)
            cov = sm @ sig_cov @ sm.T + np.diag(noise_var * (nm ** 2 / g.cluster_size[None, :]).sum(axis=1))
            y = (x + gsig) @ sm.T + vox @ nm.T
            sb.atlas[atlas] = dict(sc_true=sc_true, fc_true=brain.cov_to_corr(cov), count=cnt, sift2=s2,
                                   fc=np.round(brain.pearson_columns(y), 6), timeseries=y)
    return sb


def write_matrix_fast(path, matrix) -> None:
    """Byte-identical to :func:`sfc.io.write_matrix` (``%.10g``, ``n/a``), several times faster."""
    matrix = np.asarray(matrix, dtype=float)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if np.isfinite(matrix).all() and np.all(matrix == np.rint(matrix)) and np.abs(matrix).max(initial=0) < 1e15:
        lines = ["\t".join(map(str, row)) for row in matrix.astype(np.int64).tolist()]
    else:
        lines = ["\t".join("n/a" if v != v else ("%.10g" % v) for v in row) for row in matrix.tolist()]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


@dataclass
class ConnectomeCohort:
    """What :func:`simulate_connectome_cohort` wrote and the truth behind it.

    Attributes
    ----------
    out_dir, truth_dir : Path
    participants : pandas.DataFrame        the table written to ``participants.tsv``
    participants_tsv : Path
    subjects : list of str                 labels without ``sub-`` (for sfc.paths)
    atlases : tuple of str
    planted : dict                         atlas -> effect -> list of region names
    planted_table : pandas.DataFrame       atlas, index, name, gyrus, effect, group, weight, planted
    sfc_true : dict                        atlas -> DataFrame (rows participant_id, columns region names)
    sfc_observed : dict                    same, computed from the written count SC and FC
    effects : Effects
    seconds : float                        wall time
    """

    out_dir: Path
    truth_dir: Path
    participants: pd.DataFrame
    participants_tsv: Path
    subjects: list
    atlases: tuple
    planted: dict
    planted_table: pd.DataFrame
    sfc_true: dict
    sfc_observed: dict
    effects: Effects
    seconds: float = 0.0


def planted_table(model: CohortModel, threshold: float = 0.5) -> pd.DataFrame:
    """Every atlas region touched by a planted effect, with the share of its signal it carries."""
    rows = []
    groups = {"trd_decoupling": model.effects.trd_group, "hipp_bsi": model.effects.hipp_group}
    sizes = {"trd_decoupling": model.effects.trd_decoupling, "hipp_bsi": model.effects.hipp_bsi}
    for atlas, per_effect in model.planted_weights().items():
        lab = model.labels[atlas]
        for eff, w in per_effect.items():
            for k in np.nonzero(w > 0.05)[0]:
                rows.append(dict(atlas=atlas, index=int(lab["index"].iloc[k]), name=lab["name"].iloc[k],
                                 gyrus=lab["gyrus"].iloc[k] if "gyrus" in lab else "", effect=eff,
                                 group=groups[eff], effect_size=sizes[eff], weight=round(float(w[k]), 4),
                                 planted=bool(w[k] >= threshold and sizes[eff] > 0)))
    return pd.DataFrame(rows, columns=["atlas", "index", "name", "gyrus", "effect", "group", "effect_size",
                                       "weight", "planted"])


def _check_model(model: CohortModel, seed, effects, null, params) -> None:
    """A prebuilt model carries seed, effects and parameters: refuse arguments that contradict it."""
    problems = []
    if model.seed != seed:
        problems.append(f"model seed {model.seed} != seed {seed}")
    if null and model.effects != Effects.null():
        problems.append("null=True but the model has effects (build it with null=True)")
    if effects is not None and not null and effects != model.effects:
        problems.append("effects differ from the model's")
    if params is not None and params != model.params:
        problems.append("params differ from the model's")
    if problems:
        raise ValueError("simulate_connectome_cohort(model=...): " + "; ".join(problems))


def simulate_connectome_cohort(out_dir, atlas_dir=None, n_per_group: dict | None = None,
                               atlases=ATLASES, null: bool = False, seed: int = 0,
                               effects: Effects | None = None, n_sites: int = 2,
                               params: BrainParams | None = None, truth_dir=None,
                               weights=("count", "sift2"), missing_fraction: float = 0.02,
                               planted_threshold: float = 0.5, model: CohortModel | None = None
                               ) -> ConnectomeCohort:
    """Write a synthetic cohort's per-subject SC and FC in the workflow's output layout.

    Parameters
    ----------
    out_dir : path-like
        Output folder (INTERFACES.md layout): ``participants.tsv``,
        ``atlases/atlas-{atlas}_dseg.tsv``, per subject ``dwi/..._desc-{weight}_sc.tsv``
        and ``func/..._desc-corr_fc.tsv`` (paths from :mod:`sfc.paths`).
    atlas_dir : path-like, optional
        Where the atlas images are (else ``$SFC_ATLAS_DIR``); nothing is downloaded.
    n_per_group : dict
        Subjects per group; default the study's ``{"TRD": 72, "nTRD": 152, "HC": 84}``.
    atlases : sequence of str
        Subset of ``("BNA246", "HOA")`` to write.
    null : bool
        Plant nothing (every group drawn from the same brain distribution).
    seed : int
        Everything is deterministic from it.
    effects : Effects, optional
        Planted effect sizes (ignored when ``null``).
    n_sites : int
        Sites (independent of group) with their own SC bias and noise level.
    params : BrainParams, optional
    truth_dir : path-like, optional
        Default ``{out_dir}/truth``.
    weights : sequence of str
        SC weights to write (``count``, ``sift2``).
    missing_fraction : float
        Share of ``education_years`` and ``bsi`` written as ``n/a``.
    planted_threshold : float
        An atlas region counts as planted when at least this share of its signal
        comes from planted BNA-246 regions.

    Returns
    -------
    ConnectomeCohort

    Notes
    -----
    FC matrices have a diagonal of 1 (Pearson r of a region with itself). The truth
    SFC is the Spearman SC-FC row correlation (Baum et al. 2020) of the noise-free
    SC (expected streamline density) and the model FC; ``sfc_observed`` applies the
    same measure to the written ``count`` SC and FC.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    truth_dir = Path(truth_dir) if truth_dir else out_dir / "truth"
    n_per_group = dict(STUDY_SIZES if n_per_group is None else n_per_group)
    atlases = tuple(atlases)
    if model is None:
        model = build_model(atlas_dir, seed, effects, null, params, n_sites)
    else:
        _check_model(model, seed, effects, null, params)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,)))
    table, bsi_true = simulate_participants(n_per_group, rng, n_sites, missing_fraction)
    subjects = [pid[4:] for pid in table["participant_id"]]
    out_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    from ..io import write_tsv

    write_tsv(out_dir / "participants.tsv", table)
    for atlas in atlases:
        dest = Path(paths.atlas_labels(out_dir, atlas))
        dest.parent.mkdir(parents=True, exist_ok=True)
        model.labels[atlas].to_csv(dest, sep="\t", index=False, na_rep="n/a")
    sfc_true = {a: [] for a in atlases}
    sfc_obs = {a: [] for a in atlases}
    info = []
    for k, sub in enumerate(subjects):
        site = int(table["site"].iloc[k].removeprefix("site")) - 1
        sb = simulate_subject(model, k, table["group"].iloc[k], bsi_true[k], site)
        for atlas in atlases:
            m = sb.atlas[atlas]
            for w in weights:
                write_matrix_fast(paths.sc_matrix(out_dir, sub, None, atlas, w), m[w])
            write_matrix_fast(paths.fc_matrix(out_dir, sub, None, atlas), m["fc"])
            sfc_true[atlas].append(brain.sfc_spearman(m["sc_true"], m["fc_true"]))
            sfc_obs[atlas].append(brain.sfc_spearman(m["count"], m["fc"]))
        masks = model.effect_masks()
        info.append(dict(participant_id=table["participant_id"].iloc[k], group=table["group"].iloc[k],
                         site=table["site"].iloc[k], bsi_true=bsi_true[k], coupling=sb.coupling,
                         trd_decoupling=float(sb.strengths[masks["trd_decoupling"]].max(initial=0)),
                         hipp_rewired=float(sb.strengths[masks["hipp_bsi"]].max(initial=0))))
    pids = table["participant_id"]
    out_true, out_obs = {}, {}
    for atlas in atlases:
        names = model.labels[atlas]["name"].tolist()
        out_true[atlas] = pd.DataFrame(np.array(sfc_true[atlas]), index=pids, columns=names)
        out_obs[atlas] = pd.DataFrame(np.array(sfc_obs[atlas]), index=pids, columns=names)
        out_true[atlas].reset_index().to_csv(truth_dir / f"atlas-{atlas}_desc-true_sfc.tsv", sep="\t",
                                             index=False, float_format="%.6g", na_rep="n/a")
        out_obs[atlas].reset_index().to_csv(truth_dir / f"atlas-{atlas}_desc-observed_sfc.tsv", sep="\t",
                                            index=False, float_format="%.6g", na_rep="n/a")
    write_tsv(truth_dir / "subjects.tsv", pd.DataFrame(info))
    ptab = planted_table(model, planted_threshold)
    ptab = ptab[ptab["atlas"].isin(atlases)].reset_index(drop=True)
    write_tsv(truth_dir / "planted.tsv", ptab)
    planted = {a: {eff: ptab.loc[(ptab.atlas == a) & (ptab.effect == eff) & ptab.planted, "name"].tolist()
                   for eff in ("trd_decoupling", "hipp_bsi")} for a in atlases}
    meta = dict(seed=seed, null=null, n_per_group=n_per_group, n_sites=n_sites,
                effects=asdict(model.effects), params=asdict(model.params), planted=planted,
                planted_threshold=planted_threshold, generator="sfc.simulate.connectome",
                sfc_measure="Spearman over j != i with SC_ij > 0 (Baum et al. 2020)")
    (truth_dir / "planted.json").write_text(json.dumps(meta, indent=2, default=list))
    return ConnectomeCohort(out_dir, truth_dir, table, out_dir / "participants.tsv", subjects, atlases,
                            planted, ptab, out_true, out_obs, model.effects, time.perf_counter() - t0)
