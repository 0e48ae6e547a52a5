# Diffusion MRI -> structural connectomes (MRtrix3; antspyx for N4 and registration).
# Needs anat.smk (included before this file: constants in structural_common.smk).
#
# dwi_preprocess (validate + denoise/degibbs/[eddy]/mask/N4; or QSIPrep's DWI)
# -> dwi_tensor (FA) -> [dwi_fod] -> dwi_register (T1w->DWI rigid) -> dwi_atlas (all atlases)
# -> [dwi_5tt for ACT] -> dwi_tractography -> [dwi_sift2] -> dwi_connectome (per atlas, all
# weights) -> dwi_qc. The .tck is temp() unless dwi.tracking.keep_tck.
# The tracking plan (what the data allow: lmax, response, FOD) is checked against the DWI's
# validation summary by the first job that needs it (dwi_fod or dwi_tractography), so that a
# change of tracking settings does not rerun the preprocessing.


rule dwi_preprocess:
    input:
        unpack(dwi_raw_inputs),
    output:
        dwi=DWI["dwi"],
        mask=DWI["mask"],
        b0=DWI["b0"],
        info=DWI["info"],
    log:
        log_file("dwi", "dwi_preprocess"),
    benchmark:
        bench_file("dwi", "dwi_preprocess")
    conda:
        "../../envs/mrtrix.yaml"
    threads: DWI_CFG["nthreads"]
    resources:
        **sized("dwi_preprocess"),
    params:
        route=DWI_ROUTE,
        denoise=DWI_CFG["denoise"],
        degibbs=DWI_CFG["degibbs"],
        eddy=DWI_CFG["eddy"],
        pe_dir=DWI_CFG["pe_dir"],
        readout_time=DWI_CFG["readout_time"],
        bias=DWI_CFG["bias"],
    script:
        "../scripts/dwi_preprocess.py"


rule dwi_tensor:
    input:
        dwi=rules.dwi_preprocess.output.dwi,
        mask=rules.dwi_preprocess.output.mask,
    output:
        fa=DWI["fa"],
        md=DWI["md"],
        png=report(
            DWI_QC["fa_png"], caption="../report/dwi_fa.rst", category="QC: structural"
        ),
    log:
        log_file("dwi", "dwi_tensor"),
    benchmark:
        bench_file("dwi", "dwi_tensor")
    conda:
        "../../envs/mrtrix.yaml"
    threads: DWI_CFG["nthreads"]
    resources:
        **sized("dwi_tensor"),
    script:
        "../scripts/dwi_tensor.py"


rule dwi_fod:
    input:
        dwi=rules.dwi_preprocess.output.dwi,
        mask=rules.dwi_preprocess.output.mask,
        info=rules.dwi_preprocess.output.info,
    output:
        response=DWI["response"],
        fod=DWI["fod"],
    log:
        log_file("dwi", "dwi_fod"),
    benchmark:
        bench_file("dwi", "dwi_fod")
    conda:
        "../../envs/mrtrix.yaml"
    threads: DWI_CFG["nthreads"]
    resources:
        **sized("dwi_fod"),
    params:
        tracking=FOD_TRACKING,
        weights=SC_WEIGHTS,
        response=DWI_CFG.get("response", "auto"),
    script:
        "../scripts/dwi_fod.py"


rule dwi_register:
    input:
        b0=rules.dwi_preprocess.output.b0,
        mask=rules.dwi_preprocess.output.mask,
        t1_brain=rules.anat_preprocess.output.brain,
        t1_mask=rules.anat_preprocess.output.mask,
    output:
        xfm=DWI["xfm"],
        qc=DWI_QC["register"],
    log:
        log_file("dwi", "dwi_register"),
    benchmark:
        bench_file("dwi", "dwi_register")
    conda:
        "../../envs/mrtrix.yaml"
    threads: 1
    resources:
        **sized("dwi_register"),
    params:
        seed=config["seed"],
    script:
        "../scripts/dwi_register.py"


rule dwi_atlas:
    input:
        atlas=ATLAS_IMAGES,
        labels=ATLAS_LABELS,
        b0=rules.dwi_preprocess.output.b0,
        mask=rules.dwi_preprocess.output.mask,
        xfm=rules.dwi_register.output.xfm,
        anat_affine=rules.anat_preprocess.output.affine,
        anat_inverse_warp=rules.anat_preprocess.output.inverse_warp,
    output:
        nodes=per_atlas(DWI["nodes"]),
        png=report(
            per_atlas(DWI_QC["atlas_png"]),
            caption="../report/dwi_atlas.rst",
            category="QC: structural",
        ),
    log:
        log_file("dwi", "dwi_atlas"),
    benchmark:
        bench_file("dwi", "dwi_atlas")
    conda:
        "../../envs/mrtrix.yaml"
    threads: 1
    resources:
        **sized("dwi_atlas"),
    params:
        atlases=ATLASES,
    script:
        "../scripts/dwi_atlas.py"


rule dwi_5tt:
    input:
        five_tt=rules.anat_5tt.output.five_tt,
        b0=rules.dwi_preprocess.output.b0,
        xfm=rules.dwi_register.output.xfm,
    output:
        five_tt=DWI["five_tt"],
    log:
        log_file("dwi", "dwi_5tt"),
    benchmark:
        bench_file("dwi", "dwi_5tt")
    conda:
        "../../envs/mrtrix.yaml"
    threads: 1
    resources:
        **sized("dwi_5tt"),
    script:
        "../scripts/dwi_5tt.py"


rule dwi_tractography:
    input:
        dwi=rules.dwi_preprocess.output.dwi,
        mask=rules.dwi_preprocess.output.mask,
        info=rules.dwi_preprocess.output.info,
        # FOD for the FOD-based algorithms, 5TT for ACT (both fixed by the config at parse time)
        **({} if TENSOR_TRACKING else {"fod": rules.dwi_fod.output.fod}),
        **({"five_tt": rules.dwi_5tt.output.five_tt} if ACT else {}),
    output:
        tck=DWI["tck"] if TRACKING["keep_tck"] else temp(DWI["tck"]),
        qc=DWI_QC["tracking"],
    log:
        log_file("dwi", "dwi_tractography"),
    benchmark:
        bench_file("dwi", "dwi_tractography")
    conda:
        "../../envs/mrtrix.yaml"
    # one thread per chunk (sfc.dwi.tracking_threads); nthreads when reproducible is false
    threads: sfc_dwi.tracking_threads(TRACKING, DWI_CFG["nthreads"])
    resources:
        **sized("dwi_tractography"),
    params:
        tracking=TRACKING,
        weights=SC_WEIGHTS,
        seed=config["seed"],
    script:
        "../scripts/dwi_tractography.py"


rule dwi_sift2:
    input:
        tck=rules.dwi_tractography.output.tck,
        fod=rules.dwi_fod.output.fod,
        **({"five_tt": rules.dwi_5tt.output.five_tt} if ACT else {}),
    output:
        weights=DWI["sift2"],
    log:
        log_file("dwi", "dwi_sift2"),
    benchmark:
        bench_file("dwi", "dwi_sift2")
    conda:
        "../../envs/mrtrix.yaml"
    threads: DWI_CFG["nthreads"]
    resources:
        **sized("dwi_sift2"),
    script:
        "../scripts/dwi_sift2.py"


rule dwi_connectome:
    input:
        tck=rules.dwi_tractography.output.tck,
        nodes=DWI["nodes"],
        fa=rules.dwi_tensor.output.fa,
        labels=rules.prepare_atlas.output.labels,
        **({"sift2": rules.dwi_sift2.output.weights} if "sift2" in SC_WEIGHTS else {}),
    output:
        **SC_OUTPUTS,
    log:
        log_file("dwi", "dwi_connectome_atlas-{atlas}"),
    benchmark:
        bench_file("dwi", "dwi_connectome_atlas-{atlas}")
    conda:
        "../../envs/mrtrix.yaml"
    threads: 1
    resources:
        **sized("dwi_connectome"),
    params:
        weights=SC_WEIGHTS,
    script:
        "../scripts/dwi_connectome.py"


rule dwi_qc:
    input:
        anat=rules.anat_preprocess.output.qc,
        register=rules.dwi_register.output.qc,
        tracking=rules.dwi_tractography.output.qc,
        info=rules.dwi_preprocess.output.info,
        fa=rules.dwi_tensor.output.fa,
        mask=rules.dwi_preprocess.output.mask,
    output:
        qc=DWI_QC["summary"],
    log:
        log_file("dwi", "dwi_qc"),
    benchmark:
        bench_file("dwi", "dwi_qc")
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        **sized("dwi_qc"),
    script:
        "../scripts/dwi_qc.py"


if not CONNECTOME_INPUT:
    TARGETS += [
        SC_OUTPUTS[f"sc_{w}"].format(subject=s, session=t, atlas=a)
        for s, t in UNITS
        for a in ATLASES
        for w in SC_WEIGHTS
    ]
    TARGETS += [DWI_QC["summary"].format(subject=s, session=t) for s, t in UNITS]
    TARGETS += [
        DWI_QC["atlas_png"].format(subject=s, session=t, atlas=a)
        for s, t in UNITS
        for a in ATLASES
    ]
