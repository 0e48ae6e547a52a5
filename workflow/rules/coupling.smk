# Regional structure-function coupling. One job per atlas and method computes every
# included subject at once (sfc.coupling is batched: seconds for a thousand subjects;
# SDI needs the group-average SC anyway) and writes one index/name/sfc table per subject.

COUPLING_METHODS = list(config["coupling"]["methods"])
# Folder holding each unit's SC, FC and time series: this run's output folder, or the
# connectomes_dirs entry the subject was found in (input: connectomes).
UNIT_SOURCE = {
    (s, t): (DISCOVERY.kept[(s, t)].source_dir if CONNECTOME_INPUT else OUT)
    for s, t in UNITS
}
if (
    CONNECTOME_INPUT
    and "sdi" in COUPLING_METHODS
    and not all(
        os.path.isfile(paths.timeseries(UNIT_SOURCE[(s, t)], s, t, a))
        for s, t in UNITS
        for a in ATLASES
    )
):
    sys.stderr.write(
        "sfc: coupling method sdi skipped: it needs the regional time series "
        "(sub-*/func/*_timeseries.tsv), which the connectomes folders do not hold\n"
    )
    COUPLING_METHODS.remove("sdi")


# Each unit's SC, FC and time series per atlas, in UNITS order (computed once, at parse time).
UNIT_SC = {
    a: [paths.sc_matrix(UNIT_SOURCE[u], *u, a, config["sc_weight"]) for u in UNITS]
    for a in ATLASES
}
UNIT_FC = {a: [paths.fc_matrix(UNIT_SOURCE[u], *u, a) for u in UNITS] for a in ATLASES}
UNIT_TIMESERIES = {
    a: [paths.timeseries(UNIT_SOURCE[u], *u, a) for u in UNITS] for a in ATLASES
}


if UNITS:

    # One rule for every method, so the group rules can name its outputs (rule references:
    # building the DAG then matches none of the thousands of table names against patterns).
    # spearman and communication read SC + FC; sdi reads SC + the regional time series.
    rule coupling:
        input:
            labels=rules.prepare_atlas.output.labels,
            image=lambda w: [] if w.method == "sdi" else paths.atlas_image(OUT, w.atlas),
            sc=lambda w: UNIT_SC[w.atlas],
            fc=lambda w: [] if w.method == "sdi" else UNIT_FC[w.atlas],
            timeseries=lambda w: UNIT_TIMESERIES[w.atlas] if w.method == "sdi" else [],
            # QC exclusions: excluded units are not computed and shape no group quantity
            excluded=rules.write_excluded.output[0],
        output:
            expand_units(
                paths.sfc_table(OUT, "{subject}", SES, "{atlas}", "{method}"),
                atlas="{atlas}",
                method="{method}",
            ),
            listing=paths.coupling_listing(OUT, "{atlas}", "{method}"),
        log:
            f"{LOGS}/coupling/atlas-{{atlas}}_desc-{{method}}.log",
        benchmark:
            f"{BENCH}/coupling/atlas-{{atlas}}_desc-{{method}}.tsv"
        conda:
            "../../envs/core.yaml"
        threads: 2
        resources:
            # measured at 308 subjects: 190-520 MB, 1-2 s (communication models cost more)
            **sized_by_units(per_unit_mb=2, per_unit_s=3),
        params:
            participant_ids=UNIT_IDS,
            method="{method}",
            min_neighbours=config["coupling"]["min_neighbours"],
            path_transform=config["coupling"]["path_transform"],
            distance=lambda w: config["coupling"]["distance"].get(w.atlas),
        script:
            "../scripts/compute_coupling.py"
