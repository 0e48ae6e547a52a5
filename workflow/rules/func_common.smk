# Constants and input functions of the func stage (included by func.smk; kept apart from
# the rules because snakemake --lint asks for functions and rules in separate files).

import dataclasses
import functools

from sfc import fmriprep as sfc_fmriprep  # noqa: E402
from sfc import func as sfc_func  # noqa: E402

FUNC_ROUTE = None if CONNECTOME_INPUT else config["input"]["func"]

# From the anat stage (structural_common.smk's ANAT, so func.smk is included after anat.smk):
# bias-corrected brain, brain mask, 5TT image and the T1w->MNI transforms
# (<prefix>0GenericAffine.mat, 1Warp, 1InverseWarp).
FUNC_ANAT_XFM = ANAT["affine"][: -len("0GenericAffine.mat")]


def func_file(suffix):
    """Intermediate of the built-in route: sub-*/func/sub-*_task-rest_<suffix>."""
    return paths.subject_file(OUT, "func", f"task-rest_{suffix}", "{subject}", SES)


FUNC_PRE = {
    "bold": func_file("space-bold_desc-preproc_bold.nii.gz"),
    "boldref": func_file("space-bold_boldref.nii.gz"),
    "dseg": func_file("space-bold_dseg.nii.gz"),
    "confounds": func_file("desc-confounds_timeseries.tsv"),
    "xfm": func_file("from-bold_to-T1w_0GenericAffine.mat"),
    # BOLD -> T1w check (sfc.func.check_coregistration), a row of the report's QC table
    "register": paths.subject_file(OUT, "qc", "task-rest_desc-boldtot1w_qc.tsv", "{subject}", SES),
}
FUNC_QC = sfc_func.qc_files(OUT, "{subject}", SES)


@functools.lru_cache(maxsize=None)
def _fmriprep_run(subject, session):
    try:
        return sfc_fmriprep.find_run(
            config["derivatives"]["fmriprep"], subject, session, task=config["task"]
        )
    except InputError as error:
        fail(error)


def fmriprep_run(wildcards):
    return _fmriprep_run(wildcards.subject, wildcards.get("session"))


def func_tr(wildcards):
    return scans(wildcards).bold[0].repetition_time


def bold_inputs(*keys):
    """The named inputs ``keys`` of a rule reading the BOLD run.

    fMRIPrep route: its BOLD and confounds, found per subject (input functions; other keys
    do not apply). Built-in route: func_preprocess's outputs and the anat stage's T1w->MNI
    transforms (``anat_affine``, ``anat_inverse_warp``) as rule references, fixed at parse
    time, so building the DAG looks up no producers for them.
    """
    if FUNC_ROUTE == "fmriprep":
        run = {
            "bold": lambda w: fmriprep_run(w).bold,
            "confounds": lambda w: fmriprep_run(w).confounds,
        }
        return {k: run[k] for k in keys if k in run}
    pre, anat = rules.func_preprocess.output, rules.anat_preprocess.output
    files = {k: getattr(pre, k) for k in FUNC_PRE}
    files.update(anat_affine=anat.affine, anat_inverse_warp=anat.inverse_warp)
    return {k: files[k] for k in keys}


def func_run_params(wildcards):
    return (
        dataclasses.asdict(fmriprep_run(wildcards))
        if FUNC_ROUTE == "fmriprep"
        else None
    )
