"""Reading and writing the tables and matrices of INTERFACES.md.

Matrices are headerless, tab-separated, N x N, in the order of the atlas label
table. Region tables have a header (``index, name, <value>``).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError

MATRIX_FORMAT = "%.10g"


def nifti_header(path) -> dict:
    """``dims`` (x, y, z, volumes), ``voxel_mm`` (x, y, z), ``data_bytes`` and ``vox_offset``
    from the NIfTI-1/2 header alone (5x faster than nibabel.load).

    Raises ValueError for a file that is not NIfTI (truncated, empty, wrong format).
    """
    path = str(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        header = handle.read(540)
    for order in "<>":
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:
            dims = struct.unpack(order + "8h", header[40:56])
            bitpix = struct.unpack(order + "h", header[72:74])[0]
            pixdim = struct.unpack(order + "8f", header[76:108])
            offset = struct.unpack(order + "f", header[108:112])[0]
            break
        if len(header) >= 540 and struct.unpack(order + "i", header[:4])[0] == 540:
            dims = struct.unpack(order + "8q", header[16:80])
            bitpix = struct.unpack(order + "h", header[14:16])[0]
            pixdim = struct.unpack(order + "8d", header[104:168])
            offset = struct.unpack(order + "q", header[168:176])[0]
            break
    else:
        raise ValueError("no NIfTI header (empty, truncated or another format)")
    n_dims = dims[0]
    if not 1 <= n_dims <= 7:
        raise ValueError(f"invalid number of dimensions {n_dims} in the header")
    shape = tuple(int(dims[i]) if n_dims >= i else 1 for i in (1, 2, 3, 4))
    extra = int(np.prod([dims[i] for i in range(5, n_dims + 1)])) if n_dims > 4 else 1
    n_bytes = int(np.prod(shape, dtype=np.int64)) * extra * max(int(bitpix), 8) // 8
    return {"dims": shape, "voxel_mm": tuple(abs(float(v)) for v in pixdim[1:4]),
            "data_bytes": n_bytes, "vox_offset": int(offset)}


def nifti_dims(path) -> tuple[int, int, int, int]:
    """(x, y, z, volumes) from the NIfTI-1/2 header alone (:func:`nifti_header`).

    Discovery reads every DWI's volume count, and each per-subject job sizes its memory and
    time from its scans' dimensions (:mod:`sfc.resources`): at 10,000 subjects that is 30,000
    headers while the workflow is planned.
    """
    return nifti_header(path)["dims"]


def _gzip_member_sizes_ok(path: str, expected: int) -> bool:
    """Whether a .gz file decompresses to ``expected`` bytes: the gzip trailer's size field
    (last 4 bytes, size mod 2**32) first; a file written as several gzip members, whose last
    trailer counts only the last member, is decompressed in full to be sure."""
    with open(path, "rb") as handle:
        handle.seek(-4, os.SEEK_END)
        isize = struct.unpack("<I", handle.read(4))[0]
    if isize == expected % 2**32:
        return True
    total = 0
    try:
        with gzip.open(path, "rb") as handle:
            while chunk := handle.read(1 << 24):
                total += len(chunk)
    except (EOFError, OSError, zlib.error):
        return False
    return total >= expected


# Voxel sizes of a human brain scan (mm): outside, the affine or pixdim is wrong (e.g. scaled)
VOXEL_MM_RANGE = (0.1, 10.0)


class ScanProblem(ValueError):
    """A scan that cannot be used; the message says why (``<file> <message>`` reads as a sentence)."""


def checked_header(path) -> dict:
    """:func:`nifti_header` of a scan that can be used, or :class:`ScanProblem` saying why not.

    Cheap enough for discovery (a header and the last 4 bytes): a dangling symbolic link, an
    empty file, no NIfTI header, a file shorter than its header promises (an interrupted copy;
    for .nii.gz the gzip trailer's size, confirmed by decompressing when it disagrees), and
    voxel sizes no brain scan has (an affine scaled by 10, or by 0.1).
    """
    path = str(path)
    if os.path.islink(path) and not os.path.exists(path):
        raise ScanProblem(f"is a symbolic link to {os.readlink(path)}, which does not exist")
    if not os.path.isfile(path):
        raise ScanProblem("does not exist")
    size = os.path.getsize(path)
    if size == 0:
        raise ScanProblem("is empty (0 bytes)")
    try:
        info = nifti_header(path)
    except (OSError, EOFError, ValueError, struct.error, zlib.error) as exc:
        raise ScanProblem(f"cannot be read as NIfTI ({exc})") from None
    expected = max(info["vox_offset"], 348) + info["data_bytes"]
    whole = _gzip_member_sizes_ok(path, expected) if path.endswith(".gz") else size >= expected
    if not whole:
        raise ScanProblem(f"is truncated (its header promises {expected:,} bytes of image data and header)")
    low, high = VOXEL_MM_RANGE
    if not all(low <= v <= high for v in info["voxel_mm"]):
        sizes = " x ".join(f"{v:g}" for v in info["voxel_mm"])
        raise ScanProblem(f"has voxels of {sizes} mm, which no brain scan has (is its affine scaled?)")
    return info


def repetition_time_problem(tr) -> str | None:
    """Why a sidecar's ``RepetitionTime`` cannot be used, or None: the one rule of discovery
    (:mod:`sfc.bids`) and of the func stage (:func:`sfc.func.repetition_time`)."""
    if isinstance(tr, bool) or not isinstance(tr, (int, float)) or not tr > 0:
        return ("has no RepetitionTime (in seconds)" if tr is None
                else f"has RepetitionTime {tr!r}, not a positive number of seconds")
    if tr > 100:  # no BOLD is acquired at a TR of minutes: milliseconds by mistake
        return f"has RepetitionTime {tr:g}, which looks like milliseconds (BIDS wants seconds: {tr / 1000:g})"
    return None


def _parse_numbers(path) -> np.ndarray:
    return pd.read_csv(path, sep="\t", header=None, dtype=float, na_values=["n/a", "nan", "NaN"]).to_numpy()


def read_matrix(path, n_regions: int | None = None, kind: str = "matrix",
                symmetric: bool = False, allow_nan: bool = True, parse=_parse_numbers) -> np.ndarray:
    """Read a headerless tab-separated N x N matrix and check its shape.

    Parameters
    ----------
    path : path-like
        The TSV file.
    n_regions : int, optional
        Expected N (the atlas size); a mismatch is an :class:`InputError`.
    kind : str
        What the matrix is ("SC", "FC"), used in messages.
    symmetric : bool
        Require symmetry (to 1e-6 relative) as SC must be.
    allow_nan : bool
        If False, any NaN is an error.
    parse : callable
        ``path -> 2-D float array``; batch readers pass a faster parser and keep
        these checks and messages.

    Returns
    -------
    numpy.ndarray of float64, shape (N, N)
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{kind} matrix not found", "run the stage that writes it, or check the path")
    try:
        mat = parse(path)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(path, f"{kind} matrix cannot be read as numbers ({exc})",
                         "write it as a headerless tab-separated numeric N x N table") from None
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise InputError(path, f"{kind} matrix is {mat.shape[0]} x {mat.shape[1]}, not square",
                         "write one row and one column per atlas region")
    if n_regions is not None and mat.shape[0] != n_regions:
        raise InputError(path, f"{kind} matrix has {mat.shape[0]} regions but the atlas has {n_regions}",
                         "check that the matrix was made with the same atlas as configured")
    if not allow_nan and np.isnan(mat).any():
        rows = np.unique(np.nonzero(np.isnan(mat))[0])[:5] + 1
        raise InputError(path, f"{kind} matrix contains NaN (rows {', '.join(map(str, rows))}, 1-based)",
                         "recompute it; NaN is allowed only in FC rows of empty regions")
    if symmetric:
        finite = np.where(np.isnan(mat), 0.0, mat)
        scale = max(np.abs(finite).max(), 1e-12)
        if np.abs(finite - finite.T).max() > 1e-6 * scale:
            raise InputError(path, f"{kind} matrix is not symmetric",
                             "write a symmetric matrix (tck2connectome -symmetric) or symmetrise it")
    return mat


def write_matrix(path, matrix) -> None:
    """Write an N x N matrix as headerless TSV (NaN written as ``n/a``)."""
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {matrix.shape}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(matrix).to_csv(path, sep="\t", header=False, index=False,
                                float_format=MATRIX_FORMAT, na_rep="n/a")


def read_labels(path) -> pd.DataFrame:
    """Read an atlas label table (``index, name, hemisphere, ...``), in matrix order."""
    path = Path(path)
    try:
        table = pd.read_csv(path, sep="\t", dtype={"index": int, "name": str})
    except FileNotFoundError:
        raise InputError(path, "atlas label table not found",
                         "run the workflow's prepare_atlas rule or check atlas_dir") from None
    missing = {"index", "name"} - set(table.columns)
    if missing:
        raise InputError(path, f"label table lacks column(s) {sorted(missing)}",
                         "use the table written by the workflow (atlases/atlas-<name>_dseg.tsv)")
    return table


def write_region_table(path, values, labels: pd.DataFrame, column: str = "sfc") -> None:
    """Write one value per region: ``index, name, <column>`` in label-table order."""
    values = np.asarray(values, dtype=float)
    if values.shape != (len(labels),):
        raise ValueError(f"{len(labels)} regions in the label table but {values.shape} values")
    table = pd.DataFrame({"index": labels["index"].to_numpy(), "name": labels["name"].to_numpy(), column: values})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False, float_format=MATRIX_FORMAT, na_rep="n/a")


def read_region_table(path, column: str = "sfc") -> pd.DataFrame:
    """Read a table written by :func:`write_region_table`."""
    table = pd.read_csv(path, sep="\t", na_values=["n/a"])
    if column not in table.columns:
        raise InputError(path, f"region table lacks the column '{column}'",
                         "use a table written by the workflow's coupling rule")
    return table


def write_tsv(path, table: pd.DataFrame) -> None:
    """Write a table the BIDS way: tab-separated, ``n/a`` for missing values."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False, na_rep="n/a", float_format=MATRIX_FORMAT)


def write_json(path, content: dict) -> None:
    """Write a JSON sidecar (indented, newline-terminated)."""
    import json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(content, indent=1) + "\n")


def excluded_units(path) -> dict:
    """``{unit ID: reason}`` of group/excluded.tsv (unit IDs as in the group tables).

    A row without a session (a participant left out as a whole, or a session-less
    dataset) excludes the unit ``sub-<s>``.
    """
    from .paths import unit_id

    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    sessions = table["session"] if "session" in table.columns else [""] * len(table)
    return {unit_id(pid.removeprefix("sub-"), ses if ses not in ("", "n/a") else None): reason
            for pid, ses, reason in zip(table["participant_id"], sessions, table["reason"])}
