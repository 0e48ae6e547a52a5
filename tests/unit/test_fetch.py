"""sfc.fetch end to end against a local HTTP server (127.0.0.1 only): the registry's atlas images
and FSL templates are downloaded, verified, cached and reused; a tampered file is refused and
never kept; a server that drops the connection half-way is survived by a retry; a mirror (base
URL, file URL or folder) replaces the registered URLs."""

import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import FolderServer, make_mirror
from sfc import anat, atlases, fetch
from sfc.errors import InputError

@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("SFC_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("SFC_ATLAS_DIR", "SFC_ATLAS_MIRROR", "SFC_TEMPLATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(fetch, "_RETRY_PAUSE_S", 0.0)


@pytest.fixture
def mirror_folder(shared_data, tmp_path) -> Path:
    return make_mirror(shared_data, tmp_path / "www")


@pytest.fixture
def server(mirror_folder):
    s = FolderServer(mirror_folder)
    yield s
    s.close()


def bna_source() -> dict:
    return atlases.entry("BNA246")["sources"]["2"]["image"]


def test_official_files_verify_against_the_registries(mirror_folder):
    sources = [bna_source(), *atlases.entry("HOA")["sources"]["2"].values(), *anat.template_registry().values()]
    for source in sources:
        assert fetch.verify(mirror_folder / source["filename"], source) == [], source["filename"]
    # Brainnetome's and the templates' bytes are pinned, and a URL is registered for each
    for source in [bna_source(), *anat.template_registry().values()]:
        assert source["checksum"] == "required" and source["sha256"]
        assert fetch.source_urls(source) and all(u.startswith("https://") for u in fetch.source_urls(source))


def test_a_mirror_replaces_every_registered_url():
    source = {"filename": "x.nii.gz", "url": ["https://a/x", "https://b/x"]}
    assert fetch.source_urls(source) == ["https://a/x", "https://b/x"]
    assert fetch.source_urls(source, "http://127.0.0.1:1/atlases/") == ["http://127.0.0.1:1/atlases/x.nii.gz"]
    assert fetch.source_urls(source, "file:///srv/m") == ["file:///srv/m/x.nii.gz"]
    assert fetch.source_urls(source, "/srv/m") == ["file:///srv/m/x.nii.gz"]
    assert fetch.source_urls({"filename": "y", "url": None}, "/srv/m") == ["file:///srv/m/y"]


def test_download_verifies_caches_and_reuses(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SFC_ATLAS_MIRROR", server.url)
    img = atlases.load_atlas_image("BNA246", tmp_path / "no-atlases", resolution=2)
    assert len(np.unique(np.asanyarray(img.dataobj))) == 247
    cached = tmp_path / "cache" / "atlases" / "BN_Atlas_246_2mm.nii.gz"
    assert cached.is_file() and fetch.verify(cached, bna_source()) == []
    assert server.requests == ["/BN_Atlas_246_2mm.nii.gz"]
    err = capsys.readouterr().err
    assert f"downloading BN_Atlas_246_2mm.nii.gz from {server.url}/BN_Atlas_246_2mm.nii.gz" in err
    assert "verified" in err
    # a second use reads the cache: no new request
    atlases.load_atlas_image("BNA246", tmp_path / "no-atlases", resolution=2)
    assert len(server.requests) == 1
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".part-")]


def test_a_tampered_file_is_refused_and_not_kept(server, mirror_folder, tmp_path):
    data = bytearray((mirror_folder / "BN_Atlas_246_2mm.nii.gz").read_bytes())
    data[-100] ^= 0xFF  # one flipped byte: same size, other checksum
    (mirror_folder / "BN_Atlas_246_2mm.nii.gz").write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        atlases.load_atlas_image("BNA246", tmp_path / "no-atlases", resolution=2, mirror=server.url)
    message = str(err.value)
    assert f"{server.url}/BN_Atlas_246_2mm.nii.gz" in message and "failed verification" in message
    assert "size or checksum differs" in message
    # the two ways out: a mirror, or the file by hand in atlas_dir
    assert "atlas_mirror" in message and "SFC_ATLAS_MIRROR" in message and "atlas_dir" in message
    assert [p.name for p in (tmp_path / "cache" / "atlases").iterdir()] == [".locks"]


def test_a_connection_dropped_half_way_is_retried(server, tmp_path, capsys):
    server.drop_first = 2
    path = atlases.find_source("BNA246", "image", bna_source(), tmp_path / "none", mirror=server.url)
    assert fetch.verify(path, bna_source()) == []
    assert len(server.requests) == 3
    err = capsys.readouterr().err
    assert "connection closed after 20580 of 41161 bytes" in err and "attempt 3 of 3" in err


def test_a_server_that_always_drops_gives_up_with_a_clear_message(server, tmp_path):
    server.drop_first = 10
    with pytest.raises(InputError, match=r"could not be obtained .*20580 of 41161 bytes \(3 attempts\)"):
        atlases.find_source("BNA246", "image", bna_source(), tmp_path / "none", mirror=server.url)
    assert len(server.requests) == 3
    assert [p.name for p in (tmp_path / "cache" / "atlases").iterdir()] == [".locks"]


def test_registered_urls_are_tried_in_order(server, tmp_path):
    source = {**bna_source(), "url": [f"{server.url}/gone/BN_Atlas_246_2mm.nii.gz",
                                      f"{server.url}/BN_Atlas_246_2mm.nii.gz"]}
    path = fetch.download(source, tmp_path / "out" / source["filename"], local_fix="put it there")
    assert fetch.verify(path, source) == []
    assert server.requests == ["/gone/BN_Atlas_246_2mm.nii.gz", "/BN_Atlas_246_2mm.nii.gz"]


def test_an_unreachable_server_names_the_url_and_the_ways_out(tmp_path):
    source = {**bna_source(), "url": "http://127.0.0.1:9/BN_Atlas_246_2mm.nii.gz"}  # discard port: refused
    with pytest.raises(InputError) as err:
        fetch.download(source, tmp_path / source["filename"], local_fix="put it into atlas_dir", attempts=2)
    message = str(err.value)
    assert message.startswith("http://127.0.0.1:9/BN_Atlas_246_2mm.nii.gz: BN_Atlas_246_2mm.nii.gz could not")
    assert "SFC_ATLAS_MIRROR" in message and "put it into atlas_dir" in message


@pytest.mark.parametrize("as_url", [False, True])
def test_a_mirror_folder_or_file_url_works_like_a_server(mirror_folder, tmp_path, as_url):
    mirror = mirror_folder.as_uri() if as_url else str(mirror_folder)
    img = atlases.load_atlas_image("HOA", tmp_path / "none", resolution=2, mirror=mirror)
    assert len(np.unique(np.asanyarray(img.dataobj))) == 111
    # a file missing from the mirror is named, with no retries of a file that cannot appear
    with pytest.raises(InputError, match="BN_Atlas_246_1mm.nii.gz could not be obtained .*no such file"):
        atlases.load_atlas_image("BNA246", tmp_path / "none", resolution=1, mirror=mirror)


def test_templates_are_downloaded_verified_and_used(server, monkeypatch, tmp_path):
    monkeypatch.setattr(anat, "RESOURCES_TEMPLATES", tmp_path / "absent")
    tpl = anat.load_template(None, download=True, mirror=server.url)
    assert tpl.space == "MNI152NLin6Asym" and tpl.is_head
    assert tpl.source == str(tmp_path / "cache" / "templates" / "MNI152_T1_2mm.nii.gz")
    assert sorted(server.requests) == ["/MNI152_T1_1mm_brain.nii.gz", "/MNI152_T1_2mm.nii.gz"]
    # reused from the cache, even with downloads off
    assert anat.load_template(None, download=False).source == tpl.source
    assert len(server.requests) == 2


def test_concurrent_jobs_download_a_file_once(server, tmp_path):
    source = bna_source()
    results, errors = [], []

    def job():
        try:
            results.append(fetch.download(source, tmp_path / "c" / source["filename"], mirror_base=server.url,
                                          local_fix="by hand"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=job) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert server.requests == ["/BN_Atlas_246_2mm.nii.gz"]
