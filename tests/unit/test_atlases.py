"""sfc.atlases: images are found, verified, built (HOA) and written in label-table order."""

import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from conftest import FolderServer
from sfc import atlases
from sfc.errors import InputError


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SFC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SFC_ATLAS_DIR", raising=False)
    monkeypatch.delenv("SFC_ATLAS_MIRROR", raising=False)


def centroids_x(img):
    data = np.asanyarray(img.dataobj)
    ijk = np.argwhere(data > 0)
    labels = data[data > 0]
    x = (ijk @ img.affine[:3, :3].T + img.affine[:3, 3])[:, 0]
    sums = np.bincount(labels, weights=x)
    counts = np.bincount(labels)
    present = counts > 0
    return {int(k): sums[k] / counts[k] for k in np.flatnonzero(present)}


def test_label_tables_match_registry_counts():
    for name in ("BNA246", "HOA"):
        table = atlases.label_table(name)
        assert len(table) == atlases.entry(name)["n_labels"]
        assert list(table["index"]) == list(range(1, len(table) + 1))
        assert table["name"].is_unique and set(table["hemisphere"]) <= {"L", "R"}


def test_bna246_loads_with_246_labels_and_left_on_the_left(atlas_dir):
    img = atlases.load_atlas_image("BNA246", atlas_dir, resolution=2, allow_download=False)
    assert img.shape == (91, 109, 91)
    x = centroids_x(img)
    table = atlases.label_table("BNA246").set_index("index")
    assert len(x) == 246
    wrong_side = [i for i, cx in x.items() if (cx < 0) != (table.loc[i, "hemisphere"] == "L")]
    assert wrong_side == []


def test_hoa_is_lateralised_cortex_plus_subcortical_nuclei(atlas_dir):
    img = atlases.load_atlas_image("HOA", atlas_dir, resolution=2, allow_download=False)
    table = atlases.label_table("HOA").set_index("index")
    x = centroids_x(img)
    assert sorted(x) == list(range(1, 111))
    wrong_side = [table.loc[i, "name"] for i, cx in x.items() if (cx < 0) != (table.loc[i, "hemisphere"] == "L")]
    assert wrong_side == []
    # Left and right halves of a cortical label have mirror-image centroids (the split is at x = 0).
    assert x[4] == pytest.approx(-x[52], abs=4.0)  # Left/Right Middle Frontal Gyrus
    # The subcortical atlas's white matter, cortex, ventricles and brainstem are not labels.
    names = set(table["name"])
    assert not any(k in n for n in names for k in ("White_Matter", "Cerebral_Cortex", "Ventric", "Stem"))
    assert {"Left_Hippocampus", "Right_Amygdala", "Left_Accumbens"} <= names


def test_hoa_subcortical_nuclei_take_precedence_over_cortex(atlas_dir):
    img = atlases.load_atlas_image("HOA", atlas_dir, resolution=2, allow_download=False)
    sub = nib.load(atlas_dir / "harvard-oxford/fsl-original_2mm/harvardoxford_subcortical_labels.nii.gz")
    data, sub_data = np.asanyarray(img.dataobj), np.rint(np.asanyarray(sub.dataobj))
    # every voxel of the left hippocampus (HO-sub value 9) is HOA label 101
    assert np.all(data[sub_data == 9] == 101)


def test_one_mm_hoa_has_the_same_labels(atlas_dir):
    img = atlases.load_atlas_image("HOA", atlas_dir, resolution=1, allow_download=False)
    assert img.shape == (182, 218, 182)
    assert len(np.unique(np.asanyarray(img.dataobj))) == 111


def test_missing_brainnetome_says_where_to_get_it_and_put_it(tmp_path):
    with pytest.raises(InputError) as err:
        atlases.load_atlas_image("BNA246", tmp_path, resolution=1)
    message = str(err.value)
    assert "BNA246 atlas image BN_Atlas_246_1mm.nii.gz was not found" in message
    assert str(tmp_path) in message and "atlas.brainnetome.org" in message and "SFC_ATLAS_DIR" in message


def test_atlas_dir_from_environment_is_used(atlas_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("SFC_ATLAS_DIR", str(atlas_dir))
    assert atlases.load_atlas_image("BNA246", None, allow_download=False).shape == (91, 109, 91)


def test_corrupted_atlas_is_refused_naming_the_file(atlas_dir, tmp_path):
    bad = tmp_path / "BN_Atlas_246_2mm.nii.gz"
    img = nib.load(atlas_dir / "bna246/BN_Atlas_246_2mm.nii.gz")
    data = np.asanyarray(img.dataobj).copy()
    data[data == 17] = 0  # one region lost
    nib.save(nib.Nifti1Image(data, img.affine, img.header), bad)
    with pytest.raises(InputError) as err:
        atlases.load_atlas_image("BNA246", tmp_path, allow_download=False)
    assert str(bad) in str(err.value) and "size or checksum differs from the official file" in str(err.value)


def test_wrong_labels_are_refused_where_checksum_is_not_required(atlas_dir, tmp_path):
    src = atlas_dir / "harvard-oxford/fsl-original_2mm"
    dst = tmp_path / "harvard-oxford/fsl-original_2mm"
    shutil.copytree(src, dst)
    cort = nib.load(dst / "harvardoxford_cortical_labels.nii.gz")
    data = np.asanyarray(cort.dataobj).copy()
    data[data == 48] = 0
    nib.save(nib.Nifti1Image(data, cort.affine, cort.header), dst / "harvardoxford_cortical_labels.nii.gz")
    with pytest.raises(InputError, match=r"label values differ from the official ones \(missing \[48\]"):
        atlases.load_atlas_image("HOA", tmp_path, allow_download=False)


@pytest.fixture
def served(tmp_path):
    """A local HTTP server (loopback only) standing in for the atlas distributor."""
    root = tmp_path / "www"
    root.mkdir()
    server = FolderServer(root)
    yield root, server.url
    server.close()


def _point_hoa_2mm_at(monkeypatch, base_url):
    reg = {k: dict(v) for k, v in atlases.registry().items()}
    sources = {role: {**src, "url": f"{base_url}/{src['filename']}"}
               for role, src in reg["HOA"]["sources"]["2"].items()}
    reg["HOA"] = {**reg["HOA"], "sources": {"2": sources}}
    monkeypatch.setattr(atlases, "registry", lambda: reg)


def test_download_is_verified_and_cached(atlas_dir, served, monkeypatch, tmp_path):
    root, url = served
    src = atlas_dir / "harvard-oxford/fsl-original_2mm"
    shutil.copy(src / "harvardoxford_cortical_labels.nii.gz", root / "HarvardOxford-cort-maxprob-thr25-2mm.nii.gz")
    shutil.copy(src / "harvardoxford_subcortical_labels.nii.gz", root / "HarvardOxford-sub-maxprob-thr25-2mm.nii.gz")
    _point_hoa_2mm_at(monkeypatch, url)
    img = atlases.load_atlas_image("HOA", tmp_path / "empty", resolution=2, allow_download=True)
    assert len(np.unique(np.asanyarray(img.dataobj))) == 111
    cached = sorted(p.name for p in (tmp_path / "cache" / "atlases").glob("*.nii.gz"))
    assert cached == ["HarvardOxford-cort-maxprob-thr25-2mm.nii.gz", "HarvardOxford-sub-maxprob-thr25-2mm.nii.gz"]


def test_bad_download_is_refused_and_not_kept(served, monkeypatch, tmp_path):
    root, url = served
    (root / "HarvardOxford-cort-maxprob-thr25-2mm.nii.gz").write_bytes(b"<html>login required</html>")
    _point_hoa_2mm_at(monkeypatch, url)
    with pytest.raises(InputError, match="downloaded file failed verification"):
        atlases.load_atlas_image("HOA", tmp_path / "empty", resolution=2, allow_download=True)
    assert [p.name for p in (tmp_path / "cache" / "atlases").iterdir()] == [".locks"]


def test_prepare_atlas_writes_image_and_table_in_matrix_order(atlas_dir, tmp_path):
    out = atlases.prepare_atlas("HOA", tmp_path / "a.nii.gz", tmp_path / "a.tsv", atlas_dir, allow_download=False)
    table = pd.read_csv(out.labels, sep="\t")
    data = np.asanyarray(nib.load(out.image).dataobj)
    assert out.n_labels == 110 and list(table["index"]) == list(range(1, 111))
    assert table.loc[table["name"] == "Left_Hippocampus", "n_voxels"].item() == int((data == 101).sum())
    assert (table["n_voxels"] > 0).all()
