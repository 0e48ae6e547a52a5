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


if UNITS:

    rule coupling:
        input:
            labels=paths.atlas_labels(OUT, "{atlas}"),
            image=paths.atlas_image(OUT, "{atlas}"),
            sc=lambda w: [
                paths.sc_matrix(
                    UNIT_SOURCE[(s, t)], s, t, w.atlas, config["sc_weight"]
                )
                for s, t in UNITS
            ],
            fc=lambda w: [
                paths.fc_matrix(UNIT_SOURCE[(s, t)], s, t, w.atlas) for s, t in UNITS
            ],
        output:
            expand_units(
                paths.sfc_table(OUT, "{subject}", SES, "{atlas}", "{method}"),
                atlas="{atlas}",
                method="{method}",
            ),
        log:
            f"{LOGS}/coupling/atlas-{{atlas}}_desc-{{method}}.log",
        benchmark:
            f"{BENCH}/coupling/atlas-{{atlas}}_desc-{{method}}.tsv"
        wildcard_constraints:
            method="spearman|communication",
        conda:
            "../../envs/core.yaml"
        threads: 2
        resources:
            mem_mb=lambda wildcards, attempt: (1000 + 2 * len(UNITS)) * attempt,
            runtime=lambda wildcards, attempt: (10 + len(UNITS) // 20) * attempt,
        params:
            method=lambda w: w.method,
            min_neighbours=config["coupling"]["min_neighbours"],
            path_transform=config["coupling"]["path_transform"],
            distance=lambda w: config["coupling"]["distance"].get(w.atlas),
        script:
            "../scripts/compute_coupling.py"

    rule coupling_sdi:
        input:
            labels=paths.atlas_labels(OUT, "{atlas}"),
            sc=lambda w: [
                paths.sc_matrix(
                    UNIT_SOURCE[(s, t)], s, t, w.atlas, config["sc_weight"]
                )
                for s, t in UNITS
            ],
            timeseries=lambda w: [
                paths.timeseries(UNIT_SOURCE[(s, t)], s, t, w.atlas) for s, t in UNITS
            ],
        output:
            expand_units(
                paths.sfc_table(OUT, "{subject}", SES, "{atlas}", "sdi"),
                atlas="{atlas}",
            ),
        log:
            f"{LOGS}/coupling/atlas-{{atlas}}_desc-sdi.log",
        benchmark:
            f"{BENCH}/coupling/atlas-{{atlas}}_desc-sdi.tsv"
        conda:
            "../../envs/core.yaml"
        threads: 2
        resources:
            mem_mb=lambda wildcards, attempt: (1000 + 2 * len(UNITS)) * attempt,
            runtime=lambda wildcards, attempt: (10 + len(UNITS) // 20) * attempt,
        params:
            method="sdi",
            min_neighbours=config["coupling"]["min_neighbours"],
            sdi_log2=config["coupling"]["sdi_log2"],
        script:
            "../scripts/compute_coupling.py"

    TARGETS += [
        paths.sfc_table(OUT, s, t, a, m)
        for s, t in UNITS
        for a in ATLASES
        for m in COUPLING_METHODS
    ]
