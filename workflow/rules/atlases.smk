# Atlases in template space, with label tables in matrix order, and the list of
# subjects left out (discovery now; QC exclusions join it in later stages).


rule prepare_atlas:
    output:
        image=paths.atlas_image(OUT, "{atlas}"),
        labels=paths.atlas_labels(OUT, "{atlas}"),
    params:
        atlas_dir=config["atlas_dir"],
        resolution=config["atlas_resolution"],
        download=config["atlas_download"],
    log:
        f"{LOGS}/prepare_atlas/atlas-{{atlas}}.log",
    benchmark:
        f"{BENCH}/prepare_atlas/atlas-{{atlas}}.tsv"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 1000 * attempt,
        runtime=lambda wildcards, attempt: 10 * attempt,
    conda:
        "../../envs/core.yaml"
    script:
        "../scripts/prepare_atlas.py"


rule write_excluded:
    input:
        qc=lambda wildcards: QC_EXCLUSION_FILES,
    output:
        paths.excluded(OUT),
    params:
        records=excluded_records(),
        has_sessions=HAS_SESSIONS,
    log:
        f"{LOGS}/write_excluded.log",
    benchmark:
        f"{BENCH}/write_excluded.tsv"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 500 * attempt,
        runtime=lambda wildcards, attempt: 5 * attempt,
    conda:
        "../../envs/core.yaml"
    script:
        "../scripts/write_excluded.py"


TARGETS += ATLAS_LABELS + [paths.excluded(OUT)]
