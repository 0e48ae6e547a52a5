"""Diffusion MRI to structural connectomes with MRtrix3 (and antspyx for N4 and registration).

Steps (each a function taking and returning paths, all MRtrix3 calls through
:func:`sfc.mrtrix.run`):

validate -> import (``mrconvert -fslgrad``) -> ``dwidenoise`` -> ``mrdegibbs`` ->
[``dwifslpreproc`` when FSL's ``eddy`` is available and enabled] -> ``dwi2mask`` ->
N4 bias correction of the mean b0 (antspyx) applied to every volume ->
tensor (``dwi2tensor``, ``tensor2metric``) -> response (``dwi2response tournier``
single-shell, ``dhollander`` multi-shell) -> FOD (``dwi2fod csd`` / ``msmt_csd``) ->
``tckgen`` -> ``tcksift2`` -> ``tck2connectome`` per atlas and weight.

References
----------
Veraart J, Novikov DS, Christiaens D, et al. (2016) Denoising of diffusion MRI using
random matrix theory. NeuroImage 142:394-406 (dwidenoise).
Kellner E, Dhital B, Kiselev VG, Reisert M (2016) Gibbs-ringing artifact removal based
on local subvoxel-shifts. Magn Reson Med 76:1574-1581 (mrdegibbs).
Tournier J-D, Calamante F, Connelly A (2007) Robust determination of the fibre
orientation distribution in diffusion MRI: non-negativity constrained super-resolved
spherical deconvolution. NeuroImage 35:1459-1472 (CSD).
Tournier J-D, Calamante F, Connelly A (2013) Determination of the appropriate b value
and number of gradient directions for high-angular-resolution diffusion-weighted
imaging. NMR Biomed 26:1775-1786 (response, lmax vs. number of directions).
Jeurissen B, Tournier J-D, Dhollander T, et al. (2014) Multi-tissue constrained
spherical deconvolution. NeuroImage 103:411-426 (msmt_csd).
Smith RE, Tournier J-D, Calamante F, Connelly A (2012) Anatomically-constrained
tractography. NeuroImage 62:1924-1938 (ACT).
Smith RE, Tournier J-D, Calamante F, Connelly A (2015) SIFT2. NeuroImage 119:338-351.
Basser PJ, Pajevic S, Pierpaoli C, et al. (2000) In vivo fiber tractography using
DT-MRI data. Magn Reson Med 44:625-632 (tensor tracking).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import mrtrix
from .errors import InputError, SetupError

logger = logging.getLogger("sfc.dwi")

ALGORITHMS = ("iFOD2", "iFOD1", "SD_STREAM", "Tensor_Det", "Tensor_Prob")
TENSOR_ALGORITHMS = ("Tensor_Det", "Tensor_Prob")
DETERMINISTIC = ("SD_STREAM", "Tensor_Det")
WEIGHTS = ("count", "sift2", "length", "fa")
SEEDING = ("dynamic", "gmwmi", "mask")
RESPONSES = ("auto", "tournier", "dhollander", "fa")

#: b-values up to this are treated as b=0 (MRtrix3's default BZeroThreshold is 10;
#: scanners often write b=5..50 for the "b0" volumes).
B0_THRESHOLD = 50.0
#: b-values within this distance belong to one shell.
SHELL_TOLERANCE = 100.0


# --------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------

@dataclass
class DwiInfo:
    """What :func:`validate_dwi` learnt about a DWI series."""

    path: str
    shape: tuple
    voxel_size: tuple
    n_volumes: int
    n_b0: int
    shells: list = field(default_factory=list)          # b-values of the non-zero shells
    n_directions: dict = field(default_factory=dict)    # shell b-value -> distinct directions
    steps: dict = field(default_factory=dict)           # preprocessing steps that ran (preprocess)

    @property
    def multi_shell(self) -> bool:
        return len(self.shells) > 1

    @property
    def min_directions(self) -> int:
        return min(self.n_directions.values()) if self.n_directions else 0

    def to_json(self, path) -> None:
        """Write as JSON (shell keys as strings)."""
        import json

        d = {k: v for k, v in self.__dict__.items()}
        d["n_directions"] = {f"{k:g}": v for k, v in self.n_directions.items()}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(d, indent=1) + "\n")

    @classmethod
    def from_json(cls, path) -> "DwiInfo":
        import json

        d = json.loads(Path(path).read_text())
        d["n_directions"] = {float(k): int(v) for k, v in d["n_directions"].items()}
        d["shape"], d["voxel_size"] = tuple(d["shape"]), tuple(d["voxel_size"])
        return cls(**d)


def _read_table(path, kind: str) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{kind} file not found",
                         f"put the FSL-format {kind} file next to the DWI (same name, .{kind})")
    try:
        rows = [r.replace(",", " ").split() for r in path.read_text().splitlines() if r.strip()]
        return np.array([[float(v) for v in r] for r in rows], dtype=float)
    except ValueError as exc:
        raise InputError(path, f"{kind} file is not a table of numbers ({exc}) or its rows differ in length",
                         f"write the {kind} file in FSL layout (whitespace-separated numbers)") from None


def shells_of(bvals, b0_threshold: float = B0_THRESHOLD, tolerance: float = SHELL_TOLERANCE) -> list[float]:
    """The distinct non-zero shells of a b-value list (each the median of its cluster)."""
    b = np.sort(np.asarray(bvals, dtype=float)[np.asarray(bvals, dtype=float) > b0_threshold])
    shells, cluster = [], []
    for v in b:
        if cluster and v - cluster[-1] > tolerance:
            shells.append(float(np.median(cluster)))
            cluster = []
        cluster.append(v)
    if cluster:
        shells.append(float(np.median(cluster)))
    return shells


def count_directions(bvecs: np.ndarray, angle_deg: float = 5.0) -> int:
    """Distinct directions among unit vectors (3 x n), antipodes counted once."""
    dirs = []
    cos_tol = np.cos(np.deg2rad(angle_deg))
    for v in np.asarray(bvecs, dtype=float).T:
        n = np.linalg.norm(v)
        if n == 0:
            continue
        v = v / n
        if not any(abs(float(v @ d)) > cos_tol for d in dirs):
            dirs.append(v)
    return len(dirs)


def validate_dwi(dwi, bval, bvec, *, b0_threshold: float = B0_THRESHOLD, min_directions: int = 6) -> DwiInfo:
    """Check a DWI series and its FSL gradient files before any tool touches them.

    Catches: missing / unreadable / truncated image, not 4-D, NaN or infinite values,
    an all-zero volume, b-value or b-vector count different from the number of volumes,
    b-vectors not in 3 rows, a diffusion-weighted volume with a zero or non-unit
    direction, no b=0 volume, fewer than ``min_directions`` distinct directions
    (a tensor needs 6).

    Parameters
    ----------
    dwi, bval, bvec : path
        The NIfTI series and its FSL ``.bval`` (1 row) / ``.bvec`` (3 rows) files.
    b0_threshold : float
        b-values up to this are b=0.
    min_directions : int
        Fewest distinct directions accepted on every shell.

    Returns
    -------
    DwiInfo

    Raises
    ------
    InputError
        Naming the file at fault, the problem and the fix.
    """
    import nibabel as nib

    dwi = Path(dwi)
    if not dwi.is_file():
        raise InputError(dwi, "DWI file not found", "check the BIDS dataset or the path in the config")
    try:
        img = nib.load(str(dwi))
    except Exception as exc:  # nibabel raises several kinds for a bad header
        raise InputError(dwi, f"cannot be read as NIfTI ({type(exc).__name__}: {exc})",
                         "re-convert the DWI from DICOM (e.g. dcm2niix) or re-copy it") from None
    if len(img.shape) != 4 or img.shape[3] < 2:
        raise InputError(dwi, f"is not a 4-D diffusion series (shape {img.shape})",
                         "give the full multi-volume DWI series, not a single volume")
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # EOFError / zlib.error / OSError / ValueError for truncated files
        raise InputError(dwi, f"image data cannot be read: the file is truncated or corrupt "
                         f"({type(exc).__name__}: {exc})",
                         "re-copy or re-convert the DWI; check that the download or transfer completed") from None
    n_vol = data.shape[3]
    flat = data.reshape(-1, n_vol)
    if np.issubdtype(flat.dtype, np.floating):
        bad = ~np.isfinite(flat)
        if bad.any():
            vols = np.unique(np.nonzero(bad)[1])
            raise InputError(dwi, f"contains {int(bad.sum())} NaN or infinite values "
                             f"(volumes {_first(vols)}, 0-based)",
                             "re-convert the DWI; if NaNs come from an earlier tool, fix that step")
    zero = np.nonzero(~np.any(flat != 0, axis=0))[0]
    if zero.size:
        raise InputError(dwi, f"volume(s) {_first(zero)} (0-based) are all zero",
                         "remove the empty volumes and their entries in .bval/.bvec, or re-export the series")

    bvals = _read_table(bval, "bval")
    if bvals.ndim == 2 and min(bvals.shape) == 1:
        bvals = bvals.ravel()
    if bvals.ndim != 1:
        raise InputError(bval, f"has {bvals.shape[0]} rows; FSL .bval files have one",
                         "write one row of b-values, one per volume")
    if bvals.size != n_vol:
        raise InputError(bval, f"has {bvals.size} b-values but {dwi.name} has {n_vol} volumes",
                         "use the .bval written with this DWI series (one value per volume)")
    if not np.all(np.isfinite(bvals)) or (bvals < 0).any():
        raise InputError(bval, "contains negative or non-numeric b-values", "re-export the gradient table")

    bvecs = _read_table(bvec, "bvec")
    if bvecs.ndim != 2 or 3 not in bvecs.shape:
        raise InputError(bvec, f"is {bvecs.shape[0]} x {bvecs.shape[1] if bvecs.ndim == 2 else 1}; "
                         "FSL .bvec files have 3 rows", "write 3 rows (x, y, z) with one column per volume")
    if bvecs.shape[0] != 3:
        if bvecs.shape[1] == 3 and bvecs.shape[0] == n_vol:
            raise InputError(bvec, f"has {n_vol} rows of 3 (one row per volume); FSL layout is 3 rows",
                             "transpose the file to 3 rows x one column per volume")
        raise InputError(bvec, f"has {bvecs.shape[0]} rows; FSL .bvec files have 3",
                         "write 3 rows (x, y, z) with one column per volume")
    if bvecs.shape[1] != n_vol:
        raise InputError(bvec, f"has {bvecs.shape[1]} gradient directions but {dwi.name} has {n_vol} volumes",
                         "use the .bvec written with this DWI series (one column per volume)")
    if not np.all(np.isfinite(bvecs)):
        raise InputError(bvec, "contains non-numeric values", "re-export the gradient table")

    dw = bvals > b0_threshold
    norms = np.linalg.norm(bvecs, axis=0)
    bad = np.nonzero(dw & ((norms < 0.5) | (norms > 1.5)))[0]
    if bad.size:
        raise InputError(bvec, f"volume(s) {_first(bad)} (0-based) have b > {b0_threshold:g} but a zero or "
                         "non-unit gradient direction", "fix the gradient table (directions must be unit vectors)")
    n_b0 = int((~dw).sum())
    if n_b0 == 0:
        raise InputError(bval, f"no b=0 volume (all b-values > {b0_threshold:g})",
                         "include at least one b=0 volume; registration and masking need it")
    shells = shells_of(bvals, b0_threshold)
    if not shells:
        raise InputError(bval, "no diffusion-weighted volume (all b-values are ~0)",
                         "give a diffusion series with gradient directions")
    n_dirs = {}
    for s in shells:
        sel = dw & (np.abs(bvals - s) <= SHELL_TOLERANCE)
        n_dirs[s] = count_directions(bvecs[:, sel])
    if min(n_dirs.values()) < min_directions:
        worst = min(n_dirs, key=n_dirs.get)
        raise InputError(bvec, f"shell b={worst:g} has only {n_dirs[worst]} distinct directions; "
                         f"at least {min_directions} are needed for a diffusion tensor",
                         "acquire or select at least 6 non-collinear directions")
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    info = DwiInfo(path=str(dwi), shape=tuple(int(s) for s in data.shape), voxel_size=zooms, n_volumes=n_vol,
                   n_b0=n_b0, shells=shells, n_directions=n_dirs)
    logger.info("%s: %d volumes, %d b=0, shells %s, directions %s", dwi, n_vol, n_b0, shells, n_dirs)
    return info


def _first(idx, k: int = 8) -> str:
    idx = [int(i) for i in idx]
    return ", ".join(map(str, idx[:k])) + (f" ... ({len(idx)} in all)" if len(idx) > k else "")


def find_qsiprep(qsiprep_dir, subject: str, session: str | None = None) -> tuple[str, str, str]:
    """QSIPrep's preprocessed DWI of one subject: ``(dwi, bval, bvec)``.

    Looks for ``sub-<s>[/ses-<t>]/dwi/*_desc-preproc_dwi.nii.gz`` (QSIPrep writes
    ``..._space-T1w_desc-preproc_dwi.nii.gz`` with ``.bval`` / ``.bvec`` of the same stem).

    Raises
    ------
    InputError
        No or several candidates, or gradient files missing.
    """
    base = Path(qsiprep_dir) / f"sub-{subject}"
    if session:
        base = base / f"ses-{session}"
    found = sorted((base / "dwi").glob("*_desc-preproc_dwi.nii.gz"))
    if not found:
        raise InputError(base / "dwi", "no QSIPrep *_desc-preproc_dwi.nii.gz",
                         "run QSIPrep for this subject, or set input.dwi: bids")
    if len(found) > 1:
        raise InputError(base / "dwi", f"{len(found)} QSIPrep preprocessed DWIs ({', '.join(p.name for p in found)})",
                         "keep one per subject/session (e.g. one space) in derivatives.qsiprep")
    dwi_path = found[0]
    stem = str(dwi_path)[: -len(".nii.gz")]
    bval, bvec = Path(stem + ".bval"), Path(stem + ".bvec")
    for p in (bval, bvec):
        if not p.is_file():
            raise InputError(p, "QSIPrep gradient file missing", "copy QSIPrep's .bval/.bvec next to the DWI")
    return str(dwi_path), str(bval), str(bvec)


# --------------------------------------------------------------------------------------
# what the data allow
# --------------------------------------------------------------------------------------

def n_sh_coefficients(lmax: int) -> int:
    """Number of even-order spherical-harmonic coefficients up to ``lmax``: (l+1)(l+2)/2."""
    return (lmax + 1) * (lmax + 2) // 2


def max_lmax(n_directions: int, cap: int = 8) -> int:
    """Highest even lmax whose SH basis the directions can determine (Tournier 2013).

    6 directions -> 2, 15 -> 4, 28 -> 6, 45 -> 8; 0 when fewer than 6.
    """
    lmax = 0
    for l in range(2, cap + 1, 2):
        if n_sh_coefficients(l) <= n_directions:
            lmax = l
    return lmax


def tracking_threads(tracking: dict, nthreads: int) -> int:
    """Threads of the tractography job.

    Reproducible tracking (``tracking["reproducible"]``, the default) runs ``chunks``
    single-threaded tckgen processes side by side, so the job uses one thread per chunk (the
    scheduler may give it fewer: the chunks then take turns, with the same streamlines).
    Otherwise one tckgen with ``nthreads`` threads: faster per core, but two threads race for
    seeds (measured: different streamlines run to run).
    """
    if tracking.get("reproducible", True):
        return max(int(tracking.get("chunks", 1)), 1)
    return int(nthreads)


def act_in_force(setting, use_fsl="auto") -> bool:
    """Whether ACT runs: ``dwi.tracking.act`` true/false as set; ``"auto"``: when FSL's FAST and
    FIRST are on PATH, so that ``5ttgen fsl`` makes the 5TT image (the antspyx k-means 5TT has
    no subcortical grey matter, which ACT needs to end streamlines in the deep nuclei).

    Decided once, when the workflow is planned, so that every subject of a run is tracked the
    same way; the run log and the report's methods paragraph say which it was.
    """
    if setting == "auto":
        from .anat import fsl_available

        return bool(use_fsl and fsl_available())
    return bool(setting)


def chunk_plan(streamlines: int, chunks: int, seed: int) -> list[tuple[int, int]]:
    """(streamlines, seed) of each tckgen run when ``streamlines`` are tracked in ``chunks``.

    The counts differ by at most one and add up to ``streamlines``. Chunk 0 keeps the subject's
    seed (one chunk is the unchunked run); the others get seeds drawn from numpy's SeedSequence
    of (seed, chunk): independent streams, fixed by the seed and the chunk index alone, so the
    merged streamlines depend on ``seed`` and ``chunks`` and not on how many run at once.
    """
    streamlines, chunks = int(streamlines), int(chunks)
    if chunks < 1 or streamlines < chunks:
        raise ValueError(f"cannot split {streamlines} streamlines into {chunks} chunks")
    base, extra = divmod(streamlines, chunks)
    seeds = [int(seed)] + [int(np.random.SeedSequence([int(seed), k]).generate_state(1)[0])
                           for k in range(1, chunks)]
    return [(base + (k < extra), seeds[k]) for k in range(chunks)]


def check_tracking(info: DwiInfo, algorithm: str = "iFOD2", lmax: int | None = None,
                   act: bool = False, seeding: str = "dynamic", weights: tuple = ("count",),
                   response: str = "auto") -> dict:
    """Check the tracking configuration against what the data allow; return the plan.

    Parameters
    ----------
    info : DwiInfo
        From :func:`validate_dwi`.
    algorithm : str
        ``tckgen -algorithm``: iFOD2 (default), iFOD1, SD_STREAM, Tensor_Det, Tensor_Prob.
    lmax : int, optional
        Requested FOD lmax (None: the highest the directions allow, at most 8).
    act : bool
        Anatomically constrained tractography (needs a 5TT image).
    seeding : {"dynamic", "gmwmi", "mask"}
    weights : tuple of str
        Connectome weights wanted (``sift2`` needs an FOD).
    response : {"auto", "tournier", "dhollander", "fa"}
        ``dwi2response`` algorithm: auto is tournier for one shell and dhollander for several
        (what MRtrix3 recommends); fa (single-fibre voxels by highest FA, one pass) is ~30x
        cheaper than tournier, whose first pass segments the FOD of the whole brain
        (~100 CPU-s on the demo's 2.5 mm DWI), at the price of a cruder single-fibre mask.

    Returns
    -------
    dict
        ``algorithm``, ``lmax`` (0 for tensor tracking), ``response`` (tournier|dhollander|fa|None),
        ``fod`` (csd|msmt_csd|None), ``seeding``.

    Raises
    ------
    InputError
        Naming the DWI, what the data cannot support and what to configure instead.
    """
    if algorithm not in ALGORITHMS:
        raise SetupError(None, f"tractography algorithm '{algorithm}' is not one of {', '.join(ALGORITHMS)}",
                         "set dwi.tracking.algorithm to one of them")
    if response not in RESPONSES:
        raise SetupError(None, f"response algorithm '{response}' is not one of {', '.join(RESPONSES)}",
                         "set dwi.response to auto, tournier, dhollander or fa")
    if seeding not in SEEDING:
        raise SetupError(None, f"seeding '{seeding}' is not one of {', '.join(SEEDING)}",
                         "set dwi.tracking.seeding to dynamic, gmwmi or mask")
    if seeding == "gmwmi" and not act:
        raise SetupError(None, "GM-WM interface seeding needs the 5TT image of ACT",
                         "set dwi.tracking.act: true, or seeding: dynamic")
    bad = set(weights) - set(WEIGHTS)
    if bad:
        raise SetupError(None, f"unknown SC weight(s) {sorted(bad)}", f"use any of {', '.join(WEIGHTS)}")
    possible = max_lmax(info.min_directions)
    tensor = algorithm in TENSOR_ALGORITHMS
    needs_fod = (not tensor) or "sift2" in weights
    plan = {"algorithm": algorithm, "seeding": seeding, "lmax": 0, "response": None, "fod": None}
    if tensor and seeding == "dynamic":
        plan["seeding"] = "mask"  # -seed_dynamic needs an FOD image; tensor tracking seeds in the mask
    if needs_fod:
        if possible < 2:
            raise InputError(info.path, f"only {info.min_directions} distinct directions: too few for "
                             "spherical deconvolution (lmax 2 needs 6)", "use tensor tracking (Tensor_Det)")
        want = possible if lmax is None else int(lmax)
        if want % 2 or want < 2:
            raise SetupError(None, f"lmax must be an even number >= 2, got {lmax}", "set dwi.lmax to 2, 4, 6 or 8")
        if want > possible:
            shell = min(info.n_directions, key=info.n_directions.get)
            raise InputError(info.path, f"{info.min_directions} diffusion directions at b={shell:g} support "
                             f"at most lmax {possible} ({n_sh_coefficients(want)} coefficients needed for lmax "
                             f"{want}), so {algorithm} with lmax {want} is impossible",
                             f"set dwi.lmax: {possible}, or use dwi.tracking.algorithm: Tensor_Det")
        plan["lmax"] = want
        if info.multi_shell and response in ("tournier", "fa"):
            raise InputError(info.path, f"multi-shell DWI (b = {', '.join(f'{b:g}' for b in info.shells)}): "
                             f"msmt_csd needs WM, GM and CSF responses, which dwi2response {response} "
                             "does not estimate", "set dwi.response: auto (dhollander)")
        if response == "auto":
            response = "dhollander" if info.multi_shell else "tournier"
        plan["response"] = response
        plan["fod"] = "msmt_csd" if info.multi_shell else "csd"
    return plan


# --------------------------------------------------------------------------------------
# steps (MRtrix3)
# --------------------------------------------------------------------------------------

def import_dwi(dwi, bval, bvec, out_mif, *, log=None, nthreads: int = 1) -> str:
    """``mrconvert -fslgrad`` into MRtrix format (gradients carried in the header), float32, RAS+.

    ``-strides +1,+2,+3,+4`` stores the voxels in RAS+ order whatever order the file has (the
    gradients are in scanner coordinates in the header, so they follow): every later image on
    the DWI grid (mean b0, mask, atlas nodes) is then the same array for any storage of the same
    scan, and so is the T1w -> DWI registration (see ``registration.load_canonical``).
    """
    mrtrix.run(["mrconvert", dwi, "-fslgrad", bvec, bval, "-datatype", "float32", "-strides", "+1,+2,+3,+4",
                out_mif],
               log=log, nthreads=nthreads)
    return os.fspath(out_mif)


def denoise(in_mif, out_mif, *, noise=None, head_mask: bool = True, log=None, nthreads: int = 1) -> str:
    """``dwidenoise`` (MP-PCA, Veraart 2016); optionally writes the noise map.

    ``head_mask``: denoise only inside ``dwi2mask`` of the raw series dilated by two voxels
    (``-mask``). Patches still read their neighbours outside it, so the voxels inside are
    exactly those of a whole-field run (checked on the demo: difference 0); the voxels
    outside, which no later step uses, are 0. On the demo's 2.5 mm DWI: 13.5 s instead of 30.7 s.
    """
    cmd = ["dwidenoise", in_mif, out_mif] + (["-noise", noise] if noise else [])
    with tempfile.TemporaryDirectory(prefix="sfc_den_") as tmp:
        if head_mask:
            mask = Path(tmp) / "head.mif"
            mrtrix.run(["dwi2mask", in_mif, Path(tmp) / "rough.mif"], log=log, nthreads=nthreads)
            mrtrix.run(["maskfilter", Path(tmp) / "rough.mif", "dilate", "-npass", "2", mask], log=log,
                       nthreads=nthreads)
            cmd += ["-mask", mask]
        mrtrix.run(cmd, log=log, nthreads=nthreads)
    return os.fspath(out_mif)


def degibbs(in_mif, out_mif, *, log=None, nthreads: int = 1) -> str:
    """``mrdegibbs`` (Kellner 2016)."""
    mrtrix.run(["mrdegibbs", in_mif, out_mif], log=log, nthreads=nthreads)
    return os.fspath(out_mif)


def fslpreproc(in_mif, out_mif, *, enabled="auto", pe_dir: str = "j", readout_time: float = 0.1,
               source=None, log=None, nthreads: int = 1) -> bool:
    """``dwifslpreproc -rpe_none`` (eddy-current and motion correction).

    ``enabled``: ``"auto"`` runs it when FSL's eddy is on PATH and otherwise copies the input
    with one log line; ``True`` stops with an :class:`InputError` naming the DWI (``source``)
    when eddy is missing (never quietly less than asked); ``False`` skips it. Returns True if
    it ran.
    """
    eddy = next((e for e in ("eddy", "eddy_openmp", "eddy_cpu", "eddy_cuda") if mrtrix.have(e)), None)
    available = eddy is not None and mrtrix.have("dwifslpreproc")
    if enabled is True and not available:
        raise SetupError(source, "dwi.eddy is true, but FSL's eddy (eddy, eddy_openmp, eddy_cpu or eddy_cuda) "
                         "or dwifslpreproc is not on PATH",
                         "install FSL (or load its module) where the jobs run, or set dwi.eddy: auto to "
                         "continue without eddy-current/motion correction where it is missing")
    if not enabled or not available:
        why = "disabled in the config (dwi.eddy: false)" if not enabled else "FSL's eddy is not on PATH"
        _log_line(log, f"dwifslpreproc skipped: {why}; continuing without eddy-current/motion correction")
        shutil.copyfile(in_mif, out_mif)
        return False
    mrtrix.run(["dwifslpreproc", in_mif, out_mif, "-rpe_none", "-pe_dir", pe_dir,
                "-readout_time", str(readout_time)], log=log, nthreads=nthreads)
    return True


def brain_mask(in_mif, out_mask, *, log=None, nthreads: int = 1) -> str:
    """``dwi2mask``."""
    mrtrix.run(["dwi2mask", in_mif, out_mask], log=log, nthreads=nthreads)
    return os.fspath(out_mask)


def mean_b0(in_mif, out_image, *, log=None, nthreads: int = 1) -> str:
    """Mean of the b=0 volumes (``dwiextract -bzero`` then ``mrmath mean -axis 3``)."""
    with tempfile.TemporaryDirectory(prefix="sfc_b0_") as tmp:
        b0s = Path(tmp) / "b0s.mif"
        mrtrix.run(["dwiextract", in_mif, "-bzero", b0s], log=log, nthreads=nthreads)
        mrtrix.run(["mrmath", b0s, "mean", "-axis", "3", out_image], log=log, nthreads=nthreads)
    return os.fspath(out_image)


def bias_correct_n4(in_mif, mask, out_mif, *, field_out=None, log=None, nthreads: int = 1) -> str:
    """Bias-field correction without the ANTs command line (``dwibiascorrect ants`` needs it).

    N4 (antspyx) estimates the field on the mean b0 inside the brain mask; every volume
    is divided by that field (``mrcalc dwi field -div``), which is what
    ``dwibiascorrect ants`` does with ``N4BiasFieldCorrection``.
    """
    from . import registration

    with tempfile.TemporaryDirectory(prefix="sfc_n4_") as tmp:
        b0 = mean_b0(in_mif, Path(tmp) / "b0.nii", log=log, nthreads=nthreads)
        mask_nii = Path(tmp) / "mask.nii"
        mrtrix.run(["mrconvert", mask, mask_nii, "-datatype", "uint8"], log=log, nthreads=nthreads)
        # shrink 4, as dwibiascorrect ants: the field's B-spline mesh is ~200 mm, so a 10 mm fit
        # grid (2.5 mm DWI) loses nothing; shrink 2 took 14 s instead of 2 s per demo subject
        field = registration.n4(b0, mask=registration.load(mask_nii).clone("float"), shrink_factor=4,
                                return_bias_field=True)
        field_path = Path(field_out) if field_out else Path(tmp) / "field.nii"
        registration.save(field, field_path)
        _log_line(log, "bias correction: N4 (antspyx) field from the mean b0, applied to all volumes")
        mrtrix.run(["mrcalc", in_mif, field_path, "-div", out_mif], log=log, nthreads=nthreads)
    return os.fspath(out_mif)


def tensor_metrics(in_mif, mask, tensor_out, fa_out, *, md_out=None, v1_out=None, log=None,
                   nthreads: int = 1) -> str:
    """``dwi2tensor`` (weighted least squares) then ``tensor2metric -fa`` (and -adc, -vector)."""
    mrtrix.run(["dwi2tensor", in_mif, tensor_out, "-mask", mask], log=log, nthreads=nthreads)
    cmd = ["tensor2metric", tensor_out, "-mask", mask, "-fa", fa_out]
    if md_out:
        cmd += ["-adc", md_out]
    if v1_out:
        cmd += ["-vector", v1_out]
    mrtrix.run(cmd, log=log, nthreads=nthreads)
    return os.fspath(fa_out)


def response(in_mif, mask, out_prefix, *, algorithm: str = "tournier", lmax: int | None = None,
             extra=(), log=None, nthreads: int = 1) -> list[str]:
    """``dwi2response tournier`` or ``fa`` (single shell: ``<prefix>wm.txt``) or ``dhollander`` (wm, gm, csf).

    ``extra``: further options, e.g. ``("-max_iters", "3")`` to bound tournier's iterations.
    """
    out_prefix = os.fspath(out_prefix)
    if algorithm in ("tournier", "fa"):
        outs = [f"{out_prefix}wm.txt"]
    elif algorithm == "dhollander":
        outs = [f"{out_prefix}{t}.txt" for t in ("wm", "gm", "csf")]
    else:
        raise ValueError(f"response algorithm must be tournier, fa or dhollander, got {algorithm!r}")
    cmd = ["dwi2response", algorithm, in_mif, *outs, "-mask", mask]
    if lmax is not None and algorithm in ("tournier", "fa"):
        cmd += ["-lmax", str(lmax)]
    cmd += [str(x) for x in extra]
    with tempfile.TemporaryDirectory(prefix="sfc_resp_") as tmp:
        mrtrix.run(cmd + ["-scratch", tmp], log=log, nthreads=nthreads)
    return outs


def fod(in_mif, mask, responses, out_prefix, *, algorithm: str = "csd", lmax: int | None = None,
        log=None, nthreads: int = 1) -> list[str]:
    """``dwi2fod csd`` (-> ``<prefix>wm.mif``) or ``msmt_csd`` (wm, gm, csf)."""
    out_prefix = os.fspath(out_prefix)
    tissues = ("wm",) if algorithm == "csd" else ("wm", "gm", "csf")[:len(responses)]
    outs = [f"{out_prefix}{t}.mif" for t in tissues]
    pairs = [x for r, o in zip(responses, outs) for x in (r, o)]
    cmd = ["dwi2fod", algorithm, in_mif, *pairs, "-mask", mask]
    if lmax is not None:
        cmd += ["-lmax", ",".join([str(lmax)] + ["0"] * (len(outs) - 1))]
    mrtrix.run(cmd, log=log, nthreads=nthreads)
    return outs


def gmwm_interface(five_tt, out_mif, *, log=None, nthreads: int = 1) -> str:
    """``5tt2gmwmi``: the seeding mask at the grey-white matter interface."""
    mrtrix.run(["5tt2gmwmi", five_tt, out_mif], log=log, nthreads=nthreads)
    return os.fspath(out_mif)


def track(source, out_tck, *, algorithm: str = "iFOD2", select: int = 1_000_000, seeding: str = "dynamic",
          mask=None, seed_image=None, act=None, seed: int = 42, max_length: float | None = None,
          cutoff: float | None = None, log=None, nthreads: int = 1) -> str:
    """``tckgen``: streamlines from a WM FOD (iFOD2, iFOD1, SD_STREAM) or the DWI (Tensor_*).

    Parameters
    ----------
    source : path
        WM FOD image, or the preprocessed DWI (with its gradients) for tensor algorithms.
    select : int
        Number of streamlines to keep.
    seeding : {"dynamic", "gmwmi", "mask"}
        ``-seed_dynamic <FOD>``, ``-seed_gmwmi <seed_image>`` (with ``act``), or
        ``-seed_image <seed_image or mask>``.
    act : path, optional
        5TT image for ``-act`` (with ``-crop_at_gmwmi``, and ``-backtrack`` for probabilistic algorithms).
    seed : int
        ``MRTRIX_RNG_SEED`` (deterministic with nthreads 0/1).
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    cmd = ["tckgen", source, out_tck, "-algorithm", algorithm, "-select", str(int(select))]
    if seeding == "dynamic":
        if algorithm in TENSOR_ALGORITHMS:
            raise ValueError("-seed_dynamic needs an FOD; use seeding='mask' for tensor tracking")
        cmd += ["-seed_dynamic", source]
    elif seeding == "gmwmi":
        if act is None or seed_image is None:
            raise ValueError("gmwmi seeding needs act=<5TT> and seed_image=<5tt2gmwmi output>")
        cmd += ["-seed_gmwmi", seed_image]
    elif seeding == "mask":
        cmd += ["-seed_image", seed_image or mask]
    else:
        raise ValueError(f"unknown seeding {seeding!r}")
    if act is not None:
        cmd += ["-act", act, "-crop_at_gmwmi"]
        if algorithm not in DETERMINISTIC:  # tckgen refuses -backtrack for deterministic algorithms
            cmd.append("-backtrack")
    elif mask is not None:
        cmd += ["-mask", mask]
    if max_length is not None:
        cmd += ["-maxlength", str(max_length)]
    if cutoff is not None:
        cmd += ["-cutoff", str(cutoff)]
    mrtrix.run(cmd, log=log, nthreads=nthreads, seed=seed)
    return os.fspath(out_tck)


def track_chunks(source, out_tck, *, select: int, chunks: int, seed: int, workers: int = 1, tmpdir=None,
                 log=None, **options) -> str:
    """``select`` streamlines as ``chunks`` single-threaded ``tckgen`` runs, ``workers`` at a time,
    merged in chunk order by ``tckedit`` into ``out_tck``.

    Each chunk draws its streamlines from its own seed (:func:`chunk_plan`) on one thread, so
    the merged file depends on ``seed`` and ``chunks`` only (the same inputs give the same
    streamlines in the same order whatever ``workers`` is), and wall time falls with
    ``workers`` (benchmarks/README.md). ``options`` go to :func:`track` (algorithm, seeding,
    mask, seed_image, act, ...). One chunk is exactly :func:`track` with ``nthreads=1``.
    """
    from concurrent.futures import ThreadPoolExecutor

    plan = chunk_plan(select, chunks, seed)
    if len(plan) == 1:
        return track(source, out_tck, select=plan[0][0], seed=plan[0][1], log=log, nthreads=1, **options)
    with tempfile.TemporaryDirectory(prefix="sfc_chunks_", dir=tmpdir or Path(out_tck).parent) as tmp:
        parts = [Path(tmp) / f"chunk-{k:03d}.tck" for k in range(len(plan))]

        def one(k):
            track(source, parts[k], select=plan[k][0], seed=plan[k][1], log=log, nthreads=1, **options)

        with ThreadPoolExecutor(max_workers=max(int(workers), 1)) as pool:
            list(pool.map(one, range(len(plan))))
        # -nthreads 0: tckedit reads and writes in one thread, keeping the chunks' order
        mrtrix.run(["tckedit", *parts, out_tck], log=log, nthreads=0)
    return os.fspath(out_tck)


def sift2(tck, wm_fod, out_weights, *, act=None, log=None, nthreads: int = 1) -> str:
    """``tcksift2``: per-streamline weights (Smith 2015)."""
    cmd = ["tcksift2", tck, wm_fod, out_weights] + (["-act", act] if act else [])
    mrtrix.run(cmd, log=log, nthreads=nthreads)
    return os.fspath(out_weights)


def streamline_count(tck) -> int:
    """Number of streamlines in a .tck file (its ``count`` header field)."""
    with open(tck, "rb") as fh:
        for raw in fh:
            line = raw.decode("latin-1").strip()
            if line.startswith("count:"):
                return int(line.split(":", 1)[1])
            if line == "END":
                break
    raise ValueError(f"{tck}: no 'count' field in the .tck header")


# --------------------------------------------------------------------------------------
# connectomes
# --------------------------------------------------------------------------------------

def relabel_to_table(labels: np.ndarray, table_index) -> np.ndarray:
    """Map atlas values to node numbers 1..N in label-table order (0 elsewhere).

    Node ``k`` (1-based) is the ``k``-th row of the label table whatever its atlas
    value, so that row/column ``k-1`` of the connectome is that region.
    """
    labels = np.rint(np.asarray(labels)).astype(np.int64)
    index = np.asarray(table_index, dtype=np.int64)
    lut = np.zeros(max(int(labels.max(initial=0)), int(index.max())) + 1, dtype=np.int32)
    lut[index] = np.arange(1, index.size + 1, dtype=np.int32)
    out = np.zeros(labels.shape, dtype=np.int32)
    valid = labels >= 0
    out[valid] = lut[labels[valid]]
    return out


def read_mrtrix_matrix(path, n_regions: int) -> np.ndarray:
    """Read ``tck2connectome`` output (whitespace or comma separated) as N x N, zero-padded.

    ``tck2connectome`` sizes its matrix by the largest node present; regions missing at the
    end of the table (e.g. outside the field of view) become zero rows and columns.
    """
    rows = [r.replace(",", " ").split() for r in Path(path).read_text().splitlines()
            if r.strip() and not r.lstrip().startswith("#")]
    mat = np.array([[float(v) for v in r] for r in rows], dtype=float)
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise ValueError(f"{path}: tck2connectome matrix is not square: {mat.shape}")
    if mat.shape[0] > n_regions:
        raise ValueError(f"{path}: {mat.shape[0]} nodes but the atlas has {n_regions}")
    out = np.zeros((n_regions, n_regions))
    out[:mat.shape[0], :mat.shape[1]] = mat
    return out


def connectome(tck, nodes, out_tsv, *, n_regions: int, weight: str = "count", tck_weights=None,
               fa_image=None, log=None, nthreads: int = 1) -> np.ndarray:
    """``tck2connectome -symmetric -zero_diagonal`` written as our headerless N x N TSV.

    Parameters
    ----------
    tck : path
    nodes : path
        Node image with values 1..N in label-table order (:func:`relabel_to_table`).
    out_tsv : path
    n_regions : int
        N (rows of the label table).
    weight : {"count", "sift2", "length", "fa"}
        count: streamline count; sift2: sum of SIFT2 weights (``-tck_weights_in``);
        length: mean streamline length (``-scale_length -stat_edge mean``); fa: mean over
        streamlines of the streamline's mean FA (``tcksample -stat_tck mean``, then
        ``-scale_file -stat_edge mean``).
    tck_weights : path, optional
        SIFT2 weights (required for ``sift2``).
    fa_image : path, optional
        FA map (required for ``fa``).

    Returns
    -------
    numpy.ndarray (N, N)
    """
    from . import io

    if weight not in WEIGHTS:
        raise ValueError(f"weight must be one of {WEIGHTS}, got {weight!r}")
    with tempfile.TemporaryDirectory(prefix="sfc_conn_") as tmp:
        raw = Path(tmp) / "connectome.csv"
        cmd = ["tck2connectome", tck, nodes, raw, "-symmetric", "-zero_diagonal"]
        if weight == "sift2":
            if tck_weights is None:
                raise ValueError("weight 'sift2' needs tck_weights (tcksift2 output)")
            cmd += ["-tck_weights_in", tck_weights]
        elif weight == "length":
            cmd += ["-scale_length", "-stat_edge", "mean"]
        elif weight == "fa":
            if fa_image is None:
                raise ValueError("weight 'fa' needs fa_image")
            per_tck = Path(tmp) / "mean_fa.txt"
            mrtrix.run(["tcksample", tck, fa_image, per_tck, "-stat_tck", "mean"], log=log, nthreads=nthreads)
            cmd += ["-scale_file", per_tck, "-stat_edge", "mean"]
        mrtrix.run(cmd, log=log, nthreads=nthreads)
        mat = read_mrtrix_matrix(raw, n_regions)
    mat = 0.5 * (mat + mat.T)
    np.fill_diagonal(mat, 0.0)
    io.write_matrix(out_tsv, mat)
    return mat


# --------------------------------------------------------------------------------------
# registration into DWI space
# --------------------------------------------------------------------------------------

def register_t1_to_dwi(mean_b0, t1_brain, out_prefix, *, dwi_mask=None, seed: int = 42, quick: bool = False) -> dict:
    """Rigid T1w -> mean b0 registration (antspyx, Mattes mutual information, centre-of-mass start).

    Returns :func:`sfc.registration.register`'s dict; ``fwdtransforms`` take T1w-space images
    into DWI space.
    """
    from . import registration

    return registration.register(_masked_b0(mean_b0, dwi_mask), t1_brain, "Rigid", out_prefix=out_prefix,
                                 seed=seed, quick=quick)


def _masked_b0(mean_b0, dwi_mask):
    from . import registration

    b0 = registration.load(mean_b0)
    return b0 if dwi_mask is None else b0 * registration.load(dwi_mask).clone("float")


def check_t1_to_dwi(mean_b0, t1_brain, transform, dwi_mask, *, seed: int = 42) -> dict:
    """:func:`sfc.registration.second_start` for :func:`register_t1_to_dwi`'s result (same inputs).

    Returns the QC row ``{"second_start_mm", "registration_doubtful"}`` (distance over the DWI
    brain mask) and logs a warning when the registration is doubtful.
    """
    from . import registration

    res = registration.second_start(_masked_b0(mean_b0, dwi_mask), t1_brain, transform, distance_mask=dwi_mask,
                                    seed=seed)
    if res["doubtful"]:
        logger.warning("T1w -> DWI registration doubtful: a second start converged %.2f mm away (threshold %.1f mm); "
                       "look at the atlas-over-b0 picture in sub-*/qc before using this subject",
                       res["second_start_mm"], registration.DOUBTFUL_MM)
    return {"second_start_mm": res["second_start_mm"], "registration_doubtful": res["doubtful"]}


def atlas_to_dwi(atlas, reference, transforms, invert, table_index, out_nodes, *, mask=None) -> np.ndarray:
    """Atlas labels into DWI space (nearest neighbour), renumbered 1..N in label-table order.

    Parameters
    ----------
    atlas : path or image
        Atlas in its own (template or T1w) space.
    reference : path or image
        DWI-space grid (mean b0 or FA).
    transforms, invert : list
        ANTs transform list and ``whichtoinvert`` taking atlas space to DWI space.
    table_index : array-like
        ``index`` column of the label table (matrix order).
    out_nodes : path
        Written as int32 NIfTI, values 0..N.
    mask : path or image, optional
        DWI brain mask; nodes outside it are set to 0.

    Returns
    -------
    numpy.ndarray
        The node image.
    """
    import nibabel as nib

    from . import registration

    warped = registration.apply_labels(atlas, reference, transforms, invert)
    nii = registration.to_nibabel(warped)
    nodes = relabel_to_table(np.asarray(nii.dataobj), table_index)
    if mask is not None:
        nodes[registration.load(mask).numpy() <= 0] = 0
    out = nib.Nifti1Image(nodes.astype(np.int32), nii.affine)
    out.set_qform(nii.affine, code=1)
    out.set_sform(nii.affine, code=1)
    Path(out_nodes).parent.mkdir(parents=True, exist_ok=True)
    nib.save(out, os.fspath(out_nodes))
    return nodes


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def _log_line(log, text: str) -> None:
    logger.info(text)
    if log is None:
        return
    if hasattr(log, "write"):
        log.write(text + "\n")
        return
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(text + "\n")


def to_nifti(in_image, out_nii, *, log=None, datatype: str | None = None) -> str:
    """``mrconvert`` to NIfTI (for antspyx / nibabel)."""
    cmd = ["mrconvert", in_image, out_nii] + (["-datatype", datatype] if datatype else [])
    mrtrix.run(cmd, log=log, nthreads=1)
    return os.fspath(out_nii)


# --------------------------------------------------------------------------------------
# what one rule does (called by the thin scripts in workflow/scripts/dwi_*.py)
# --------------------------------------------------------------------------------------

def preprocess(dwi, bval, bvec, out_dwi, out_mask, out_b0, out_info, *, route: str = "bids",
               tracking: dict | None = None, weights=("count",), do_denoise: bool = True, do_degibbs: bool = True,
               eddy="auto", pe_dir: str = "j", readout_time: float = 0.1, bias: str = "n4",
               log=None, nthreads: int = 1, tmpdir=None) -> tuple[DwiInfo, dict]:
    """First DWI rule: validate, check the tracking plan, then preprocess.

    ``route="bids"``: ``mrconvert -fslgrad`` -> ``dwidenoise`` -> ``mrdegibbs`` ->
    ``dwifslpreproc`` (when ``eddy`` and FSL's eddy exist; else a log line) -> ``dwi2mask`` ->
    N4 bias correction (``bias="n4"``, antspyx; ``"none"`` skips with a log line).
    ``route="qsiprep"``: QSIPrep's preprocessed DWI is imported as is (then mask and mean b0).

    A broken series stops here with an :class:`InputError` naming the file, before any tool
    runs; so does a tracking configuration the data cannot support when ``tracking`` is given
    (the workflow leaves it None and checks the plan in dwi_fod / dwi_tractography, so that a
    change of tracking settings does not rerun the preprocessing).

    Returns
    -------
    (DwiInfo, dict or None)
        The validation summary (also written to ``out_info`` as JSON) and the tracking plan.
    """
    info = validate_dwi(dwi, bval, bvec)
    plan = None
    if tracking is not None:
        plan = check_tracking(info, tracking.get("algorithm", "iFOD2"), tracking.get("lmax"),
                              act=tracking.get("act", False), seeding=tracking.get("seeding", "dynamic"),
                              weights=tuple(weights))
    info.to_json(out_info)
    _log_line(log, f"DWI {dwi}: {info.n_volumes} volumes, {info.n_b0} b=0, shells {info.shells}, "
                   f"directions {info.n_directions}" + (f"; tracking plan {plan}" if plan else ""))
    with tempfile.TemporaryDirectory(prefix="sfc_dwipre_", dir=tmpdir) as tmp:
        t = Path(tmp)
        cur = import_dwi(dwi, bval, bvec, t / "raw.mif", log=log, nthreads=nthreads)
        if route == "qsiprep":
            _log_line(log, "input.dwi: qsiprep - denoising, Gibbs removal, eddy and bias correction were done by "
                           "QSIPrep; starting from its preprocessed DWI")
        else:
            if do_denoise:
                cur = denoise(cur, t / "den.mif", log=log, nthreads=nthreads)
            if do_degibbs:
                cur = degibbs(cur, t / "deg.mif", log=log, nthreads=nthreads)
            info.steps.update(denoise=bool(do_denoise), degibbs=bool(do_degibbs))
            info.steps["eddy"] = fslpreproc(cur, t / "eddy.mif", enabled=eddy, pe_dir=pe_dir,
                                            readout_time=readout_time, source=dwi, log=log, nthreads=nthreads)
            cur = os.fspath(t / "eddy.mif")
        mask_mif = brain_mask(cur, t / "mask.mif", log=log, nthreads=nthreads)
        if route != "qsiprep" and bias == "n4":
            cur = bias_correct_n4(cur, mask_mif, t / "bias.mif", log=log, nthreads=nthreads)
        elif route != "qsiprep":
            _log_line(log, "bias correction skipped (dwi.bias: none)")
        info.steps["bias"] = bias if route != "qsiprep" else "qsiprep"
        mrtrix.run(["mrconvert", cur, out_dwi], log=log, nthreads=nthreads)
        mrtrix.run(["mrconvert", mask_mif, out_mask, "-datatype", "uint8"], log=log, nthreads=nthreads)
        mean_b0(cur, out_b0, log=log, nthreads=nthreads)
    info.to_json(out_info)  # again, with the steps that ran (the QC table and report read them)
    return info, plan


def five_tt_to_dwi(five_tt, mean_b0_image, transforms, out_5tt, *, spacing=None) -> str:
    """Move a T1w-space 5TT image into alignment with the DWI (keeping a fine grid).

    The output grid covers the mean b0's field of view at ``spacing`` (default: the 5TT
    image's own voxel size), so ACT keeps anatomical detail; each tissue volume is
    resampled linearly and the five are renormalised to sum to 1 where any is non-zero.
    """
    import nibabel as nib

    from . import registration

    ants = registration._ants()
    src = nib.load(os.fspath(five_tt))
    data = np.asarray(src.dataobj, dtype=np.float32)
    b0 = registration.load(mean_b0_image)
    if spacing is None:
        spacing = tuple(float(z) for z in src.header.get_zooms()[:3])
    ref = ants.resample_image(b0, spacing, False, 0)
    vols = []
    for k in range(data.shape[3]):
        vol = ants.from_nibabel_nifti(nib.Nifti1Image(data[..., k], src.affine))
        vols.append(registration.apply(vol, ref, transforms).numpy())
    out = np.clip(np.stack(vols, axis=-1), 0, None)
    total = out.sum(axis=-1, keepdims=True)
    out = np.where(total > 0.5, out / np.maximum(total, 1e-6), 0.0).astype(np.float32)
    out[..., 4] = 0.0
    affine = registration.to_nibabel(ref).affine
    img = nib.Nifti1Image(out, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, os.fspath(out_5tt))
    return os.fspath(out_5tt)


def registration_qc(mean_b0_image, dwi_mask, t1_brain, t1_mask, transforms) -> dict:
    """How well the T1w sits on the DWI: NMI (mean b0 vs T1w brain in DWI space) and mask Dice."""
    from . import registration

    b0 = registration.load(mean_b0_image)
    mask = registration.load(dwi_mask).numpy() > 0
    t1_in_dwi = registration.apply(t1_brain, b0, transforms).numpy()
    t1_mask_in_dwi = registration.apply_labels(t1_mask, b0, transforms).numpy() > 0
    return {"nmi_b0_t1": registration.normalized_mutual_information(b0.numpy(), t1_in_dwi, mask=mask),
            "dice_t1mask_dwimask": registration.dice(t1_mask_in_dwi, mask)}
