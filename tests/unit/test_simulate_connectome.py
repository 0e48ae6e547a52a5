"""The connectome-level synthetic cohort: layout, determinism, and the planted truth."""

from __future__ import annotations

import filecmp
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sfc import io, paths
from sfc.simulate import brain
from sfc.simulate.connectome import (Effects, build_model, load_geometry, simulate_connectome_cohort,
                                     simulate_subject, write_matrix_fast)

SIZES = {"TRD": 10, "nTRD": 16, "HC": 6}


@pytest.fixture(scope="module")
def geometry(atlas_dir):
    return load_geometry(atlas_dir)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, geometry):
    model = build_model(seed=3, geometry=geometry)
    return simulate_connectome_cohort(tmp_path_factory.mktemp("sim"), n_per_group=SIZES, seed=3, model=model)


@pytest.fixture(scope="module")
def null_cohort(tmp_path_factory, geometry):
    model = build_model(seed=3, geometry=geometry, null=True)
    return simulate_connectome_cohort(tmp_path_factory.mktemp("null"), n_per_group=SIZES, seed=3, null=True,
                                      model=model)


def _groups(res, table):
    return res.participants.set_index("participant_id").loc[table.index, "group"]


# --- helpers ------------------------------------------------------------------------------

def test_sfc_spearman_matches_scipy_per_row_with_ties():
    rng = np.random.default_rng(0)
    sc = rng.integers(0, 4, (30, 30)).astype(float)  # many zeros and ties
    sc = np.triu(sc, 1) + np.triu(sc, 1).T
    fc = np.round(rng.normal(size=(30, 30)), 1)
    fc = (fc + fc.T) / 2
    got = brain.sfc_spearman(sc, fc)
    for i in range(30):
        j = [k for k in range(30) if k != i and sc[i, k] > 0]
        assert got[i] == pytest.approx(stats.spearmanr(sc[i, j], fc[i, j])[0], abs=1e-12)


def test_sfc_spearman_is_nan_with_too_few_neighbours():
    sc = np.zeros((4, 4))
    sc[0, 1] = sc[1, 0] = 1
    assert np.isnan(brain.sfc_spearman(sc, np.eye(4))).all()


def test_fast_writer_is_byte_identical_to_io_write_matrix(tmp_path):
    rng = np.random.default_rng(1)
    for k, m in enumerate([np.round(rng.random((20, 20)) * 100), rng.normal(size=(20, 20)) * 1e-7,
                           np.where(rng.random((20, 20)) < .1, np.nan, rng.random((20, 20)))]):
        write_matrix_fast(tmp_path / f"a{k}.tsv", m)
        io.write_matrix(tmp_path / f"b{k}.tsv", m)
        assert filecmp.cmp(tmp_path / f"a{k}.tsv", tmp_path / f"b{k}.tsv", shallow=False)


def test_decoupling_operator_leaves_unplanted_signals_alone():
    rng = np.random.default_rng(2)
    a = np.abs(rng.normal(size=(12, 12)))
    a[rng.random((12, 12)) < 0.5] = 0
    a = np.triu(a, 1) + np.triu(a, 1).T
    cov = np.eye(12) + 0.1
    d = np.zeros(12)
    d[3] = 0.5
    b = brain.decoupling_operator(a, cov, d, rng)
    assert np.array_equal(np.delete(b, 3, axis=0), np.delete(np.eye(12), 3, axis=0))
    assert b[3, 3] == pytest.approx(np.sqrt(0.5))
    partner = np.flatnonzero((b[3] != 0) & (np.arange(12) != 3))
    assert len(partner) == 1 and a[3, partner[0]] == 0  # input from a region without fibres to it


# --- layout ------------------------------------------------------------------------------

def test_layout_is_readable_by_the_workflow_readers(cohort):
    out = cohort.out_dir
    n = {"BNA246": 246, "HOA": 110}
    for atlas in ("BNA246", "HOA"):
        labels = io.read_labels(paths.atlas_labels(out, atlas))
        assert len(labels) == n[atlas]
        sub = cohort.subjects[0]
        for weight in ("count", "sift2"):
            sc = io.read_matrix(paths.sc_matrix(out, sub, None, atlas, weight), n[atlas], "SC", symmetric=True,
                                allow_nan=False)
            assert np.all(np.diag(sc) == 0) and sc.min() >= 0 and (sc > 0).mean() > 0.2
        fc = io.read_matrix(paths.fc_matrix(out, sub, None, atlas), n[atlas], "FC", symmetric=True)
        assert np.allclose(np.diag(fc), 1) and np.abs(fc).max() <= 1
        count = io.read_matrix(paths.sc_matrix(out, sub, None, atlas, "count"))
        assert np.array_equal(count, np.rint(count))


def test_participants_table_has_the_study_columns_groups_and_na(cohort):
    table = pd.read_csv(cohort.participants_tsv, sep="\t", keep_default_na=False)
    for col in ("participant_id", "group", "age", "sex", "site", "education_years", "hamd24_pre",
                "hamd24_post", "bsi", "onset_age", "illness_duration"):
        assert col in table.columns
    assert table["group"].value_counts().to_dict() == SIZES
    assert table["participant_id"].iloc[0] == "sub-001"
    hc = table[table.group == "HC"]
    assert (hc["hamd24_post"] == "n/a").all() and (hc["illness_duration"] == "n/a").all()


def test_study_group_means_of_hamd24():
    from sfc.simulate.phenotypes import simulate_participants

    table, _ = simulate_participants({"TRD": 400, "nTRD": 400, "HC": 200}, np.random.default_rng(0))
    means = table.groupby("group")[["hamd24_pre", "hamd24_post", "onset_age", "illness_duration"]].mean()
    assert means.loc["TRD", "hamd24_pre"] == pytest.approx(31.3, abs=1.0)
    assert means.loc["TRD", "hamd24_post"] == pytest.approx(25.7, abs=1.0)
    assert means.loc["nTRD", "hamd24_pre"] == pytest.approx(31.0, abs=1.0)
    assert means.loc["nTRD", "hamd24_post"] == pytest.approx(6.1, abs=1.0)
    assert means.loc["HC", "hamd24_pre"] < 5
    assert means.loc["TRD", "onset_age"] < means.loc["nTRD", "onset_age"]
    assert means.loc["TRD", "illness_duration"] > means.loc["nTRD", "illness_duration"]


def test_same_seed_same_files_other_seed_other_files(tmp_path, geometry):
    sizes = {"TRD": 2, "nTRD": 1, "HC": 1}
    runs = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        simulate_connectome_cohort(tmp_path / name, n_per_group=sizes, seed=seed,
                                   model=build_model(seed=seed, geometry=geometry), atlases=("HOA",))
        runs.append(tmp_path / name)
    f = paths.fc_matrix("", "001", None, "HOA")
    assert filecmp.cmp(runs[0] / f, runs[1] / f, shallow=False)
    assert not filecmp.cmp(runs[0] / f, runs[2] / f, shallow=False)
    assert filecmp.cmp(runs[0] / "participants.tsv", runs[1] / "participants.tsv", shallow=False)


# --- planted truth -------------------------------------------------------------------------

def test_hoa_sees_the_same_gyri_as_bna(cohort):
    hoa = cohort.planted["HOA"]["trd_decoupling"]
    for name in ("Right_Middle_Frontal_Gyrus", "Left_Precentral_Gyrus", "Left_Angular_Gyrus",
                 "Left_Supramarginal_Gyrus_anterior_division",
                 "Right_Superior_Temporal_Gyrus_posterior_division"):
        assert name in hoa
    assert cohort.planted["HOA"]["hipp_bsi"] == ["Left_Hippocampus"]
    table = cohort.planted_table
    gyri = set(table[(table.atlas == "HOA") & table.planted]["gyrus"].dropna()) - {""}
    assert gyri <= {"MFG", "PrG", "IPL", "STG", "LOcC", "Hipp"}
    assert len(cohort.planted["BNA246"]["trd_decoupling"]) == 25  # all subregions of the 4 gyri
    meta = json.loads((cohort.truth_dir / "planted.json").read_text())
    assert meta["planted"] == cohort.planted


@pytest.mark.parametrize("atlas", ["BNA246", "HOA"])
def test_true_sfc_of_planted_regions_is_lower_in_trd_than_ntrd(cohort, atlas):
    sfc = cohort.sfc_true[atlas]
    g = _groups(cohort, sfc)
    diff = sfc[g == "TRD"].mean() - sfc[g == "nTRD"].mean()
    planted = cohort.planted[atlas]["trd_decoupling"]
    assert (diff[planted] < -0.03).all(), diff[planted].round(3).to_dict()
    assert diff[planted].mean() < -0.2
    # the planted regions are where the effect is: most of the largest drops are planted ones
    top = diff.nsmallest(len(planted)).index
    assert np.isin(top, planted).mean() >= 0.8
    # and they are far larger than in the unplanted regions
    assert diff[planted].mean() < 3 * diff.drop(planted).mean()


@pytest.mark.parametrize("atlas", ["BNA246", "HOA"])
def test_observed_sfc_of_planted_regions_is_lower_in_trd(cohort, atlas):
    sfc = cohort.sfc_observed[atlas]
    g = _groups(cohort, sfc)
    planted = cohort.planted[atlas]["trd_decoupling"]
    score = sfc[planted].mean(axis=1)
    t, p = stats.ttest_ind(score[g == "TRD"], score[g == "nTRD"])
    assert t < 0 and p < 1e-3


def test_hippocampus_coupling_rises_with_bsi_across_ntrd_subjects(cohort):
    sfc = cohort.sfc_true["BNA246"]
    truth = pd.read_csv(cohort.truth_dir / "subjects.tsv", sep="\t").set_index("participant_id")
    g = _groups(cohort, sfc)
    nt = g == "nTRD"
    r = stats.pearsonr(sfc.loc[nt, "Hipp_L_2_1"], truth.loc[sfc.index[nt], "bsi_true"])[0]
    assert r > 0.5


@pytest.mark.parametrize("atlas,region", [("BNA246", "Hipp_L_2_1"), ("HOA", "Left_Hippocampus")])
def test_hippocampus_coupling_rises_with_bsi_within_subject_in_ntrd_only(geometry, atlas, region):
    """Same subject (same random numbers) simulated at BSI 0, 15 and 30."""
    model = build_model(seed=4, geometry=geometry)
    k = model.labels[atlas]["name"].tolist().index(region)

    def sfc(group, bsi, index):
        m = simulate_subject(model, index, group, bsi, 0).atlas[atlas]
        return brain.sfc_spearman(m["sc_true"], m["fc_true"])[k]

    for index in range(3):
        low, mid, high = (sfc("nTRD", b, index) for b in (0, 15, 30))
        assert low < mid < high and high - low > 0.05
        assert sfc("TRD", 0, index) == sfc("TRD", 30, index)


def test_effect_grows_with_the_effect_size(geometry):
    drops = []
    for size in (0.0, 0.35, 0.7):
        model = build_model(seed=1, geometry=geometry, effects=Effects(trd_decoupling=size))
        mask = model.effect_masks()["trd_decoupling"]
        sb = simulate_subject(model, 0, "TRD", 10.0, 0)
        m = sb.atlas["BNA246"]
        drops.append(np.nanmean(brain.sfc_spearman(m["sc_true"], m["fc_true"])[mask]))
    assert drops[0] > drops[1] + 0.05 > drops[2] + 0.1


def test_null_cohort_has_no_planted_effect(null_cohort, cohort):
    assert null_cohort.planted["BNA246"]["trd_decoupling"] == []
    table = null_cohort.planted_table
    assert not table["planted"].any() and (table["effect_size"] == 0).all()
    for atlas in ("BNA246", "HOA"):
        planted = cohort.planted[atlas]["trd_decoupling"]
        effect = {}
        for name, res in (("null", null_cohort), ("effect", cohort)):
            sfc = res.sfc_true[atlas]
            g = _groups(res, sfc)
            effect[name] = (sfc[g == "TRD"].mean() - sfc[g == "nTRD"].mean())[planted].mean()
        assert abs(effect["null"]) < 0.25 * abs(effect["effect"])


def test_null_model_ignores_bsi_and_group(geometry):
    model = build_model(seed=4, geometry=geometry, null=True)
    runs = [simulate_subject(model, 0, group, bsi, 0).atlas["BNA246"]["fc_true"]
            for group, bsi in (("nTRD", 0), ("nTRD", 30), ("TRD", 0), ("HC", 10))]
    for fc in runs[1:]:
        assert np.array_equal(fc, runs[0])


def test_null_and_effect_cohorts_differ_only_in_the_target_groups(cohort, null_cohort):
    sfc, sfc0 = cohort.sfc_true["BNA246"], null_cohort.sfc_true["BNA246"]
    g = _groups(cohort, sfc)
    hc = g == "HC"
    assert np.allclose(sfc[hc].to_numpy(), sfc0[hc].to_numpy(), equal_nan=True)
    assert not np.allclose(sfc[g == "TRD"].to_numpy(), sfc0[g == "TRD"].to_numpy(), equal_nan=True)


@pytest.mark.slow
def test_study_scale_cohort_is_fast_and_shows_the_effects(tmp_path, geometry):
    """308 subjects x (246 + 110 regions): timing and the group statistics at the study's size."""
    model = build_model(seed=0, geometry=geometry)
    res = simulate_connectome_cohort(tmp_path, model=model, weights=("count",))
    assert len(res.subjects) == 308
    assert res.seconds < 180
    for atlas in ("BNA246", "HOA"):
        sfc = res.sfc_observed[atlas]
        g = _groups(res, sfc)
        t, _ = stats.ttest_ind(sfc[g == "TRD"], sfc[g == "nTRD"], nan_policy="omit")
        t = pd.Series(t, index=sfc.columns)
        assert (t[res.planted[atlas]["trd_decoupling"]] < 0).all()


def test_command_line_writes_the_layout_and_reports_planted_regions(tmp_path, atlas_dir, capsys):
    from sfc.simulate.__main__ import main

    rc = main(["connectomes", str(tmp_path / "c"), "--n-trd", "1", "--n-ntrd", "1", "--n-hc", "1",
               "--atlases", "HOA", "--weights", "count", "--atlas-dir", str(atlas_dir), "--null"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["subjects"] == 3 and summary["planted"]["HOA"]["trd_decoupling"] == []
    assert (tmp_path / "c" / paths.sc_matrix("", "003", None, "HOA", "count")).is_file()
    assert not (tmp_path / "c" / paths.sc_matrix("", "003", None, "BNA246", "count")).exists()


def test_command_line_names_a_missing_atlas_folder(tmp_path, capsys, monkeypatch):
    from sfc.simulate.__main__ import main

    monkeypatch.delenv("SFC_ATLAS_DIR", raising=False)
    monkeypatch.setenv("SFC_CACHE_DIR", str(tmp_path / "cache"))
    rc = main(["connectomes", str(tmp_path / "c"), "--n-trd", "1", "--atlas-dir", str(tmp_path / "nothing"),
               "--no-download"])
    assert rc == 2
    assert "nothing" in capsys.readouterr().err


def test_a_prebuilt_model_that_contradicts_the_arguments_is_refused(tmp_path, geometry):
    model = build_model(seed=0, geometry=geometry)
    with pytest.raises(ValueError, match="null=True"):
        simulate_connectome_cohort(tmp_path, n_per_group={"TRD": 1}, null=True, model=model)
    with pytest.raises(ValueError, match="seed"):
        simulate_connectome_cohort(tmp_path, n_per_group={"TRD": 1}, seed=1, model=model)
