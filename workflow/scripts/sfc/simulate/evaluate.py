"""How close a workflow run on the synthetic cohort came to the generator's ground truth.

For each subject of an image-level cohort (:func:`sfc.simulate.images.simulate_bids_cohort`)
and each atlas, compare the workflow's outputs with the truth folder:

- **atlas in DWI space** (registration): the workflow's node image
  (``sub-*/dwi/*_space-dwi_atlas-*_dseg.nii.gz``) against the atlas sampled through the
  generator's true scanner -> MNI transform on the same grid: mean Dice over regions, and
  the mean displacement (mm) of region centroids;
- **SC**: Spearman correlation over edges (upper triangle) of the workflow's streamline
  counts with the true streamline counts;
- **motion**: Pearson correlation of the estimated realignment parameters with the true
  motion, per parameter (built-in functional route);
- **FC**: Spearman correlation over edges with the true (model) FC;
- **SFC**: Pearson correlation over regions of the workflow's regional spearman coupling with
  the true coupling.

The command line ``python -m sfc.simulate evaluate OUTPUT_DIR TRUTH_DIR`` writes the table.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from .. import io, paths
from ..confounds import MOTION_COLUMNS

MOTION_NAMES = list(MOTION_COLUMNS)


def _upper(m: np.ndarray) -> np.ndarray:
    return m[np.triu_indices(len(m), 1)]


def edge_spearman(estimate, truth) -> float:
    """Spearman correlation of two matrices over the finite entries of their upper triangles."""
    a, b = _upper(np.asarray(estimate, float)), _upper(np.asarray(truth, float))
    ok = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[ok], b[ok]).statistic) if ok.sum() > 2 else float("nan")


def true_labels_on_grid(reference: nib.Nifti1Image, transform, atlas_img: nib.Nifti1Image,
                        table_index) -> np.ndarray:
    """Atlas nodes (1..N in label-table order) on ``reference``'s grid through the true transform.

    Each voxel centre ``y`` (scanner mm) goes to ``x = transform.to_mni(y)``, where the atlas
    is read by nearest neighbour: what a perfect registration would give.
    """
    from ..dwi import relabel_to_table
    from .images import grid_points

    shape = reference.shape[:3]
    values = _labels_at(atlas_img, transform.to_mni(grid_points(shape, reference.affine)))
    return relabel_to_table(values.reshape(shape), table_index)


def _labels_at(labels: nib.Nifti1Image, xyz: np.ndarray) -> np.ndarray:
    """Values of ``labels`` at world points ``xyz`` (N x 3), nearest neighbour, 0 outside its grid."""
    inv = np.linalg.inv(labels.affine)
    vox = np.rint(xyz @ inv[:3, :3].T + inv[:3, 3]).astype(int)
    inside = np.all((vox >= 0) & (vox < np.array(labels.shape[:3])), axis=1)
    values = np.zeros(len(xyz), np.int64)
    values[inside] = np.asarray(labels.dataobj)[tuple(vox[inside].T)]
    return values


def label_agreement(estimate: np.ndarray, truth: np.ndarray, affine: np.ndarray, n_regions: int) -> dict:
    """Mean Dice over the regions present in ``truth`` and mean centroid displacement (mm).

    Both images hold node numbers 1..``n_regions`` (0 = background) on one grid.
    """
    est, tru = estimate.ravel().astype(np.int64), truth.ravel().astype(np.int64)
    n = n_regions + 1
    size_e = np.bincount(est, minlength=n)[1:]
    size_t = np.bincount(tru, minlength=n)[1:]
    both = np.bincount(est[est == tru], minlength=n)[1:]
    present = size_t > 0
    dice = 2 * both[present] / (size_e[present] + size_t[present])
    # centroids (mm) of the regions present in both images
    ijk = np.indices(estimate.shape).reshape(3, -1).T.astype(float)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]

    def centroids(lab, size):
        sums = np.stack([np.bincount(lab, weights=xyz[:, k], minlength=n)[1:] for k in range(3)], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums / size[:, None]

    common = (size_e > 0) & present
    shift = np.linalg.norm(centroids(est, size_e)[common] - centroids(tru, size_t)[common], axis=1)
    return {"dice": float(dice.mean()), "centroid_mm": float(shift.mean()),
            "regions_found": float(common.sum() / max(present.sum(), 1))}


def on_grid(labels: nib.Nifti1Image, reference: nib.Nifti1Image) -> np.ndarray:
    """``labels`` read at ``reference``'s voxel centres (world coordinates, nearest neighbour; 0 outside)."""
    from .images import grid_points

    return _labels_at(labels, grid_points(reference.shape[:3], reference.affine)).reshape(reference.shape[:3])


def world_label_agreement(estimate: nib.Nifti1Image, reference: nib.Nifti1Image, n_regions: int) -> dict:
    """:func:`label_agreement` of two label images on different grids, compared in world space.

    ``estimate`` is read at ``reference``'s voxel centres. Grids that share voxel centres (one
    image stored in two voxel orders) compare exactly; between a grid and an oblique one the
    nearest-neighbour reading itself costs Dice (measure that floor with two true label images).
    """
    return label_agreement(on_grid(estimate, reference), np.asarray(reference.dataobj).astype(np.int64),
                           reference.affine, n_regions)


def evaluate_subject(output_dir, truth_dir, subject: str, atlases, motion: bool = True) -> dict:
    """Agreement of one subject's workflow outputs with the truth (see the module docstring).

    Returns
    -------
    dict
        ``participant_id`` and, per atlas ``A``: ``A_atlas_dice``, ``A_atlas_centroid_mm``,
        ``A_sc_spearman``, ``A_fc_spearman``, ``A_sfc_r``; and ``motion_r_<param>`` for the
        six realignment parameters when ``motion``.
    """
    from .images import load_transform

    out, truth = Path(output_dir), Path(truth_dir)
    tdir = truth / f"sub-{subject}"
    row: dict = {"participant_id": f"sub-{subject}"}
    xf = load_transform(truth, subject, "dwi")
    for atlas in atlases:
        labels = io.read_labels(paths.atlas_labels(out, atlas))
        nodes_path = paths.subject_file(out, "dwi", f"space-dwi_atlas-{atlas}_dseg.nii.gz", subject)
        nodes = nib.load(nodes_path)
        est = np.asarray(nodes.dataobj).astype(np.int64)
        tru = true_labels_on_grid(nodes, xf, nib.load(paths.atlas_image(out, atlas)), labels["index"])
        # the workflow masks its nodes with the DWI brain mask; judge registration, not the mask
        tru[est == 0] = 0
        agree = label_agreement(est, tru, nodes.affine, len(labels))
        row[f"{atlas}_atlas_dice"] = agree["dice"]
        row[f"{atlas}_atlas_centroid_mm"] = agree["centroid_mm"]
        sc = io.read_matrix(paths.sc_matrix(out, subject, None, atlas, "count"))
        row[f"{atlas}_sc_spearman"] = edge_spearman(sc, io.read_matrix(tdir / f"sub-{subject}_atlas-{atlas}_desc-true_sc.tsv"))
        fc = io.read_matrix(paths.fc_matrix(out, subject, None, atlas))
        row[f"{atlas}_fc_spearman"] = edge_spearman(fc, io.read_matrix(tdir / f"sub-{subject}_atlas-{atlas}_desc-true_fc.tsv"))
        sfc_path = Path(paths.sfc_table(out, subject, None, atlas, "spearman"))
        if sfc_path.is_file():
            est_sfc = pd.read_csv(sfc_path, sep="\t", na_values=["n/a"])["sfc"].to_numpy(float)
            true_sfc = pd.read_csv(tdir / f"sub-{subject}_atlas-{atlas}_desc-true_sfc.tsv", sep="\t",
                                   na_values=["n/a"])["sfc"].to_numpy(float)
            ok = np.isfinite(est_sfc) & np.isfinite(true_sfc)
            row[f"{atlas}_sfc_r"] = float(np.corrcoef(est_sfc[ok], true_sfc[ok])[0, 1]) if ok.sum() > 2 else np.nan
    if motion:
        est = pd.read_csv(paths.subject_file(out, "func", "task-rest_desc-confounds_timeseries.tsv", subject),
                          sep="\t", na_values=["n/a"])
        true = pd.read_csv(tdir / f"sub-{subject}_task-rest_desc-motion_truth.tsv", sep="\t")
        skip = len(true) - len(est)  # dummy volumes the workflow dropped
        for name in MOTION_NAMES:
            e, t = est[name].to_numpy(float), true[name].to_numpy(float)[skip:]
            row[f"motion_r_{name}"] = float(np.corrcoef(e, t)[0, 1]) if e.std() > 0 and t.std() > 0 else np.nan
    return row


def evaluate_run(output_dir, truth_dir, atlases=None, subjects=None, motion: bool = True) -> pd.DataFrame:
    """:func:`evaluate_subject` for every subject of the truth folder that the run processed."""
    truth = Path(truth_dir)
    planted = json.loads((truth / "planted.json").read_text())
    atlases = list(atlases or planted["planted"].keys())
    if subjects is None:
        subjects = sorted(p.name[4:] for p in truth.glob("sub-*") if p.is_dir())
    rows = [evaluate_subject(output_dir, truth, s, atlases, motion=motion) for s in subjects
            if Path(paths.sc_matrix(output_dir, s, None, atlases[0], "count")).is_file()]
    return pd.DataFrame(rows)
