"""sfc.plotting and sfc.report: brain maps paint the right values, tables and tests are right, and
the report degrades to sentences when optional parts are missing."""

import base64

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from sfc import paths, plotting, report


@pytest.fixture
def tiny_atlas():
    """A 12 x 12 x 12 image with four cubic regions (labels 1..4), 2 mm voxels."""
    data = np.zeros((12, 12, 12), dtype=np.int16)
    data[1:5, 1:5, 1:5], data[6:10, 1:5, 1:5], data[1:5, 6:10, 6:10], data[6:10, 6:10, 6:10] = 1, 2, 3, 4
    return nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))


def test_region_image_paints_each_region_with_its_value(tiny_atlas):
    img = plotting.region_image(tiny_atlas, [0.5, np.nan, -2.0, 3.0])
    out = img.get_fdata()
    assert out[2, 2, 2] == 0.5 and out[2, 7, 7] == -2.0 and out[7, 7, 7] == 3.0
    assert out[7, 2, 2] == 0.0 and out[0, 0, 0] == 0.0      # NaN region and background


def test_region_image_follows_the_given_label_indices(tiny_atlas):
    out = plotting.region_image(tiny_atlas, [9.0, 7.0], indices=[4, 1]).get_fdata()
    assert out[7, 7, 7] == 9.0 and out[2, 2, 2] == 7.0 and out[7, 2, 2] == 0.0


def test_signed_projection_keeps_the_value_of_largest_magnitude():
    data = np.full((2, 3), np.nan)
    data[0] = [1.0, -5.0, 2.0]
    data[1, 1] = 3.0
    proj = plotting.signed_projection(data, axis=1)
    assert proj[0] == -5.0 and proj[1] == 3.0


def test_figures_render_to_png(tiny_atlas):
    pngs = [plotting.to_png(plotting.glass_brain(tiny_atlas, [1, -1, 2, np.nan])),
            plotting.to_png(plotting.heatmap(np.eye(4), log=True)),
            plotting.to_png(plotting.group_strip(pd.Series([1.0, 2, 3, 4]), pd.Series(list("aabb")), ["a", "b"])),
            plotting.to_png(plotting.scatter_fit([1, 2, 3, 4], [2, 1, 4, 3], annotation="r = 0.6")),
            plotting.to_png(plotting.null_histogram([0.4, 0.5, 0.6], 0.8, p=0.09))]
    assert all(p[:8] == b"\x89PNG\r\n\x1a\n" and len(p) > 1000 for p in pngs)


def test_demographics_uses_anova_for_numbers_and_chi_square_for_categories():
    table = pd.DataFrame({"group": ["A"] * 4 + ["B"] * 4, "age": [20, 22, 24, 26, 30, 31, 35, 40],
                          "sex": list("MFMFMMMF")})
    demo = report.demographics(table, "group", ["A", "B"], ["age", "sex"]).set_index("variable")
    assert demo.loc["age", "p"] == pytest.approx(st.f_oneway([20, 22, 24, 26], [30, 31, 35, 40]).pvalue)
    assert demo.loc["age", "A"] == "23.0 (2.6), n=4"
    expected = st.chi2_contingency(pd.crosstab(table.sex, table.group).to_numpy())[1]
    assert demo.loc["sex", "p"] == pytest.approx(expected) and demo.loc["sex", "A"] == "F: 2, M: 2"


def test_robust_z_flags_only_the_outlier():
    z = report.robust_z([1.0, 1.1, 0.9, 1.05, 0.95, 9.0])
    assert list(np.abs(z) > 3.5) == [False] * 5 + [True]


def test_methods_paragraph_is_written_from_the_config():
    text = report.methods_paragraph({"input": "connectomes", "connectomes_dirs": ["a", "b"], "atlases": ["HOA"],
                                     "coupling": {"methods": ["spearman"]}, "groups": ["TRD", "HC"],
                                     "covariates": ["age"], "site_column": None, "stats": {"alpha": 0.01},
                                     "seed": 7})
    assert "2 folder(s)" in text and "Harvard-Oxford" in text and "Baum et al. 2020" in text
    assert "adjusting for age" in text and "q = 0.01" in text and "ComBat" not in text and "seed 7" in text


def test_methods_paragraph_says_what_ran_where_the_config_said_auto():
    config = {"input": {"dwi": "bids", "func": "bids"}, "atlases": ["HOA"], "groups": ["A", "B"],
              "dwi": {"denoise": True, "degibbs": True, "eddy": "auto", "bias": "n4",
                      "tracking": {"algorithm": "iFOD2", "streamlines": 10_000_000, "chunks": 8, "seeding": "dynamic",
                                   "act": "auto"}},
              "func": {}, "stats": {}, "seed": 1}
    qc = pd.DataFrame({"dwi_degibbs": [True, True, True], "dwi_eddy": [True, False, True],
                       "tracking_act": [False, False, False]})
    ran = report.steps_ran(qc)
    assert ran == {"degibbs": (3, 3), "eddy": (2, 3), "act": (0, 3)}
    text = report.methods_paragraph(config, ["spearman"], ran)
    assert "Gibbs-ringing removal, eddy-current and motion correction with FSL eddy (2 of 3 subjects)" in text
    assert "10,000,000 streamlines generated with iFOD2 (dynamic seeding, in 8 seeded parts)" in text
    assert "anatomically constrained" not in text  # act: auto found no FSL
    # without QC tables (or steps the config fixed) the config speaks: auto is not claimed
    plain = report.methods_paragraph(config, ["spearman"])
    assert "eddy" not in plain and "Gibbs-ringing removal" in plain


def test_report_without_classification_site_or_significant_regions_says_so(tmp_path, tiny_atlas):
    out = tmp_path / "out"
    (out / "atlases").mkdir(parents=True)
    (out / "group").mkdir()
    nib.save(tiny_atlas, paths.atlas_image(out, "TINY"))
    names = ["R1", "R2", "R3", "R4"]
    pd.DataFrame({"index": [1, 2, 3, 4], "name": names}).to_csv(paths.atlas_labels(out, "TINY"), sep="\t",
                                                                index=False)
    ids = [f"sub-{i:02d}" for i in range(1, 9)]
    rng = np.random.default_rng(0)
    pd.DataFrame(rng.normal(0.2, 0.05, (8, 4)), columns=names).assign(participant_id=ids)[
        ["participant_id", *names]].to_csv(paths.group_sfc(out, "TINY", "spearman"), sep="\t", index=False)
    pd.DataFrame({"index": [1, 2, 3, 4], "name": names, "F": [0.5, 1.0, 0.2, 0.1], "p": [0.6, 0.4, 0.8, 0.9],
                  "p_fdr": [0.9] * 4, "t_A_vs_B": [0.1, -1.0, 0.3, 0.2], "p_A_vs_B": [0.9, 0.3, 0.7, 0.8],
                  "p_fdr_A_vs_B": [0.9] * 4}).to_csv(paths.group_stats(out, "TINY", "spearman"), sep="\t",
                                                      index=False)
    participants = tmp_path / "participants.tsv"
    age = rng.integers(20, 60, 8).astype(str)
    age[3] = "n/a"                           # left out of the ANCOVA: the report names who
    pd.DataFrame({"participant_id": ids, "group": ["A", "B"] * 4, "age": age}).to_csv(
        participants, sep="\t", index=False)
    spec = report.ReportSpec(output_dir=str(out), participants=str(participants), atlases=["TINY"],
                             methods=["spearman"], groups=["A", "B"], covariates=["age"], site_column=None,
                             classification=False, units=[], config={"seed": 1}, route="connectomes")
    summary = report.build_report(out / "report.html", spec)
    page = (out / "report.html").read_text()
    assert summary["significant"] == {"TINY/spearman": []}
    assert "No site column is configured" in page
    assert "No region has an FDR-significant group effect" in page
    assert "No classification was run" in page
    assert "No clinical correlation table" in page
    assert "No participant was excluded" in page
    assert "1 of them lack a covariate value and are left out of the group comparison" in page
    assert "sub-04 (age)" in page
    for src in __import__("re").findall(r'src="data:image/png;base64,([^"]+)"', page):
        assert base64.b64decode(src)[:4] == b"\x89PNG"


def test_qc_table_flags_a_doubtful_registration_whatever_the_cohort(tmp_path):
    # six subjects, one whose BOLD -> T1w second start landed 4.2 mm away: flagged, with the distance,
    # although its other numbers are ordinary (robust z alone would not catch a shared bad pose)
    units = []
    for k in range(6):
        path = tmp_path / f"sub-{k}_desc-boldtot1w_qc.tsv"
        doubtful = k == 3
        pd.DataFrame([{"bold_t1w_second_start_mm": 4.2 if doubtful else 0.05 + 0.01 * k,
                       "bold_t1w_registration_doubtful": doubtful}]).to_csv(path, sep="\t", index=False)
        units.append(report.Unit(participant_id=f"sub-{k}", subject=str(k), session=None, source_dir=str(tmp_path),
                                 qc_tables=[str(path)]))
    spec = report.ReportSpec(output_dir=str(tmp_path), participants="", atlases=["HOA"], methods=["spearman"],
                             groups=["A"], units=units)
    table = report.qc_table(spec, pd.DataFrame(), None).set_index("participant_id")
    assert table["outlier"].sum() == 1 and table.loc["sub-3", "outlier"]
    assert "converged 4.2 mm away" in table.loc["sub-3", "outlier_measures"]


def test_methods_paragraph_names_the_site_covariate_when_not_harmonised():
    config = {"input": "connectomes", "connectomes_dirs": ["a"], "atlases": ["HOA"], "groups": ["TRD", "nTRD"],
              "covariates": ["age"], "site_column": "site", "stats": {"harmonize": False, "alpha": 0.05}}
    text = report.methods_paragraph(config, ["spearman"])
    assert "adjusting for age, site" in text and "ComBat" not in text
    config["stats"]["harmonize"] = True
    assert "after ComBat harmonisation across site" in report.methods_paragraph(config, ["spearman"])
