# Group statistics per atlas and coupling method: the group SFC table, ComBat across
# sites (when a site column is configured), ANCOVA with post hoc contrasts and FDR,
# clinical correlations within patient groups, and gyri that replicate across atlases.

STATS = config["stats"]


rule assemble_group_sfc:
    input:
        # The coupling job's list of the tables it wrote, not the tables themselves: planning
        # then checks one file, not N against the coupling job's 2N inputs (quadratic in N).
        listing=rules.coupling.output.listing if UNITS else [],
        labels=rules.prepare_atlas.output.labels,
        excluded=rules.write_excluded.output[0],
    output:
        paths.group_sfc(OUT, "{atlas}", "{method}"),
    log:
        f"{LOGS}/group/assemble_atlas-{{atlas}}_desc-{{method}}.log",
    benchmark:
        f"{BENCH}/group/assemble_atlas-{{atlas}}_desc-{{method}}.tsv"
    wildcard_constraints:
        method="spearman|communication|sdi",
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        # measured at 308 subjects: 200 MB, 3 s (one TSV read per subject)
        **sized_by_units(per_unit_mb=0.1, per_unit_s=0.05, base_mb=500),
    params:
        participant_ids=UNIT_IDS,
        # SDI, a ratio of energies, is right-skewed: the fits take log2(SDI) (0: balanced)
        log2=lambda w: w.method == "sdi" and STATS["sdi_log2"],
    script:
        "../scripts/assemble_group_sfc.py"


if SESSION_COLUMNS:

    rule session_participants:
        input:
            participants=PARTICIPANTS_TSV,
            sessions=sorted(
                {
                    sessions_path(config["bids_dir"], s)
                    for s, _ in UNITS
                    if os.path.isfile(sessions_path(config["bids_dir"], s))
                }
            ),
        output:
            GROUP_PARTICIPANTS,
        log:
            f"{LOGS}/group/session_participants.log",
        benchmark:
            f"{BENCH}/group/session_participants.tsv"
        conda:
            "../../envs/core.yaml"
        threads: 1
        resources:
            **sized_by_units(per_unit_mb=0.1, per_unit_s=0.01, base_mb=500, base_min=5),
        params:
            units=UNITS,
            bids_dir=config["bids_dir"],
            group_column=config["group_column"],
            groups=config["groups"],
            columns=configured_columns(),
            session_columns=SESSION_COLUMNS,
        script:
            "../scripts/session_participants.py"


rule group_stats:
    input:
        sfc=paths.group_sfc(OUT, "{atlas}", "{method}"),
        participants=GROUP_PARTICIPANTS,
        labels=paths.atlas_labels(OUT, "{atlas}"),
    output:
        table=paths.group_stats(OUT, "{atlas}", "{method}"),
        sidecar=paths.sidecar(paths.group_stats(OUT, "{atlas}", "{method}")),
    log:
        f"{LOGS}/group/stats_atlas-{{atlas}}_desc-{{method}}.log",
    benchmark:
        f"{BENCH}/group/stats_atlas-{{atlas}}_desc-{{method}}.tsv"
    wildcard_constraints:
        method="spearman|communication|sdi",
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        # measured at 308 subjects: 210 MB, 2 s (an ANCOVA per region)
        **sized_by_units(per_unit_mb=0.1, per_unit_s=0.05, base_mb=500),
    params:
        group_column=config["group_column"],
        groups=config["groups"],
        covariates=config["covariates"],
        site_column=config["site_column"],
        harmonize=STATS["harmonize"],
        # the FDR level gating the post hoc tests (p_holm_*)
        alpha=STATS["alpha"],
    script:
        "../scripts/group_stats.py"


rule clinical_correlations:
    input:
        sfc=paths.group_sfc(OUT, "{atlas}", "{method}"),
        participants=GROUP_PARTICIPANTS,
        labels=paths.atlas_labels(OUT, "{atlas}"),
        groupstats=paths.group_stats(OUT, "{atlas}", "{method}"),
    output:
        table=paths.group_clinical(OUT, "{atlas}", "{method}"),
        sidecar=paths.sidecar(paths.group_clinical(OUT, "{atlas}", "{method}")),
    log:
        f"{LOGS}/group/clinical_atlas-{{atlas}}_desc-{{method}}.log",
    benchmark:
        f"{BENCH}/group/clinical_atlas-{{atlas}}_desc-{{method}}.tsv"
    wildcard_constraints:
        method="spearman|communication|sdi",
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        # measured at 308 subjects: 210 MB, 5 s
        **sized_by_units(per_unit_mb=0.1, per_unit_s=0.05, base_mb=500),
    params:
        group_column=config["group_column"],
        groups=config["groups"],
        patient_groups=STATS["patient_groups"],
        scales=config["clinical_scales"],
        covariates=config["covariates"],
        site_column=config["site_column"],
        harmonize=STATS["harmonize"],
        regions=STATS["clinical_regions"],
        methods=STATS["clinical_methods"],
        alpha=STATS["alpha"],
    script:
        "../scripts/clinical_correlations.py"


rule cross_atlas:
    input:
        stats=[paths.group_stats(OUT, a, "{method}") for a in ATLASES],
        labels=ATLAS_LABELS,
    output:
        paths.group_file(OUT, "desc-{method}_crossatlas.tsv"),
    log:
        f"{LOGS}/group/crossatlas_desc-{{method}}.log",
    benchmark:
        f"{BENCH}/group/crossatlas_desc-{{method}}.tsv"
    wildcard_constraints:
        method="spearman|communication|sdi",
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        **sized_by_units(per_unit_mb=0.05, per_unit_s=0.01, base_mb=500, base_min=5),
    params:
        atlases=ATLASES,
        column=STATS["replication_column"],
        alpha=STATS["alpha"],
    script:
        "../scripts/cross_atlas.py"


if UNITS:
    TARGETS += [paths.group_sfc(OUT, a, m) for a in ATLASES for m in COUPLING_METHODS]
if GROUP_FITS:
    TARGETS += [
        f(OUT, a, m)
        for a in ATLASES
        for m in COUPLING_METHODS
        for f in (paths.group_stats, paths.group_clinical)
    ]
    if len(ATLASES) > 1:
        TARGETS += [
            paths.group_file(OUT, f"desc-{m}_crossatlas.tsv") for m in COUPLING_METHODS
        ]
