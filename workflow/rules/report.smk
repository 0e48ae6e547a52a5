# The HTML report (sfc.report): one self-contained report.html from the group outputs
# (tables, atlas images and label tables, participants table), plus the per-subject QC
# pictures where this run made them (imaging route) or the SC/FC matrices (connectome
# route). Its main figures also go to Snakemake's own --report through report().

REPORT = config.get("report", {})
REPORT_METHODS = COUPLING_METHODS  # the methods that can run (coupling.smk), in config order
# The command line of the main Snakemake process (jobs inherit it through the environment;
# not a param, so a new invocation does not make the report out of date).
os.environ.setdefault("SFC_COMMAND_LINE", " ".join(sys.argv))
# Per-subject QC pictures (title, path pattern) of the imaging route, first atlas only.
REPORT_QC_IMAGES = (
    []
    if CONNECTOME_INPUT
    else [
        ("atlas over T1w", ANAT["png"]),
        ("atlas over mean b0", DWI_QC["atlas_png"]),
        ("FA", DWI_QC["fa_png"]),
    ]
    + (
        [("FD trace", FUNC_QC["fd_plot"]), ("carpet plot", FUNC_QC["carpet"])]
        if FUNC_ROUTE is not None
        else []
    )
)
REPORT_QC_TABLES = (
    []
    if CONNECTOME_INPUT
    else [DWI_QC["summary"]]
    + ([FUNC_QC["summary"]] if FUNC_ROUTE is not None else [])
    + ([FUNC_PRE["register"]] if FUNC_ROUTE == "bids" else [])
)
REPORT_UNITS = [
    dict(
        participant_id=pid,
        subject=s,
        session=t,
        source_dir=str(UNIT_SOURCE[(s, t)]),
        qc_images=[
            (title, p.format(subject=s, session=t, atlas=ATLASES[0]))
            for title, p in REPORT_QC_IMAGES
        ],
        qc_tables=[p.format(subject=s, session=t) for p in REPORT_QC_TABLES],
    )
    for pid, (s, t) in zip(UNIT_IDS, UNITS)
]
REPORT_GROUP_TABLES = [
    f(OUT, a, m)
    for a in ATLASES
    for m in REPORT_METHODS
    for f in (paths.group_sfc, paths.group_stats, paths.group_clinical)
]
REPORT_CLASSIFICATION = [
    paths.classification(OUT),
    paths.group_file(OUT, "classification_atlases.tsv"),
] + expand(CLASSIFY_PATTERN, kind=CLASSIFY_KINDS, atlas=ATLASES, method=REPORT_METHODS)


if UNITS:

    rule report:
        input:
            participants=GROUP_PARTICIPANTS,
            excluded=paths.excluded(OUT),
            labels=ATLAS_LABELS,
            images=ATLAS_IMAGES,
            tables=REPORT_GROUP_TABLES,
            classification=REPORT_CLASSIFICATION,
            # the gallery's SC and FC heatmaps (first atlas)
            matrices=[
                f(u["source_dir"], u["subject"], u["session"], ATLASES[0], *w)
                for u in REPORT_UNITS
                for f, w in (
                    (paths.sc_matrix, (config["sc_weight"],)),
                    (paths.fc_matrix, ()),
                )
            ],
            qc=[p for u in REPORT_UNITS for _, p in u["qc_images"]]
            + [p for u in REPORT_UNITS for p in u["qc_tables"]],
        output:
            html=paths.report(OUT),
            figures=report(
                directory(paths.report_figures(OUT)),
                patterns=["{name}.png"],
                caption="../report/report_figures.rst",
                category="Results",
            ),
        log:
            f"{LOGS}/report.log",
        benchmark:
            f"{BENCH}/report.tsv"
        conda:
            "../../envs/report.yaml"
        threads: 1
        resources:
            # measured at 308 subjects: 700 MB, 23 s (figures per region, a QC row per subject)
            **sized_by_units(per_unit_mb=2, per_unit_s=1.2, base_mb=1500, base_min=15),
        params:
            atlases=ATLASES,
            methods=REPORT_METHODS,
            groups=config["groups"],
            group_column=config["group_column"],
            covariates=config["covariates"],
            site_column=config["site_column"],
            clinical_scales=config["clinical_scales"],
            alpha=STATS["alpha"],
            positive=config["classification"]["positive"],
            sc_weight=config["sc_weight"],
            units=REPORT_UNITS,
            gallery_subjects=REPORT.get("gallery_subjects", 12),
            max_region_plots=REPORT.get("max_region_plots", 24),
            route="connectomes" if CONNECTOME_INPUT else "imaging",
            config=config,
        script:
            "../scripts/make_report.py"

    if GROUP_FITS:
        TARGETS += [paths.report(OUT)]
