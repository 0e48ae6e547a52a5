"""sfc.anat: 5TT assembly, template loading, and a real T1w through N4, registration, atlas and 5TT."""

from __future__ import annotations

import os
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from sfc import anat, io, mrtrix
from sfc.errors import InputError

SHARED = Path(os.environ.get("SFC_SHARED_DATA", "/work/shared/data"))
ATLAS_DIR = Path(os.environ.get("SFC_ATLAS_DIR", SHARED / "atlases"))
TEMPLATES = SHARED / "templates" / "mni152-fsl"
T1 = SHARED / "mri" / "niivue-demo-images" / "chris_t1.nii.gz"
REPO = Path(__file__).resolve().parents[2]


def test_five_tt_volumes_are_in_mrtrix_order_and_sum_to_one_in_the_mask():
    csf = np.array([1.0, 0.0, 0.2, 0.0, 0.5])
    gm = np.array([0.0, 2.0, 0.6, 0.0, 0.5])
    wm = np.array([0.0, 0.0, 0.2, 0.0, 0.0])
    mask = np.array([True, True, True, True, False])
    five = anat.five_tt_from_probabilities(csf, gm, wm, mask)
    assert five.shape == (5, 5) and five.dtype == np.float32
    # voxel 0 all CSF (vol 3), voxel 1 all cGM (vol 0, rescaled from 2), voxel 2 mixed
    np.testing.assert_allclose(five[0], [0, 0, 0, 1, 0])
    np.testing.assert_allclose(five[1], [1, 0, 0, 0, 0])
    np.testing.assert_allclose(five[2], [0.6, 0, 0.2, 0.2, 0], rtol=1e-6)
    np.testing.assert_allclose(five[3], [0, 0, 0, 1, 0])  # no probability at all -> CSF
    np.testing.assert_allclose(five[4], 0)  # outside the mask
    np.testing.assert_allclose(five[:4].sum(axis=1), 1, rtol=1e-6)
    assert np.all(five[:, 4] == 0)  # pathological tissue


def test_five_tt_moves_grey_matter_of_subcortical_voxels_to_sgm():
    five = anat.five_tt_from_probabilities([0.1, 0.1], [0.6, 0.6], [0.3, 0.3], [True, True],
                                           subcortical=[False, True])
    np.testing.assert_allclose(five[0], [0.6, 0, 0.3, 0.1, 0], rtol=1e-6)
    np.testing.assert_allclose(five[1], [0, 0.6, 0.3, 0.1, 0], rtol=1e-6)


def test_template_dir_without_template_names_the_file(tmp_path):
    with pytest.raises(InputError, match="MNI152_T1_2mm.nii.gz") as exc:
        anat.load_template(tmp_path)
    assert "template_dir" in str(exc.value)


@pytest.mark.skipif(not (TEMPLATES / anat.FSL_HEAD).exists(), reason=f"FSL MNI152 template absent in {TEMPLATES}")
def test_fsl_template_mask_made_from_1mm_brain_is_on_the_2mm_grid():
    tpl = anat.load_template(TEMPLATES)
    assert tpl.image.shape == (91, 109, 91) and tpl.mask.shape == (91, 109, 91)
    n = int(tpl.mask.numpy().sum())
    # 1 827 095 brain voxels at 1 mm = ~228 000 at 2 mm (8 mm^3 each)
    assert abs(n - 1_827_095 / 8) / (1_827_095 / 8) < 0.02
    assert tpl.space == "MNI152NLin6Asym"


@pytest.mark.slow
@pytest.mark.skipif(not (T1.exists() and (TEMPLATES / anat.FSL_HEAD).exists()
                         and (ATLAS_DIR / "bna246" / "BN_Atlas_246_2mm.nii.gz").exists()),
                    reason="shared real T1w / MNI template / BNA atlas absent (set SFC_SHARED_DATA, SFC_ATLAS_DIR)")
def test_real_t1_n4_registration_atlas_and_5tt(tmp_path):
    """Real T1w (resampled to 2 mm for speed) -> N4 -> affine MNI registration -> BNA in T1w -> 5TT."""
    from sfc import registration

    times = {}
    t1 = registration.load(T1)
    t1 = registration._ants().resample_image(t1, (2.0, 2.0, 2.0), False, 0)
    registration.save(t1, tmp_path / "t1.nii.gz")
    tpl = anat.load_template(TEMPLATES)
    t = time.perf_counter()
    qc = anat.preprocess_t1(tmp_path / "t1.nii.gz", tpl, tmp_path / "t1_n4.nii.gz", tmp_path / "mask.nii.gz",
                            tmp_path / "brain.nii.gz", tmp_path / "t1_to_mni_", transform="Affine", quick=True)
    times["preprocess_t1"] = time.perf_counter() - t
    # affine-only still leaves the file set of a SyN run (identity warps), as later rules expect
    for name in ("0GenericAffine.mat", "1Warp.nii.gz", "1InverseWarp.nii.gz"):
        assert (tmp_path / f"t1_to_mni_{name}").exists()
    t = time.perf_counter()
    labels = anat.atlas_to_t1(ATLAS_DIR / "bna246" / "BN_Atlas_246_2mm.nii.gz", tmp_path / "t1_n4.nii.gz",
                              tmp_path / "t1_to_mni_", tmp_path / "bna_t1.nii.gz")
    times["atlas_to_t1"] = time.perf_counter() - t
    t = time.perf_counter()
    vols = anat.segment_5tt(tmp_path / "brain.nii.gz", tmp_path / "mask.nii.gz", tmp_path / "5tt.nii.gz")
    times["segment_5tt"] = time.perf_counter() - t
    # the same T1w gives the same tissue probabilities (Atropos seeded at random differed by 0.09)
    anat.segment_5tt(tmp_path / "brain.nii.gz", tmp_path / "mask.nii.gz", tmp_path / "5tt_again.nii.gz")
    np.testing.assert_array_equal(nib.load(tmp_path / "5tt.nii.gz").get_fdata(),
                                  nib.load(tmp_path / "5tt_again.nii.gz").get_fdata())
    anat.plot_overlay(tmp_path / "t1_n4.nii.gz", tmp_path / "bna_t1.nii.gz", tmp_path / "qc.png", "BNA on T1w")
    print("\nper-step wall time (s):", {k: round(v, 1) for k, v in times.items()}, "qc:", qc, "volumes:", vols)

    # registration improved the match to the template over the un-registered image
    raw_in_mni = registration.apply(tmp_path / "t1.nii.gz", tpl.image, []).numpy()
    nmi_before = registration.normalized_mutual_information(raw_in_mni, tpl.image.numpy(),
                                                            mask=tpl.mask.numpy() > 0)
    assert qc["nmi_t1_mni"] > nmi_before
    # an adult brain (with ventricles, no skull): 1000-1900 ml
    assert 1000 < qc["brain_volume_ml"] < 1900
    # the atlas lands inside the brain mask and keeps its labels
    mask = nib.load(tmp_path / "mask.nii.gz").get_fdata() > 0
    assert (labels > 0).sum() > 0 and ((labels > 0) & mask).sum() / (labels > 0).sum() > 0.95
    table = io.read_labels(REPO / "resources" / "atlases" / "atlas-BNA246_dseg.tsv")
    assert set(np.unique(labels).astype(int)) - {0} <= set(table["index"])
    assert len(np.unique(labels)) - 1 >= 240
    assert nib.load(tmp_path / "bna_t1.nii.gz").get_data_dtype() == np.int16
    # tissue volumes of an adult: GM and WM each 350-900 ml, WM/GM 0.6-1.4
    assert 350 < vols["gm_ml"] < 900 and 350 < vols["wm_ml"] < 900
    assert 0.6 < vols["wm_ml"] / vols["gm_ml"] < 1.4
    # the 5TT image is valid for MRtrix3's ACT
    if mrtrix.have("5ttcheck"):
        mrtrix.run(["5ttcheck", tmp_path / "5tt.nii.gz"])
    assert (tmp_path / "qc.png").stat().st_size > 5000


def test_without_any_fsl_template_nilearn_mni2009_is_used_and_says_so(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv(anat.TEMPLATE_DIR_ENV, str(tmp_path))  # empty: no template there
    monkeypatch.setattr(anat, "RESOURCES_TEMPLATES", tmp_path / "absent")
    monkeypatch.setenv("SFC_CACHE_DIR", str(tmp_path / "cache"))  # no templates downloaded earlier
    with caplog.at_level("WARNING", logger="sfc.anat"):
        tpl = anat.load_template(None)
    assert tpl.space == "MNI152NLin2009cAsym" and not tpl.is_head
    assert tpl.mask.numpy().sum() > 100_000  # a brain mask at 2 mm
    assert "MNI152 2009" in caplog.text


@pytest.mark.skipif(not (TEMPLATES / anat.FSL_HEAD).exists(), reason=f"FSL MNI152 template absent in {TEMPLATES}")
def test_template_dir_from_environment(monkeypatch):
    monkeypatch.setenv(anat.TEMPLATE_DIR_ENV, str(TEMPLATES))
    assert anat.load_template(None).source == str(TEMPLATES / anat.FSL_HEAD)


def test_qc_pictures_draw_anisotropic_images_without_loading_antspyx(tmp_path):
    """The QC pictures read with nibabel: a plotting-only job (dwi_tensor's FA picture) must not
    pay antspyx's import (~3 s CPU per job), and slices of 2.5 x 2.5 x 5 mm voxels keep their shape."""
    import subprocess
    import sys

    from PIL import Image

    data = np.zeros((20, 24, 10), dtype=np.float32)
    data[4:16, 4:20, 2:8] = 1.0
    labels = (data > 0).astype(np.int16) * (np.indices(data.shape)[0] // 5 + 1).astype(np.int16)
    affine = np.diag([2.5, 2.5, 5.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "fa.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / "labels.nii.gz")
    code = (f"import sys; sys.path.insert(0, {str(REPO / 'workflow' / 'scripts')!r}); from sfc import anat; "
            f"anat.plot_map({str(tmp_path / 'fa.nii.gz')!r}, {str(tmp_path / 'fa.png')!r}, 'FA'); "
            f"anat.plot_overlay({str(tmp_path / 'fa.nii.gz')!r}, {str(tmp_path / 'labels.nii.gz')!r}, "
            f"{str(tmp_path / 'overlay.png')!r}, 'atlas'); print('ants' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert Image.open(tmp_path / "fa.png").size == Image.open(tmp_path / "overlay.png").size == (720, 272)
    # the sagittal slice (24 x 10 voxels of 2.5 x 5 mm) is drawn 60 mm wide and 50 mm high, not 24 x 10
    assert anat._aspects(nib.load(tmp_path / "fa.nii.gz").header.get_zooms()) == [2.0, 2.0, 1.0]


def test_use_fsl_true_without_fsl_stops_instead_of_falling_back(monkeypatch, tmp_path):
    monkeypatch.setattr(anat, "fsl_available", lambda: False)
    with pytest.raises(InputError, match="anat.use_fsl is true but FSL's fast and run_first_all are not on PATH"):
        anat.five_tt(tmp_path / "t1.nii.gz", tmp_path / "brain.nii.gz", tmp_path / "mask.nii.gz",
                     tmp_path / "5tt.nii.gz", use_fsl=True)
    assert not (tmp_path / "5tt.nii.gz").exists()
