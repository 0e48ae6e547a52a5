# Constants, config defaults and input functions of the anat and dwi stages (included once,
# by anat.smk; kept apart from the rules because snakemake --lint asks for functions and rules
# in separate files).

import functools

from sfc import dwi as sfc_dwi  # noqa: E402


# The anat: and dwi: blocks of the config (defaults in config/config.yaml, documented in
# config/README.md, validated by the schema).
ANAT_CFG = config["anat"]
DWI_CFG = config["dwi"]
DWI_ROUTE = None if CONNECTOME_INPUT else config["input"]["dwi"]
# act: auto is decided here, once for the whole run (sfc.dwi.act_in_force): the rules below
# and their params see true or false.
TRACKING = {**DWI_CFG["tracking"], "act": sfc_dwi.act_in_force(DWI_CFG["tracking"]["act"], ANAT_CFG["use_fsl"])}
# What dwi_fod checks the tracking plan with: a change of streamlines or chunks must not rerun it.
FOD_TRACKING = {k: TRACKING[k] for k in ("algorithm", "lmax", "act", "seeding")}
SC_WEIGHTS = list(dict.fromkeys([*DWI_CFG["weights"], config["sc_weight"]]))
# Tensor algorithms track without FODs (dwi_tractography then needs no dwi_fod output).
TENSOR_TRACKING = TRACKING["algorithm"] in sfc_dwi.TENSOR_ALGORITHMS
NEEDS_FOD = not TENSOR_TRACKING or "sift2" in SC_WEIGHTS
ACT = TRACKING["act"]
if not CONNECTOME_INPUT:
    # the plan in one line of the run log (what a methods section needs to know)
    _act = ("on" if TRACKING["act"] else "off") + (
        (" (auto: FSL's FAST and FIRST found for 5ttgen fsl)" if TRACKING["act"] else
         " (auto: FSL's FAST and FIRST are not on PATH, no 5TT image with subcortical grey matter)")
        if DWI_CFG["tracking"]["act"] == "auto" else "")
    _chunks = (f"in {TRACKING['chunks']} single-threaded chunk(s)" if TRACKING.get("reproducible", True)
               else f"one tckgen on {DWI_CFG['nthreads']} threads (not reproducible)")
    sys.stderr.write(f"sfc: tractography: {TRACKING['algorithm']}, {TRACKING['seeding']} seeding, "
                     f"{TRACKING['streamlines']:,} streamlines {_chunks}, ACT {_act}; SC weights "
                     f"{', '.join(SC_WEIGHTS)} (analysed: {config['sc_weight']}); eddy {DWI_CFG['eddy']}, "
                     f"mrdegibbs {DWI_CFG['degibbs']}, response {DWI_CFG['response']}\n")
TEMPLATE_SPACE = "MNI152NLin6Asym"


def anat_file(suffix):
    return paths.subject_file(OUT, "anat", suffix, "{subject}", SES)


def dwi_file(suffix):
    return paths.subject_file(OUT, "dwi", suffix, "{subject}", SES)


def qc_file(suffix):
    return paths.subject_file(OUT, "qc", suffix, "{subject}", SES)


def log_file(stage, name):
    return paths.subject_file(LOGS, stage, f"{name}.log", "{subject}", SES)


def bench_file(stage, name):
    return paths.subject_file(BENCH, stage, f"{name}.tsv", "{subject}", SES)


ANAT = {
    "t1w": anat_file("desc-preproc_T1w.nii.gz"),
    "mask": anat_file("desc-brain_mask.nii.gz"),
    "brain": anat_file("desc-brain_T1w.nii.gz"),
    "affine": anat_file(f"from-T1w_to-{TEMPLATE_SPACE}_0GenericAffine.mat"),
    "warp": anat_file(f"from-T1w_to-{TEMPLATE_SPACE}_1Warp.nii.gz"),
    "inverse_warp": anat_file(f"from-T1w_to-{TEMPLATE_SPACE}_1InverseWarp.nii.gz"),
    "five_tt": anat_file("desc-5tt_probseg.nii.gz"),
    "dseg": anat_file("space-T1w_atlas-{atlas}_dseg.nii.gz"),
    "qc": qc_file("desc-anat_qc.tsv"),
    "png": qc_file("space-T1w_atlas-{atlas}_overlay.png"),
}
DWI = {
    "dwi": dwi_file("space-dwi_desc-preproc_dwi.mif"),
    "mask": dwi_file("space-dwi_desc-brain_mask.nii.gz"),
    "b0": dwi_file("space-dwi_desc-meanb0_dwiref.nii.gz"),
    "info": dwi_file("desc-validation_dwi.json"),
    "fa": dwi_file("space-dwi_model-tensor_param-fa_dwimap.nii.gz"),
    "md": dwi_file("space-dwi_model-tensor_param-md_dwimap.nii.gz"),
    "response": dwi_file("desc-wm_response.txt"),
    "fod": dwi_file("space-dwi_model-csd_label-WM_fod.mif"),
    "xfm": dwi_file("from-T1w_to-dwi_0GenericAffine.mat"),
    "five_tt": dwi_file("space-dwi_desc-5tt_probseg.nii.gz"),
    "nodes": dwi_file("space-dwi_atlas-{atlas}_dseg.nii.gz"),
    "tck": dwi_file("desc-tracks_tractography.tck"),
    "sift2": dwi_file("desc-sift2_streamlineweights.txt"),
}
DWI_QC = {
    "fa_png": qc_file("space-dwi_param-fa_dwimap.png"),
    "atlas_png": qc_file("space-dwi_atlas-{atlas}_overlay.png"),
    "register": qc_file("desc-t1wtodwi_qc.tsv"),
    "tracking": qc_file("desc-tracking_qc.tsv"),
    "summary": qc_file("desc-structural_qc.tsv"),
}


@functools.lru_cache(maxsize=None)
def _qsiprep_dwi(subject, session):
    try:
        return sfc_dwi.find_qsiprep(config["derivatives"]["qsiprep"], subject, session)
    except InputError as error:
        fail(error)


def dwi_series(subject, session):
    """(DWI, bval, bvec): BIDS raw, or QSIPrep's preprocessed DWI (input.dwi: qsiprep)."""
    if DWI_ROUTE == "qsiprep":
        return _qsiprep_dwi(subject, session)
    s = DISCOVERY.kept[(subject, session)]
    return s.dwi, s.bval, s.bvec


def dwi_raw_inputs(wildcards):
    """The DWI series and FSL gradients of the job's subject (:func:`dwi_series`)."""
    dwi, bval, bvec = dwi_series(wildcards.subject, wildcards.get("session"))
    return {"dwi": dwi, "bval": bval, "bvec": bvec}


# output names sc_<weight> ("count" is reserved by Snakemake)
SC_OUTPUTS = {
    f"sc_{w}": paths.sc_matrix(OUT, "{subject}", SES, "{atlas}", w) for w in SC_WEIGHTS
}
