"""chunkview and real Icechunk repositories (``chunkview.icechunk``): reference sets written
with ``to_icechunk`` read back by Icechunk + zarr's default pipeline and by chunkview as h5py
reads the files; Icechunk stores (VirtualiZarr's ``.vz.to_icechunk()`` output, native chunks
too) read by ``chunkview.open`` / ``open_zarr``; Icechunk's checks kept (a changed source, a
container the session may not read).

Icechunk 2.x needs Python >= 3.12: on 3.11 these tests skip, unless
CHUNKVIEW_REQUIRE_VIRTUALIZARR=1 (CI's Python 3.13 part) makes a missing Icechunk fail."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from extras import needed  # noqa: E402

icechunk = needed("icechunk")
h5py = pytest.importorskip("h5py")
zarr = pytest.importorskip("zarr")

import chunkview  # noqa: E402
from chunkview import ForbiddenSourceError, SourceChangedError  # noqa: E402
from chunkview.icechunk import to_icechunk, virtual_chunk_containers  # noqa: E402

import corpus  # noqa: E402
import make_scandata  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
DEFAULT = "zarr.core.codec_pipeline.BatchedCodecPipeline"


@pytest.fixture
def files(tmp_path):
    out = make_scandata.make_all(tmp_path / "data")
    return {k: Path(v).resolve() for k, v in out.items()}


def _repo(refs_list, authorize=True, tmp=None):
    cfg = icechunk.RepositoryConfig.default()
    prefixes = []
    for refs in refs_list:
        for c in virtual_chunk_containers(refs):
            cfg.set_virtual_chunk_container(c)
            prefixes.append(c.url_prefix)
    storage = (icechunk.local_filesystem_storage(str(tmp)) if tmp else
               icechunk.in_memory_storage())
    auth = {p: None for p in prefixes} if authorize else {}
    return icechunk.Repository.create(storage, cfg, authorize_virtual_chunk_access=auth)


def test_to_icechunk_read_by_icechunk_and_chunkview(files):
    """A v3 set (and a second file under a group) written as virtual chunks: Icechunk + zarr's
    default pipeline, chunkview.open and open_zarr all read every dataset as h5py does,
    per-chunk filter masks and inline chunks included."""
    latest = chunkview.scan(str(files["latest"]), zarr_format=3, inline_threshold=100)
    # a v2 set, some chunks inline: written under the keys its v3 metadata gives them
    masks = chunkview.scan(str(files["masks"]), inline_threshold=200)
    assert any(isinstance(masks[k], bytes) and k[-1].isdigit() for k in masks)
    repo = _repo([latest, masks])
    session = repo.writable_session("main")
    to_icechunk(latest, session.store)
    to_icechunk(masks, session.store, group="masks")
    session.commit("virtual")
    store = repo.readonly_session("main").store
    want = {**corpus.h5_arrays(files["latest"]),
            **{f"masks/{k}": v for k, v in corpus.h5_arrays(files["masks"]).items()}}
    refused = set(latest.unsupported)
    with zarr.config.set({"codec_pipeline.path": DEFAULT}):
        g = zarr.open_group(store, mode="r", zarr_format=3)
        got = {p: a[...] for p, a in g.members(max_depth=None) if isinstance(a, zarr.Array)}
    ours, ours_zarr = chunkview.open(store), chunkview.open_zarr(store)
    assert set(got) == set(want) - refused
    for name, values in got.items():
        assert corpus._same_v3(values, want[name]), name
        assert corpus._same_v3(ours[name][...], want[name]), name
        assert corpus._same_v3(ours_zarr[name][...], want[name]), name


def test_changed_source_is_refused(files, tmp_path):
    """The scan's modification time is Icechunk's checksum: after the file changes, Icechunk
    refuses its chunks, and so does chunkview (SourceChangedError naming the file)."""
    path = tmp_path / "copy.h5"
    shutil.copy(files["latest"], path)
    refs = chunkview.scan(str(path), zarr_format=3)
    repo = _repo([refs])
    session = repo.writable_session("main")
    to_icechunk(refs, session.store)
    session.commit("virtual")
    np.testing.assert_array_equal(chunkview.open(repo.readonly_session("main").store)
                                  ["chunked_z"][...], corpus.h5_arrays(path)["chunked_z"])
    time.sleep(1.1)
    os.utime(path)
    store = repo.readonly_session("main").store
    with pytest.raises(SourceChangedError, match="copy.h5"):
        chunkview.open(store)
    with pytest.raises(SourceChangedError, match="copy.h5"):
        chunkview.open_zarr(store)
    with pytest.raises(Exception, match="checksum"):  # Icechunk's own read refuses too
        zarr.open_array(store, path="chunked_z", mode="r")[...]


def test_source_changing_under_an_open_store(files, tmp_path):
    """A file that changes after chunkview opened the Icechunk store (after Icechunk's check):
    the read raises SourceChangedError naming the file, never reads other bytes."""
    path = tmp_path / "open.h5"
    shutil.copy(files["latest"], path)
    refs = chunkview.scan(str(path), zarr_format=3)
    repo = _repo([refs])
    session = repo.writable_session("main")
    to_icechunk(refs, session.store)
    session.commit("virtual")
    store = repo.readonly_session("main").store
    g, z = chunkview.open(store), chunkview.open_zarr(store)
    with open(path, "ab") as fh:
        fh.write(b"appended")
    for opened in (g, z):
        with pytest.raises(SourceChangedError, match="open.h5"):
            opened["chunked_z"][...]


def test_grid_too_big_for_icechunk_is_refused(files):
    """Icechunk's bulk write takes one entry per grid position: 2**40 of them are refused by
    name before anything is allocated."""
    refs = chunkview.References.from_dict({"version": 1, "refs": {
        ".zgroup": '{"zarr_format":2}',
        "huge/.zarray": '{"zarr_format":2,"shape":[1099511627776],"chunks":[1],"dtype":"<i4",'
                        '"compressor":null,"filters":null,"fill_value":0,"order":"C"}',
        "huge/7": [files["latest"].as_uri(), 0, 4]}})
    session = _repo([refs]).writable_session("main")
    with pytest.raises(chunkview.UnsupportedError, match="'huge'.*dense"):
        to_icechunk(refs, session.store)


def test_unauthorized_container_is_refused(files, tmp_path):
    """A repository opened without authorizing the container: chunkview reads nothing from
    it either (ForbiddenSourceError), as Icechunk would."""
    refs = chunkview.scan(str(files["latest"]), zarr_format=3)
    repo = _repo([refs], tmp=tmp_path / "repo")
    session = repo.writable_session("main")
    to_icechunk(refs, session.store)
    session.commit("virtual")
    closed = icechunk.Repository.open(icechunk.local_filesystem_storage(str(tmp_path / "repo")))
    with pytest.raises(ForbiddenSourceError, match="latest"):
        chunkview.open(closed.readonly_session("main").store)


def test_native_chunks_read_through_the_store(files):
    """Native Icechunk chunks (written by zarr into the repository) next to virtual ones:
    chunkview reads the native ones through the store."""
    refs = chunkview.scan(str(files["latest"]), zarr_format=3)
    repo = _repo([refs])
    session = repo.writable_session("main")
    to_icechunk(refs, session.store)
    g = zarr.open_group(session.store, mode="r+")
    native = np.arange(120, dtype="i4").reshape(10, 12)
    g.create_array("native", data=native, chunks=(4, 5))
    session.commit("mixed")
    ours = chunkview.open(repo.readonly_session("main").store)
    np.testing.assert_array_equal(ours["native"][...], native)
    np.testing.assert_array_equal(ours["chunked_z"][...], corpus.h5_arrays(files["latest"])["chunked_z"])


def test_virtualizarr_icechunk_output_read_by_chunkview(files, tmp_path):
    """What VirtualiZarr writes into Icechunk (``.vz.to_icechunk()``), read by chunkview."""
    vz = needed("virtualizarr")
    xr = pytest.importorskip("xarray")
    from obspec_utils.registry import ObjectStoreRegistry
    from obstore.store import LocalStore

    from chunkview.virtualizarr import ChunkviewParser

    suite = make_scandata.make_netcdf_suite(tmp_path / "nc")
    path = Path(suite["nc4_storage"]).resolve()
    reg = ObjectStoreRegistry({"file://": LocalStore()})
    vds = vz.open_virtual_dataset(path.as_uri(), registry=reg, parser=ChunkviewParser())
    repo = _repo([chunkview.scan(str(path))])
    session = repo.writable_session("main")
    vds.vz.to_icechunk(session.store)
    session.commit("virtual")
    store = repo.readonly_session("main").store
    ds = xr.open_dataset(store, engine="chunkview").load()
    xr.testing.assert_equal(ds, xr.open_dataset(path, engine="netcdf4").load())
