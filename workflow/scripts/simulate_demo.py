"""Rule simulate_demo: the synthetic BIDS cohort with known ground truth (sfc.simulate)."""

from sfc import atlases
from sfc.logs import script_logger
from sfc.simulate import PRESETS
from sfc.simulate.connectome import ATLASES, Effects
from sfc.simulate.images import preset_image_params, simulate_bids_cohort

log = script_logger(snakemake.log[0], job=snakemake)
demo = snakemake.params.demo
# The generator reads the atlases without downloading: fetch and verify them first. Whether and
# from where they are downloaded changes nothing in the cohort, so these are not params (a
# changed mirror must not regenerate the demo).
atlases.ensure_available(ATLASES, snakemake.params.atlas_dir, allow_download=snakemake.config["atlas_download"],
                         mirror=snakemake.config["atlas_mirror"])
preset = PRESETS[demo["preset"]]
cohort = simulate_bids_cohort(
    snakemake.output.bids,
    truth_dir=snakemake.output.truth,
    atlas_dir=snakemake.params.atlas_dir,
    n_per_group=preset["n_per_group"],
    seed=snakemake.params.seed,
    effects=Effects(trd_decoupling=preset["trd_decoupling"], hipp_bsi=preset["hipp_bsi"]),
    image_params=preset_image_params(demo["preset"]),
    n_jobs=snakemake.threads,
)
log.info("demo cohort: %d subjects, %.1f MB, %.0f s; planted: %s", len(cohort.subjects), cohort.megabytes,
         cohort.seconds, cohort.planted)
