# Resting-state BOLD -> region time series, FC per atlas, and per-subject QC.
#
# Built-in route (input.func: bids): func_preprocess (dummy volumes, motion correction,
# BOLD->T1w, confounds) -> func_connectivity (every atlas in one job; each pulled onto the BOLD grid
# through BOLD->T1w and the anat stage's T1w->MNI transforms) + func_qc.
# fMRIPrep route (input.func: fmriprep): func_connectivity and func_qc read fMRIPrep's
# MNI-space BOLD and confounds directly.


include: "func_common.smk"


rule func_preprocess:
    input:
        bold=lambda w: scans(w).bold[0].path,
        t1w=rules.anat_preprocess.output.brain,
        mask=rules.anat_preprocess.output.mask,
        dseg=rules.anat_5tt.output.five_tt,
    output:
        bold=temp(FUNC_PRE["bold"]),
        boldref=FUNC_PRE["boldref"],
        dseg=FUNC_PRE["dseg"],
        confounds=FUNC_PRE["confounds"],
        xfm=FUNC_PRE["xfm"],
        register=FUNC_PRE["register"],
    log:
        paths.subject_file(LOGS, "func", "func_preprocess.log", "{subject}", SES),
    benchmark:
        paths.subject_file(BENCH, "func", "func_preprocess.tsv", "{subject}", SES)
    conda:
        "../../envs/nilearn.yaml"
    # one: antspyx registers on one ITK thread (sfc sets it), for the same numbers on any machine
    threads: 1
    resources:
        **sized("func_preprocess"),
    params:
        dummy_volumes=config["func"]["dummy_volumes"],
        fd_radius=config["func"]["fd_radius"],
        wm_labels=[3],
        csf_labels=[1],
        seed=config["seed"],
    script:
        "../scripts/func_preprocess.py"


rule func_connectivity:
    input:
        atlas=ATLAS_IMAGES,
        labels=ATLAS_LABELS,
        **bold_inputs(
            "bold", "boldref", "confounds", "xfm", "anat_affine", "anat_inverse_warp"
        ),
    output:
        fc=per_atlas(paths.fc_matrix(OUT, "{subject}", SES, "{atlas}")),
        timeseries=per_atlas(paths.timeseries(OUT, "{subject}", SES, "{atlas}")),
        plot=per_atlas(sfc_func.fc_plot_path(OUT, "{subject}", SES, "{atlas}")),
    log:
        paths.subject_file(LOGS, "func", "func_connectivity.log", "{subject}", SES),
    benchmark:
        paths.subject_file(BENCH, "func", "func_connectivity.tsv", "{subject}", SES)
    conda:
        "../../envs/nilearn.yaml"
    threads: 1
    resources:
        **sized("func_connectivity"),
    params:
        atlases=ATLASES,
        route=FUNC_ROUTE,
        func=config["func"],
        tr=func_tr if FUNC_ROUTE == "bids" else None,
        anat_prefix=lambda w: FUNC_ANAT_XFM.format(**dict(w.items())),
        run=func_run_params if FUNC_ROUTE == "fmriprep" else None,
    script:
        "../scripts/func_connectivity.py"


rule func_qc:
    input:
        **bold_inputs("bold", "confounds", "dseg"),
    output:
        summary=FUNC_QC["summary"],
        motion=FUNC_QC["motion"],
        fd_plot=FUNC_QC["fd_plot"],
        carpet=FUNC_QC["carpet"],
    log:
        paths.subject_file(LOGS, "func", "func_qc.log", "{subject}", SES),
    benchmark:
        paths.subject_file(BENCH, "func", "func_qc.tsv", "{subject}", SES)
    conda:
        "../../envs/nilearn.yaml"
    threads: 1
    resources:
        **sized("func_qc"),
    params:
        route=FUNC_ROUTE,
        func=config["func"],
        tr=func_tr if FUNC_ROUTE == "bids" else None,
        dummy_volumes=config["func"]["dummy_volumes"],
        run=func_run_params if FUNC_ROUTE == "fmriprep" else None,
    script:
        "../scripts/func_qc.py"


if FUNC_ROUTE is not None:
    TARGETS += [paths.fc_matrix(OUT, s, t, a) for s, t in UNITS for a in ATLASES]
    TARGETS += [sfc_func.qc_files(OUT, s, t)["summary"] for s, t in UNITS]
    QC_EXCLUSION_FILES += [sfc_func.qc_files(OUT, s, t)["summary"] for s, t in UNITS]
