# T1w anatomy: N4 + T1w->MNI registration + brain mask (anat_preprocess), 5TT tissue image
# (anat_5tt; used by ACT and by the func stage's WM/CSF confounds), atlas in T1w space + QC
# picture (anat_atlas, one job for all atlases). All antspyx; `5ttgen fsl` only when FSL is installed.


include: "structural_common.smk"


rule anat_preprocess:
    input:
        t1w=lambda w: scans(w).t1w,
    output:
        t1w=ANAT["t1w"],
        mask=ANAT["mask"],
        brain=ANAT["brain"],
        affine=ANAT["affine"],
        warp=ANAT["warp"],
        inverse_warp=ANAT["inverse_warp"],
        qc=ANAT["qc"],
    log:
        log_file("anat", "anat_preprocess"),
    benchmark:
        bench_file("anat", "anat_preprocess")
    conda:
        "../../envs/ants.yaml"
    threads: 1
    resources:
        **sized("anat_preprocess"),
    params:
        template_dir=ANAT_CFG["template_dir"],
        # whether the FSL templates may be downloaded decides which template is used; where
        # they come from (atlas_mirror) does not, so the script reads that from the config
        download=config["atlas_download"],
        transform=ANAT_CFG["registration"],
        seed=config["seed"],
    script:
        "../scripts/anat_preprocess.py"


rule anat_5tt:
    input:
        t1w=rules.anat_preprocess.output.t1w,
        brain=rules.anat_preprocess.output.brain,
        mask=rules.anat_preprocess.output.mask,
    output:
        five_tt=ANAT["five_tt"],
    log:
        log_file("anat", "anat_5tt"),
    benchmark:
        bench_file("anat", "anat_5tt")
    conda:
        "../../envs/mrtrix.yaml"
    threads: 1
    resources:
        **sized("anat_5tt"),
    params:
        use_fsl=ANAT_CFG["use_fsl"],
        seed=config["seed"],
    script:
        "../scripts/anat_5tt.py"


rule anat_atlas:
    input:
        atlas=ATLAS_IMAGES,
        t1w=rules.anat_preprocess.output.t1w,
        affine=rules.anat_preprocess.output.affine,
        warp=rules.anat_preprocess.output.warp,
        inverse_warp=rules.anat_preprocess.output.inverse_warp,
    output:
        dseg=per_atlas(ANAT["dseg"]),
        png=report(
            per_atlas(ANAT["png"]),
            caption="../report/anat_atlas.rst",
            category="QC: structural",
        ),
    log:
        log_file("anat", "anat_atlas"),
    benchmark:
        bench_file("anat", "anat_atlas")
    conda:
        "../../envs/ants.yaml"
    threads: 1
    resources:
        **sized("anat_atlas"),
    params:
        atlases=ATLASES,
    script:
        "../scripts/anat_atlas.py"


if not CONNECTOME_INPUT:
    TARGETS += [
        ANAT["png"].format(subject=s, session=t, atlas=a)
        for s, t in UNITS
        for a in ATLASES
    ]
