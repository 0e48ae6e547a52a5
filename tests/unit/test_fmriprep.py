"""sfc.fmriprep: the fMRIPrep route, on an fMRIPrep-shaped fixture built here.

The fixture has fMRIPrep's file names and confound columns (trans_x ... rot_z
with _derivative1/_power2/_derivative1_power2, white_matter, csf,
global_signal (+ expansions), framewise_displacement with n/a first,
a_comp_cor_*, t_comp_cor_*, cosine*, non_steady_state_outlier00,
motion_outlier*), the confounds JSON sidecar nilearn needs for CompCor, an
MNI-space BOLD with its JSON sidecar and a brain mask. Its BOLD holds planted
region signals with a known correlation matrix, plus a strong motion artefact.
"""

import json
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from sfc import confounds as conf
from sfc import fmriprep, func
from sfc.errors import InputError

N_TIME, TR, N_REGIONS = 400, 2.0, 8
SPACE = "MNI152NLin6Asym"


def _dct(n, k):
    t = np.arange(n)
    return np.sqrt(2.0 / n) * np.cos(np.pi * (2 * t + 1) * k / (2 * n))


def make_fmriprep_subject(root, subject="01", seed=0, space=SPACE, drop_columns=(), tr=TR,
                          write_json=True, artefact=3.0):
    """Write one fMRIPrep-shaped subject; return (paths, truth) where truth is the planted FC."""
    rng = np.random.default_rng(seed)
    func_dir = root / f"sub-{subject}" / "func"
    func_dir.mkdir(parents=True, exist_ok=True)
    stem = f"sub-{subject}_task-rest"
    # --- planted region signals: x = L e, e AR(1) --------------------------------------
    mix = np.eye(N_REGIONS) + rng.normal(0, 0.6, (N_REGIONS, N_REGIONS)) * (rng.random((N_REGIONS, N_REGIONS)) < 0.5)
    cov = mix @ mix.T
    truth = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    e = np.zeros((N_TIME, N_REGIONS))
    white = rng.normal(size=(N_TIME, N_REGIONS))
    for t in range(N_TIME):
        e[t] = (0.8 * e[t - 1] if t else 0) + white[t]
    latent = e @ mix.T
    # --- motion: random walk + two jumps (FD > 0.5 mm) ---------------------------------------
    steps = np.column_stack([rng.normal(0, 0.03, (N_TIME, 3)), rng.normal(0, 0.0005, (N_TIME, 3))])
    steps[0] = 0
    steps[60, 0] += 0.9
    steps[100, 4] += 0.02  # 1 mm of arc on a 50 mm sphere
    motion = pd.DataFrame(np.cumsum(steps, axis=0), columns=conf.MOTION_COLUMNS)
    wm, csf, gs = rng.normal(size=(3, N_TIME))
    table = conf.confounds_table(motion, white_matter=wm, csf=csf, global_signal=gs)
    table["csf_wm"] = rng.normal(size=N_TIME)
    table["std_dvars"] = np.r_[np.nan, np.abs(rng.normal(1, 0.2, N_TIME - 1))]
    table["dvars"] = table["std_dvars"] * 20
    table["rmsd"] = np.r_[np.nan, np.abs(rng.normal(0.1, 0.02, N_TIME - 1))]
    meta = {}
    for prefix, mask, n in (("t_comp_cor", None, 3), ("c_comp_cor", "CSF", 2), ("w_comp_cor", "WM", 2),
                            ("a_comp_cor", "combined", 5)):
        cum = 0.0
        for k in range(n):
            col = f"{prefix}_{k:02d}"
            table[col] = rng.normal(size=N_TIME)
            var = 0.3 / (k + 1)
            cum += var
            meta[col] = {"CumulativeVarianceExplained": cum, "Method": "tCompCor" if mask is None else "aCompCor",
                         "Retained": True, "SingularValue": 100.0 / (k + 1), "VarianceExplained": var}
            if mask:
                meta[col]["Mask"] = mask
    for k in range(3):
        table[f"cosine{k:02d}"] = _dct(N_TIME, k + 1)
    table["non_steady_state_outlier00"] = np.eye(N_TIME)[0]
    fd = table["framewise_displacement"].to_numpy()
    for j, t in enumerate(np.nonzero(np.nan_to_num(fd) > 0.5)[0]):
        table[f"motion_outlier{j:02d}"] = np.eye(N_TIME)[t]
    table = table.drop(columns=list(drop_columns))
    conf_path = func_dir / f"{stem}_desc-confounds_timeseries.tsv"
    table.to_csv(conf_path, sep="\t", index=False, na_rep="n/a")
    if write_json:
        (func_dir / f"{stem}_desc-confounds_timeseries.json").write_text(json.dumps(meta, indent=1))
    # --- BOLD: 10x10x10 grid at 4 mm, 8 octant regions -----------------------------------------
    shape = (10, 10, 10)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = [-20, -20, -20]
    labels = np.zeros(shape, np.int16)
    for k, (i, j, l) in enumerate(np.ndindex(2, 2, 2)):
        labels[5 * i:5 * i + 5, 5 * j:5 * j + 5, 5 * l:5 * l + 5] = k + 1
    regs = table[conf.MOTION_COLUMNS].to_numpy()
    regs = (regs - regs.mean(0)) / regs.std(0)
    beta = rng.normal(0, artefact, (N_REGIONS, 6))
    data = np.zeros(shape + (N_TIME,), np.float32)
    for r in range(N_REGIONS):
        region = labels == r + 1
        series = 1000 + latent[:, r] + regs @ beta[r]
        data[region] = series + rng.normal(0, 0.5, (region.sum(), N_TIME))
    data[..., 0] += 300  # the non-steady-state volume
    bold = func_dir / f"{stem}_space-{space}_res-2_desc-preproc_bold.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), bold)
    (func_dir / f"{stem}_space-{space}_res-2_desc-preproc_bold.json").write_text(
        json.dumps({"RepetitionTime": tr, "SkullStripped": False} if tr else {"SkullStripped": False}))
    mask = np.ones(shape, np.uint8)
    mask[labels == 8] = 0  # region 8 outside the brain mask
    nib.save(nib.Nifti1Image(mask, affine), func_dir / f"{stem}_space-{space}_res-2_desc-brain_mask.nii.gz")
    atlas = nib.Nifti1Image(labels, affine)
    label_table = pd.DataFrame({"index": np.arange(1, N_REGIONS + 2),
                                "name": [f"R{k}" for k in range(1, N_REGIONS + 2)]})  # label 9 absent
    return {"bold": bold, "confounds": conf_path, "atlas": atlas, "labels": label_table, "motion": motion,
            "latent": latent}, truth


@pytest.fixture
def subject(tmp_path):
    return make_fmriprep_subject(tmp_path / "fmriprep")


def test_find_run_locates_bold_confounds_sidecar_and_mask(subject, tmp_path):
    files, _ = subject
    run = fmriprep.find_run(tmp_path / "fmriprep", "01")
    assert run.bold == str(files["bold"]) and run.confounds == str(files["confounds"])
    assert run.confounds_json.endswith("_desc-confounds_timeseries.json")
    assert run.mask.endswith("_desc-brain_mask.nii.gz") and run.space == SPACE
    assert fmriprep.bold_repetition_time(run) == TR


def test_find_run_prefers_nlin6_and_warns_for_nlin2009c(tmp_path):
    make_fmriprep_subject(tmp_path / "fp", space="MNI152NLin2009cAsym")
    with pytest.warns(UserWarning, match="MNI152NLin2009cAsym"):
        run = fmriprep.find_run(tmp_path / "fp", "01")
    assert run.space == "MNI152NLin2009cAsym"
    make_fmriprep_subject(tmp_path / "fp", space=SPACE)
    assert fmriprep.find_run(tmp_path / "fp", "01").space == SPACE


def test_find_run_without_bold_is_input_error_with_fix(tmp_path):
    with pytest.raises(InputError) as err:
        fmriprep.find_run(tmp_path / "fp", "02")
    assert "sub-02" in str(err.value) and "--output-spaces" in str(err.value)


def test_missing_repetition_time_in_fmriprep_sidecar_is_input_error(tmp_path):
    make_fmriprep_subject(tmp_path / "fp", tr=None)
    run = fmriprep.find_run(tmp_path / "fp", "01")
    with pytest.raises(InputError, match="RepetitionTime"):
        fmriprep.bold_repetition_time(run)


@pytest.mark.parametrize("name", ["24P", "24P+WM+CSF", "36P"])
def test_builtin_selector_matches_nilearn_load_confounds(subject, tmp_path, name):
    from nilearn.interfaces.fmriprep import load_confounds

    files, _ = subject
    strat = conf.strategy(name)
    ours = conf.select_confounds(fmriprep.read_confounds_tsv(files["confounds"]), strat, demean=False)
    theirs, _ = load_confounds(str(files["bold"]), strategy=strat.components, demean=False, **strat.kwargs)
    assert set(ours.columns) == set(theirs.columns) and len(ours.columns) == len(theirs.columns)
    np.testing.assert_allclose(ours[theirs.columns].to_numpy(), theirs.to_numpy(), rtol=1e-10, atol=1e-12)


def test_load_confounds_24p_drops_nonsteady_volume_and_scrubs_at_fd(subject, tmp_path):
    files, _ = subject
    run = fmriprep.find_run(tmp_path / "fmriprep", "01")
    regs, keep, fd = fmriprep.load_confounds(run, "24P", fd_threshold=0.5, scrub_min_segment=0)
    assert regs.shape == (N_TIME, 24)
    assert not regs.isna().to_numpy().any()
    assert not keep[0]  # non_steady_state_outlier00
    assert not keep[60] and not keep[100]  # the two planted jumps
    assert keep.sum() == N_TIME - 3
    assert fd[0] == 0.0 and fd[60] > 0.9


def test_acompcor_takes_combined_components_and_cosines_from_json(subject, tmp_path):
    run = fmriprep.find_run(tmp_path / "fmriprep", "01")
    regs, _, _ = fmriprep.load_confounds(run, "aCompCor")
    cols = set(regs.columns)
    assert {f"a_comp_cor_{k:02d}" for k in range(5)} <= cols
    assert not any(c.startswith(("c_comp_cor", "w_comp_cor", "t_comp_cor")) for c in cols)
    assert {"cosine00", "cosine01", "cosine02"} <= cols
    assert len(cols) == 24 + 5 + 3


def test_acompcor_without_json_sidecar_is_input_error(tmp_path):
    make_fmriprep_subject(tmp_path / "fp", write_json=False)
    run = fmriprep.find_run(tmp_path / "fp", "01")
    with pytest.raises(InputError, match="JSON sidecar"):
        fmriprep.load_confounds(run, "aCompCor")


def test_confounds_missing_columns_is_input_error_naming_file_and_columns(tmp_path):
    make_fmriprep_subject(tmp_path / "fp", drop_columns=["rot_z_derivative1", "csf"])
    run = fmriprep.find_run(tmp_path / "fp", "01")
    with pytest.raises(InputError) as err:
        fmriprep.load_confounds(run, "24P+WM+CSF")
    msg = str(err.value)
    assert run.confounds in msg and "rot_z_derivative1" in msg and "'csf'" in msg and "Fix:" in msg
    regs, _, _ = fmriprep.load_confounds(run, "6P")  # a strategy whose columns exist still works
    assert regs.shape[1] == 6


def _fc_for(run, files, strategy):
    regs, keep, _ = fmriprep.load_confounds(run, strategy)
    settings = func.DenoiseSettings(confounds=strategy)
    bold = func.load_bold(run.bold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", func.RegionWarning)
        return func.connectivity(bold, files["atlas"], files["labels"], fmriprep.bold_repetition_time(run),
                                 confounds=regs, keep=keep, settings=settings, mask_img=nib.load(run.mask),
                                 path=run.bold)


def test_fmriprep_route_recovers_planted_fc_and_marks_missing_regions(subject, tmp_path):
    files, truth = subject
    run = fmriprep.find_run(tmp_path / "fmriprep", "01")
    res = _fc_for(run, files, "24P")
    fc = res.fc
    assert fc.shape == (9, 9)
    assert res.missing == [8, 9]  # 8 outside the brain mask, 9 not in the image
    assert np.isnan(fc[7]).all() and np.isnan(fc[:, 8]).all()
    # the non-steady volume and the 2 jumps are censored, no kept run is shorter than 5 volumes
    assert res.timeseries.shape == (N_TIME - 3, 9)
    # the artefact lies in the span of the 24 regressors, so 24P must give the FC of the planted
    # signals put through the same filter and scrubbing (up to the voxel noise and 24 lost dof)
    _, keep, _ = fmriprep.load_confounds(run, "24P")
    assert keep.sum() == N_TIME - 3
    clean_latent = func.clean_signals(files["latent"][:, :7], TR, keep=keep)
    reference = func.correlation_matrix(clean_latent)
    np.testing.assert_allclose(fc[:7, :7], reference, atol=0.2)
    iu = np.triu_indices(7, 1)
    rho_24p = spearmanr(fc[:7, :7][iu], truth[:7, :7][iu]).statistic
    fc_none = _fc_for(run, files, "none").fc
    assert np.abs(fc_none[:7, :7] - reference).max() > 0.3  # without regression the artefact dominates
    assert rho_24p > 0.7  # and the planted structure shows through 400 band-passed volumes
