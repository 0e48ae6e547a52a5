# TRD vs nTRD classification from regional SFC (sfc.classify): per atlas and coupling
# method, nested cross-validation with permutations, the study's (biased) procedure for
# comparison and leave-one-site-out; then all atlases side by side.

CLASSIFY_KINDS = ["classification", "predictions", "roc", "features", "null"]
CLASSIFY_SETTINGS = [
    "models",
    "n_splits",
    "n_repeats",
    "inner_splits",
    "n_permutations",
    "permutation_repeats",
    "study_permutations",
    "modes",
    "screen_alpha",
    "screen_k",
    "screen_min_features",
    "screen_max_features",
    "harmonise_site",
    "n_bootstrap",
]


# group/classification/atlas-{atlas}_desc-{method}_{kind}.tsv (as sfc.classify.output_paths)
CLASSIFY_PATTERN = paths.group_file(
    OUT, "classification/atlas-{atlas}_desc-{method}_{kind}.tsv"
)


rule classify:
    input:
        sfc=paths.group_sfc(OUT, "{atlas}", "{method}"),
        participants=GROUP_PARTICIPANTS,
    output:
        **{k: CLASSIFY_PATTERN.replace("{kind}", k) for k in CLASSIFY_KINDS},
    log:
        f"{LOGS}/classify/atlas-{{atlas}}_desc-{{method}}.log",
    benchmark:
        f"{BENCH}/classify/atlas-{{atlas}}_desc-{{method}}.tsv"
    wildcard_constraints:
        method="|".join(COUPLING_METHODS),
    conda:
        "../../envs/learn.yaml"
    # 2, not more: a SLURM job asking for more CPUs than a node has never starts
    # (PartitionConfig). Raise it per cluster with `set-threads: {classify: 16}` in a profile.
    threads: 2
    resources:
        # measured at 308 subjects (224 classified, 246 features, six models): 790 MB
        mem_mb=lambda wildcards, attempt: sfc_resources.group_mem_mb(len(UNITS), 1.0, 800, attempt),
        # measured (benchmarks/results/classify.json, six models, 224 x 246): 0.2-0.8
        # CPU-second per permutation depending on the machine, plus ~10-30 s for the observed
        # repeats; the estimate allows 3 s per permutation (slower nodes, or the scikit-learn
        # fallback of the lean estimators), x attempt
        runtime=lambda wildcards, threads, attempt: attempt
        * (
            15
            + (
                config["classification"]["n_permutations"]
                + config["classification"]["study_permutations"]
            )
            // (20 * threads)
        ),
    params:
        group_column=config["group_column"],
        positive=config["classification"]["positive"],
        negative=config["classification"]["negative"],
        covariates=config["covariates"],
        site_column=config["site_column"],
        settings={k: config["classification"][k] for k in CLASSIFY_SETTINGS},
        seed=config["seed"],
    script:
        "../scripts/classify.py"


rule classification_summary:
    input:
        tables=expand(
            CLASSIFY_PATTERN,
            kind="classification",
            atlas=ATLASES,
            method=COUPLING_METHODS,
        ),
    output:
        table=paths.classification(OUT),
        atlases=paths.group_file(OUT, "classification_atlases.tsv"),
    log:
        f"{LOGS}/classification_summary.log",
    benchmark:
        f"{BENCH}/classification_summary.tsv"
    conda:
        "../../envs/learn.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 500 * attempt,
        runtime=lambda wildcards, attempt: 5 * attempt,
    script:
        "../scripts/classify.py"


if GROUP_FITS:
    TARGETS += [
        paths.classification(OUT),
        paths.group_file(OUT, "classification_atlases.tsv"),
    ]
