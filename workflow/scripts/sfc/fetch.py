"""Third-party reference files (atlas images, MNI152 templates): verified, downloaded, cached.

Each file is described by a registry entry (``resources/atlases/registry.yaml``,
``resources/templates/registry.yaml``): its official ``filename``, ``bytes``,
``md5``/``sha256``, ``checksum`` policy, ``shape``, ``labels`` and one or more
``url``. A file missing from the user's folders is downloaded into the cache
(``$SFC_CACHE_DIR``, default ``~/.cache/sfc-workflow``):

- from a **mirror** when one is set (config key ``atlas_mirror``, else
  ``$SFC_ATLAS_MIRROR``): a base URL (``http``, ``https``, ``file``) or a folder,
  holding every file under its official name: ``<mirror>/<filename>``;
- else from the registered URLs, tried in order.

Every download shows a progress line, has a timeout and retries, is written to a
part file beside its destination and renamed into place only after it verified,
so no half or unverified file is ever used; jobs of one run that need the same
file wait for one download (a lock file in the cache) instead of repeating it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import InputError

CACHE_ENV = "SFC_CACHE_DIR"
MIRROR_ENV = "SFC_ATLAS_MIRROR"
#: seconds without a byte before a connection is given up (per attempt)
TIMEOUT_S = 60
#: attempts per URL; a transient failure (dropped connection, time-out, HTTP 5xx) is retried
ATTEMPTS = 3
_RETRY_PAUSE_S = 1.0
_CHUNK = 1 << 16
_PROGRESS_EVERY_S = 2.0


def cache_dir(kind: str) -> Path:
    """The download cache for one kind of file (``atlases``, ``templates``)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sfc-workflow").expanduser() / kind


def mirror(configured=None) -> str | None:
    """The mirror in force: the config key ``atlas_mirror``, else ``$SFC_ATLAS_MIRROR``, else None."""
    return configured or os.environ.get(MIRROR_ENV) or None


def source_urls(source: dict, mirror_base=None) -> list[str]:
    """Where to download one registry file from: the mirror alone when set, else its URLs in order."""
    if mirror_base:
        base = str(mirror_base)
        if "://" not in base:  # a folder
            return [(Path(base).expanduser().resolve() / source["filename"]).as_uri()]
        return [f"{base.rstrip('/')}/{source['filename']}"]
    url = source.get("url")
    if not url:
        return []
    return [url] if isinstance(url, str) else list(url)


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _parse_labels(spec: str) -> set[int]:
    lo, hi = (int(v) for v in str(spec).split("-"))
    return set(range(lo, hi + 1))


def verify(path: Path, source: dict) -> list[str]:
    """Check one file against its registry entry.

    Returns the list of problems (empty when the file is good). Size and checksums
    are compared first; where the registry says ``checksum: content`` other bytes are
    tolerated if the grid and the set of label values are right.
    """
    problems = []
    checksum_ok = True
    if "bytes" in source and path.stat().st_size != source["bytes"]:
        checksum_ok = False
    for algorithm in ("md5", "sha256"):
        if checksum_ok and algorithm in source and _digest(path, algorithm) != source[algorithm]:
            checksum_ok = False
    if not checksum_ok and source.get("checksum", "required") == "required":
        expected = ", ".join(f"{k} {source[k]}" for k in ("bytes", "md5", "sha256") if k in source)
        return [f"its size or checksum differs from the official file ({expected})"]
    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        return [f"it cannot be read as a NIfTI image ({exc})"]
    if "shape" in source and list(data.shape[:3]) != list(source["shape"]):
        problems.append(f"its grid is {data.shape}, expected {tuple(source['shape'])}")
    if "labels" in source:
        values = np.unique(data)
        if not np.allclose(values, np.round(values)):
            problems.append("it holds non-integer values, not labels")
        found = {int(v) for v in values if v != 0}
        expected = _parse_labels(source["labels"])
        if found != expected:
            missing, extra = sorted(expected - found), sorted(found - expected)
            problems.append(f"its label values differ from the official ones (missing {missing[:10]}, "
                            f"unexpected {extra[:10]})")
    return problems


class _Transient(Exception):
    """A failure worth another attempt (dropped connection, time-out, server error)."""


def _progress(message: str) -> None:
    print(f"sfc: {message}", file=sys.stderr, flush=True)


def _size(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _download_once(url: str, part: Path, timeout: float) -> int:
    """Stream ``url`` into ``part``; returns the bytes written. A short body is an error."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            expected = response.headers.get("Content-Length")
            expected = int(expected) if expected and expected.isdigit() else None
            written, last = 0, time.monotonic()
            while True:
                block = response.read(_CHUNK)
                if not block:
                    break
                out.write(block)
                written += len(block)
                if time.monotonic() - last >= _PROGRESS_EVERY_S:
                    total = f" of {_size(expected)}" if expected else ""
                    _progress(f"  {_size(written)}{total}")
                    last = time.monotonic()
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        raise OSError(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", None) or exc
        # a missing local file (mirror folder) will not appear on a second try
        if isinstance(reason, FileNotFoundError):
            raise OSError(f"no such file ({reason.filename or url})") from None
        raise _Transient(f"{type(exc).__name__}: {reason}") from None
    if expected is not None and written != expected:
        raise _Transient(f"the connection closed after {written} of {expected} bytes")
    return written


@contextlib.contextmanager
def _locked(destination: Path):
    """Hold an exclusive lock for ``destination`` (concurrent jobs wait for one download)."""
    lock = destination.parent / ".locks" / f"{destination.name}.lock"
    lock.parent.mkdir(exist_ok=True)
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def download(source: dict, destination: Path, *, mirror_base=None, local_fix: str,
             timeout: float = TIMEOUT_S, attempts: int = ATTEMPTS) -> Path:
    """Download one registry file to ``destination`` and verify it; nothing unverified is kept.

    Parameters
    ----------
    source : dict
        The file's registry entry (``filename``, ``url``, ``bytes``, checksums, ...).
    destination : Path
        Where the verified file goes (in the cache); a verified file already there is reused.
    mirror_base : str or path, optional
        A mirror's base URL or folder; replaces the registered URLs.
    local_fix : str
        How to provide the file by hand (the config key and environment variable of the
        folder it is looked for in), quoted in the error message.
    timeout, attempts : float, int
        Seconds without data before an attempt fails; attempts per URL.

    Returns
    -------
    Path
        ``destination``.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    name = source["filename"]
    urls = source_urls(source, mirror_base)
    ways_out = (f"set a mirror that holds {name} (config key atlas_mirror or ${MIRROR_ENV}: a folder or an "
                f"http(s)/file URL), or {local_fix}")
    if not urls:
        raise InputError(destination, f"{name} has no download address in its registry entry", ways_out)
    with _locked(destination):
        if destination.is_file() and not verify(destination, source):
            return destination  # another job fetched it while this one waited
        failures = []
        for url in urls:
            problem = _fetch_verified(url, destination, source, timeout, attempts)
            if problem is None:
                return destination
            failures.append(f"{url}: {problem}")
    raise InputError(urls[0], f"{name} could not be obtained ({'; '.join(failures)})", ways_out)


def _fetch_verified(url: str, destination: Path, source: dict, timeout: float, attempts: int) -> str | None:
    """One URL, with retries: None when ``destination`` now holds the verified file, else the problem."""
    with tempfile.NamedTemporaryFile(dir=destination.parent, delete=False, prefix=".part-",
                                     suffix=f"-{destination.name}") as tmp:
        part = Path(tmp.name)
    try:
        for attempt in range(1, attempts + 1):
            _progress(f"downloading {source['filename']} from {url}"
                      + (f" (attempt {attempt} of {attempts})" if attempt > 1 else ""))
            try:
                started = time.monotonic()
                written = _download_once(url, part, timeout)
            except _Transient as exc:
                _progress(f"  failed: {exc}")
                if attempt == attempts:
                    return f"{exc} ({attempts} attempts)"
                time.sleep(_RETRY_PAUSE_S * attempt)
                continue
            except OSError as exc:
                return str(exc)
            problems = verify(part, source)
            if problems:
                # the server answered with other bytes (a login page, a changed file): not a transient
                return "the downloaded file failed verification: " + "; ".join(problems)
            os.replace(part, destination)
            _progress(f"  {_size(written)} in {time.monotonic() - started:.1f} s, verified, saved as {destination}")
            return None
        return "no attempt was made"
    finally:
        part.unlink(missing_ok=True)
