# The built-in synthetic cohort with known ground truth (sfc.simulate).

# Only with demo.generate (config/demo.yaml): a study's config never makes a synthetic dataset.
if config["demo"]["generate"]:

    rule simulate_demo:
        output:
            bids=directory(config["bids_dir"]),
            truth=directory(config["demo"]["truth_dir"]),
        params:
            # the whole demo block (a dict: a bare preset name would look like a path prefix to the linter)
            demo=config["demo"],
            seed=config["seed"],
            atlas_dir=config["atlas_dir"],
            resolution=config["atlas_resolution"],
        log:
            f"{LOGS}/simulate_demo.log",
        benchmark:
            f"{BENCH}/simulate_demo.tsv"
        threads: 2
        resources:
            mem_mb=lambda wildcards, attempt: 4000 * attempt,
            runtime=lambda wildcards, attempt: 30 * attempt,
        conda:
            "../../envs/core.yaml"
        script:
            "../scripts/simulate_demo.py"
