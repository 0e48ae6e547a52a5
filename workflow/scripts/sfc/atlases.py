"""Atlases: the registry in resources/atlases, finding and verifying images, building HOA.

An atlas image is looked for, in this order, in the configured atlas directory
(config key ``atlas_dir``), in ``$SFC_ATLAS_DIR``, and in the download cache
(``$SFC_CACHE_DIR``, default ``~/.cache/sfc-workflow``); where downloads are allowed a
missing file is fetched into the cache from its registered URLs, or from a mirror
(``atlas_mirror`` / ``$SFC_ATLAS_MIRROR``; see sfc.fetch). Every file is
verified (size and checksum where the official bytes are known, grid and label
values always) before use, and the prepared atlas is written with values
``1..N`` in the order of its label table, so matrix row ``k`` is label-table
row ``k``.

References
----------
Fan L, et al. The Human Brainnetome Atlas. Cereb Cortex 2016;26:3508-3526.
Desikan RS, et al. NeuroImage 2006;31:968-980 (Harvard-Oxford, with Makris 2006,
Frazier 2005, Goldstein 2007).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import yaml

from . import fetch
from .errors import InputError

RESOURCES = Path(__file__).resolve().parents[3] / "resources" / "atlases"
ATLAS_DIR_ENV = "SFC_ATLAS_DIR"


@lru_cache(maxsize=1)
def registry() -> dict:
    """The atlas registry (resources/atlases/registry.yaml) as a dict keyed by atlas name."""
    with open(RESOURCES / "registry.yaml") as handle:
        return yaml.safe_load(handle)


def atlas_names() -> list[str]:
    return list(registry())


def entry(name: str) -> dict:
    reg = registry()
    if name not in reg:
        raise InputError(RESOURCES / "registry.yaml", f"unknown atlas '{name}'",
                         f"use one of {', '.join(reg)} in the config key `atlases`, "
                         "or register a new atlas in resources/atlases/registry.yaml")
    return reg[name]


def label_table(name: str) -> pd.DataFrame:
    """The atlas label table (index, name, hemisphere, lobe, gyrus, ...) in matrix order."""
    return pd.read_csv(RESOURCES / entry(name)["labels"], sep="\t")


def default_cache_dir() -> Path:
    return fetch.cache_dir("atlases")


def search_dirs(atlas_dir=None) -> list[Path]:
    """Folders searched for atlas images, in order: config, environment, cache."""
    dirs = [atlas_dir, os.environ.get(ATLAS_DIR_ENV), default_cache_dir()]
    return [Path(d).expanduser() for d in dirs if d]


def find_source(atlas: str, role: str, source: dict, atlas_dir=None, allow_download: bool = True,
                mirror=None) -> Path:
    """Locate (or download) one verified source file of an atlas.

    ``mirror`` is the config key ``atlas_mirror`` (None: ``$SFC_ATLAS_MIRROR``); with a
    mirror, every file is fetched from ``<mirror>/<official file name>``.
    """
    what = f"{atlas} atlas image" if role == "image" else f"{atlas} {role} atlas image"
    rejected = []
    for folder in search_dirs(atlas_dir):
        for rel in [source["filename"], *source.get("candidates", [])]:
            path = folder / rel
            if path.is_file():
                problems = fetch.verify(path, source)
                if not problems:
                    return path
                rejected.append((path, "; ".join(problems)))
    if rejected:
        bad_path, problem = rejected[0]
        raise InputError(bad_path, f"the {what} was found but {problem}",
                         f"replace it with the official {source['filename']} "
                         f"({entry(atlas)['homepage']})")
    mirror_base = fetch.mirror(mirror)
    downloadable = bool(fetch.source_urls(source, mirror_base))
    local_fix = (f"download {source['filename']} from {entry(atlas)['homepage']} and put it into the folder "
                 f"named by the config key atlas_dir or ${ATLAS_DIR_ENV}")
    if allow_download and downloadable:
        return fetch.download(source, default_cache_dir() / source["filename"], mirror_base=mirror_base,
                              local_fix=local_fix)
    where = [str(d) for d in search_dirs(atlas_dir)]
    how = ("allow downloads (atlas_download: true), or " if downloadable else
           f"set a mirror that holds it (atlas_mirror or ${fetch.MIRROR_ENV}), or ")
    raise InputError(where[0] if where else None,
                     f"the {what} {source['filename']} was not found "
                     f"(looked in: {', '.join(where) or 'no atlas folder configured'})",
                     how + local_fix)


def _sources(atlas: str, resolution) -> dict:
    sources = entry(atlas)["sources"]
    key = str(int(float(resolution)))
    if key not in sources:
        raise InputError(RESOURCES / "registry.yaml", f"atlas {atlas} has no {key} mm image",
                         f"set atlas_resolution to one of {', '.join(sources)}")
    return sources[key]


def ensure_available(names, atlas_dir=None, resolution=2, allow_download: bool = True, mirror=None) -> dict:
    """Find (downloading where allowed) and verify every source file of the named atlases.

    For code that reads atlases later without downloading (the simulators): afterwards
    each file is in ``atlas_dir``, ``$SFC_ATLAS_DIR`` or the cache. Returns
    ``{atlas: {role: path}}``.
    """
    return {name: {role: find_source(name, role, src, atlas_dir, allow_download, mirror)
                   for role, src in _sources(name, resolution).items()} for name in names}


def build_hoa(cortical: nib.Nifti1Image, subcortical: nib.Nifti1Image, labels: pd.DataFrame) -> nib.Nifti1Image:
    """Lateralised Harvard-Oxford: cortical split at x = 0 mm plus subcortical nuclei.

    Cortical value ``v`` becomes ``v`` in the left hemisphere (x < 0 mm) and
    ``48 + v`` in the right; the kept subcortical nuclei (label table rows with
    ``source == 'subcortical'``) get indices 97-110 and take precedence where they
    overlap cortex (hippocampus and amygdala are defined only there). White
    matter, cortex, ventricles and brainstem of the subcortical atlas are dropped.
    Voxels at exactly x = 0 mm go to the right, so no voxel is labelled twice.
    """
    cort = np.rint(np.asanyarray(cortical.dataobj)).astype(np.int16)
    sub = np.rint(np.asanyarray(subcortical.dataobj)).astype(np.int16)
    if cort.shape != sub.shape or not np.allclose(cortical.affine, subcortical.affine, atol=1e-3):
        raise InputError(None, "the Harvard-Oxford cortical and subcortical images are on different grids",
                         "use the pair of the same resolution from one FSL release")
    i, j, k = np.indices(cort.shape[:3])
    x_mm = (cortical.affine[0, 0] * i + cortical.affine[0, 1] * j + cortical.affine[0, 2] * k
            + cortical.affine[0, 3])
    out = np.zeros(cort.shape, dtype=np.int16)
    cortex = cort > 0
    out[cortex & (x_mm < 0)] = cort[cortex & (x_mm < 0)]
    out[cortex & (x_mm >= 0)] = cort[cortex & (x_mm >= 0)] + 48
    for row in labels[labels["source"] == "subcortical"].itertuples():
        out[sub == row.source_value] = row.index
    header = cortical.header.copy()
    header.set_data_dtype(np.int16)
    img = nib.Nifti1Image(out, cortical.affine, header)
    img.header["descrip"] = b"sfc-workflow HOA (lateralised Harvard-Oxford)"
    return img


def load_atlas_image(name: str, atlas_dir=None, resolution=2, allow_download: bool = True,
                     mirror=None) -> nib.Nifti1Image:
    """The atlas in MNI152NLin6Asym (FSL grid) with values 1..N in label-table order."""
    spec = entry(name)
    sources = _sources(name, resolution)
    paths = {role: find_source(name, role, src, atlas_dir, allow_download, mirror) for role, src in sources.items()}
    labels = label_table(name)
    if spec["build"] == "single":
        img = nib.load(paths["image"])
        data = np.rint(np.asanyarray(img.dataobj)).astype(np.int16)
        img = nib.Nifti1Image(data, img.affine, img.header)
        img.header.set_data_dtype(np.int16)
    elif spec["build"] == "harvard_oxford_lateralised":
        img = build_hoa(nib.load(paths["cortical"]), nib.load(paths["subcortical"]), labels)
    else:
        raise InputError(RESOURCES / "registry.yaml", f"unknown build '{spec['build']}' for {name}",
                         "use build: single or harvard_oxford_lateralised")
    present = set(np.unique(np.asanyarray(img.dataobj))) - {0}
    expected = set(labels["index"])
    if present != expected or len(expected) != spec["n_labels"]:
        raise InputError(paths[next(iter(paths))], f"the {name} image holds {len(present)} labels, "
                         f"the label table {len(expected)}, the registry {spec['n_labels']}",
                         "check that the image and resources/atlases label table belong together")
    return img


@dataclass
class PreparedAtlas:
    image: Path
    labels: Path
    n_labels: int


def prepare_atlas(name: str, image_out, labels_out, atlas_dir=None, resolution=2,
                  allow_download: bool = True, mirror=None) -> PreparedAtlas:
    """Write the verified atlas image and its label table (with voxel counts) to the output folder."""
    img = load_atlas_image(name, atlas_dir, resolution, allow_download, mirror)
    labels = label_table(name)
    counts = np.bincount(np.asanyarray(img.dataobj).ravel(), minlength=labels["index"].max() + 1)
    labels = labels.assign(n_voxels=counts[labels["index"].to_numpy()])
    Path(image_out).parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, image_out)
    labels.to_csv(labels_out, sep="\t", index=False, na_rep="n/a")
    return PreparedAtlas(Path(image_out), Path(labels_out), len(labels))


def citation(name: str) -> str:
    return " ".join(entry(name)["citation"].split())
