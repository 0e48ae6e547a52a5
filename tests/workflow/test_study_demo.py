"""The study-scale demo of `make demo`: the generator's `study` preset (the study's 308 subjects,
three sites) through the group stage with config/study.yaml as shipped. Its report names the
planted regions as the FDR-significant ones, the hippocampus-BSI correlation in nTRD, and the
nested AUC beside the study-mode AUC."""

import re

import pandas as pd
import pytest
import yaml

from conftest import REPO, FolderServer, make_mirror, run_snakemake, significant_regions
from sfc import paths
from sfc.simulate.__main__ import main as simulate

pytestmark = pytest.mark.slow

PLANTED_GYRI = {("MFG", "R"), ("IPL", "L"), ("PrG", "L"), ("STG", "R")}


@pytest.fixture(scope="module")
def study(tmp_path_factory, shared_data):
    """`make demo`'s second part, with the paths moved into a temporary folder, as a new user
    runs it: no atlas or template folder, every file from a mirror on 127.0.0.1."""
    base = tmp_path_factory.mktemp("study")
    server = FolderServer(make_mirror(shared_data, base / "mirror"))
    env = {"SFC_ATLAS_DIR": "", "SFC_TEMPLATE_DIR": "", "SFC_CACHE_DIR": str(base / "cache"),
           "SFC_ATLAS_MIRROR": server.url}
    cohort = base / "study"
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in env.items():
                mp.setenv(name, value)
            # the Makefile's command: python -m sfc.simulate connectomes demo/study --preset study --weights count
            assert simulate(["connectomes", str(cohort), "--preset", "study", "--weights", "count"]) == 0
        shipped = yaml.safe_load((REPO / "config" / "study.yaml").read_text())
        moved = base / "paths.yaml"
        moved.write_text(yaml.safe_dump({"connectomes_dirs": [str(cohort)],
                                         "participants": str(cohort / "participants.tsv"),
                                         "output_dir": str(base / "results")}))
        result = run_snakemake("--profile", REPO / "profiles" / "local", "--cores", "2",
                               "--configfile", REPO / "config" / "study.yaml", moved,
                               workdir=base / "work", env=env, timeout=1500, preset=None)  # as make demo-study
    finally:
        server.close()
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(out=base / "results", cohort=cohort, shipped=shipped, requests=server.requests,
                html=(base / "results" / "report.html").read_text(),
                planted=pd.read_csv(cohort / "truth" / "planted.tsv", sep="\t"))


def test_the_atlases_came_from_the_mirror_once(study):
    # the generator fetched the three atlas files into the cache; the workflow found them there
    assert sorted(study["requests"]) == ["/BN_Atlas_246_2mm.nii.gz", "/HarvardOxford-cort-maxprob-thr25-2mm.nii.gz",
                                         "/HarvardOxford-sub-maxprob-thr25-2mm.nii.gz"]


def test_the_report_names_the_planted_regions(study):
    names = significant_regions(study["html"])[("BNA246", "spearman")]
    planted = study["planted"]
    trd = set(planted.loc[(planted.atlas == "BNA246") & (planted.effect == "trd_decoupling") & planted.planted, "name"])
    any_planted = set(planted.loc[(planted.atlas == "BNA246") & planted.planted, "name"])
    gyri = {tuple(n.split("_")[:2]) for n in set(names) & trd}
    unplanted = sorted(set(names) - any_planted)
    assert len(gyri & PLANTED_GYRI) >= 3, names
    assert len(unplanted) <= 2, unplanted
    # the group table behind the report agrees: planted regions lower in TRD than nTRD
    stats = pd.read_csv(paths.group_stats(study["out"], "BNA246", "spearman"), sep="\t").set_index("name")
    assert (stats.loc[sorted(set(names) & trd), "t_TRD_vs_nTRD"] < 0).all()


def test_the_report_shows_the_hippocampus_bsi_correlation_in_ntrd(study):
    html = study["html"]
    clinical = html[html.index("id='clinical'"):html.index("id='classification'")]
    rows = [re.sub(r"<[^>]+>", " ", row).split() for row in re.findall(r"<tr>.*?</tr>", clinical, flags=re.S)]
    assert any({"Hipp_L_2_1", "nTRD", "bsi"} <= set(cells) for cells in rows), clinical[:3000]
    table = pd.read_csv(paths.group_clinical(study["out"], "BNA246", "spearman"), sep="\t")
    hit = table[(table.name == "Hipp_L_2_1") & (table.group == "nTRD") & (table.scale == "bsi")]
    assert len(hit) and (hit.p_fdr < 0.05).all() and (hit.r > 0).all()


def test_the_report_puts_the_nested_auc_beside_the_study_mode_auc(study):
    html = study["html"]
    assert "Nested against study-mode AUC" in html and "inflation" in html
    assert re.search(r"Best nested classification: <b>\w+</b> on \w+ \(spearman\), AUC 0\.\d\d .*"
                     r"the study's procedure on the same subjects gives 0\.\d\d", html)
    # the lighter classification is said, not hidden
    n = study["shipped"]["classification"]["n_permutations"]
    assert f"{n} label permutations of the whole procedure (fewer than the 1000 a publication uses" in html
