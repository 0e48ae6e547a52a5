"""Small BIDS trees for tests and benchmarks (headers only, no real MRI content).

The images are tiny (2 x 2 x 2 voxels) but valid NIfTI with the right number
of volumes, so discovery checks the gradient tables exactly as on real data;
a dry run needs nothing more.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

GROUPS = ("TRD", "nTRD", "HC")
HEADER = ["participant_id", "group", "age", "sex", "site", "education_years", "hamd24_pre", "hamd24_post", "bsi"]


def tiny_nifti(path, n_volumes: int = 1) -> Path:
    shape = (2, 2, 2) + ((n_volumes,) if n_volumes > 1 else ())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros(shape, dtype=np.int16), np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return path


def participant_row(index: int, subject: str) -> list:
    group = GROUPS[index % 3]
    return [f"sub-{subject}", group, str(20 + index % 40), "MF"[index % 2], f"site{index % 2 + 1}",
            str(9 + index % 10), "n/a" if group == "HC" else str(30 + index % 5), "n/a" if group == "HC" else "10",
            str(index % 20)]


def write_participants(bids_dir, rows, header=HEADER) -> Path:
    path = Path(bids_dir) / "participants.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows))
    return path


def make_subject(bids_dir, subject: str, session: str | None = None, n_dwi: int = 7,
                 t1w: bool = True, dwi: bool = True, bold: bool = True, tr: float | None = 2.0) -> Path:
    """Write one subject's T1w, DWI (+bval/bvec/json) and rest BOLD (+json)."""
    base = Path(bids_dir) / f"sub-{subject}"
    prefix = f"sub-{subject}"
    if session:
        base, prefix = base / f"ses-{session}", f"{prefix}_ses-{session}"
    if t1w:
        tiny_nifti(base / "anat" / f"{prefix}_T1w.nii.gz")
    if dwi:
        stem = base / "dwi" / f"{prefix}_dwi"
        tiny_nifti(f"{stem}.nii.gz", n_dwi)
        bvals = [0] + [1000] * (n_dwi - 1)
        Path(f"{stem}.bval").write_text(" ".join(map(str, bvals)) + "\n")
        rng = np.random.default_rng(n_dwi)
        vecs = rng.normal(size=(3, n_dwi))
        vecs /= np.linalg.norm(vecs, axis=0)
        vecs[:, 0] = 0
        Path(f"{stem}.bvec").write_text("\n".join(" ".join(f"{v:.6f}" for v in row) for row in vecs) + "\n")
        Path(f"{stem}.json").write_text(json.dumps({"PhaseEncodingDirection": "j-", "TotalReadoutTime": 0.05}))
    if bold:
        stem = base / "func" / f"{prefix}_task-rest_bold"
        tiny_nifti(f"{stem}.nii.gz", 10)
        Path(f"{stem}.json").write_text(json.dumps({"RepetitionTime": tr} if tr else {"TaskName": "rest"}))
    return base


def make_dataset(bids_dir, n_subjects: int, sessions=(None,)) -> Path:
    """A complete fake cohort of ``n_subjects`` with participants.tsv and dataset_description.json."""
    bids_dir = Path(bids_dir)
    rows = []
    for i in range(n_subjects):
        subject = f"{i + 1:04d}"
        for session in sessions:
            make_subject(bids_dir, subject, session)
        rows.append(participant_row(i, subject))
    write_participants(bids_dir, rows)
    (bids_dir / "dataset_description.json").write_text(
        json.dumps({"Name": "fake cohort", "BIDSVersion": "1.9.0", "DatasetType": "raw"}))
    return bids_dir
