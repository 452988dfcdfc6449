"""Local paths from file:// URLs and back, under both the Windows and the POSIX convention on any
machine (the helpers are pure string functions), and checked against fsspec's local filesystem
on this one."""

import ntpath
import os
import sys

import fsspec
import numpy as np
import pytest

import chunkview
from chunkview._platform import path_to_url, url_to_path
from chunkview.io.fetch import local_path

WINDOWS_CASES = [
    ("file:///C:/data/x.h5", "C:/data/x.h5"),  # RFC 8089, Path.as_uri()
    ("file://C:/data/x.h5", "C:/data/x.h5"),  # fsspec's LocalFileSystem.unstrip_protocol
    ("file://C:\\data\\x.h5", "C:/data/x.h5"),
    ("file:///c:/Data%20Files/x.h5", "c:/Data%20Files/x.h5"),  # no percent-decoding, as fsspec
    ("file:///C:/", "C:/"),
    ("file:///C:", "C:/"),
    ("local://D:/a b/é.nc", "D:/a b/é.nc"),
    ("file:////server/share/x.h5", "//server/share/x.h5"),  # UNC
    ("file://\\\\server\\share\\x.h5", "//server/share/x.h5"),
    ("file://data/x.h5", "data/x.h5"),  # relative, as fsspec reads it
    ("C:\\data\\x.h5", "C:\\data\\x.h5"),  # plain paths are opened as they are
    ("s3://bucket/C:/x", "s3://bucket/C:/x"),  # other protocols are not local
    ("https://host/x.h5", "https://host/x.h5"),
]

POSIX_CASES = [
    ("file:///data/x.h5", "/data/x.h5"),
    ("file:///tmp/a b/é.h5", "/tmp/a b/é.h5"),
    ("file:///tmp/a%20b.h5", "/tmp/a%20b.h5"),  # a file named a%20b.h5, as fsspec reads it
    ("local:///data/x.h5", "/data/x.h5"),
    ("file:///C:/data/x.h5", "/C:/data/x.h5"),  # a POSIX path that happens to look like a drive
    ("file://data/x.h5", "data/x.h5"),
    ("/data/x.h5", "/data/x.h5"),
    ("relative/x.h5", "relative/x.h5"),
    ("s3://bucket/x", "s3://bucket/x"),
]


@pytest.mark.parametrize("url,path", WINDOWS_CASES)
def test_url_to_path_windows(url, path):
    assert url_to_path(url, windows=True) == path


@pytest.mark.parametrize("url,path", POSIX_CASES)
def test_url_to_path_posix(url, path):
    assert url_to_path(url, windows=False) == path


@pytest.mark.parametrize("path,url", [
    ("C:\\data\\x.h5", "file:///C:/data/x.h5"),
    ("C:/data/a b.h5", "file:///C:/data/a b.h5"),
    ("\\\\server\\share\\x.h5", "file:////server/share/x.h5"),
])
def test_path_to_url_windows(path, url):
    assert path_to_url(path, windows=True) == url
    back = url_to_path(url, windows=True)
    assert ntpath.normcase(ntpath.normpath(back)) == ntpath.normcase(ntpath.normpath(path))


@pytest.mark.parametrize("path", ["/data/x.h5", "/tmp/a b/é %20.h5", "/"])
def test_path_to_url_posix(path):
    url = path_to_url(path, windows=False)
    assert url == "file://" + path
    assert url_to_path(url, windows=False) == path


@pytest.mark.parametrize("url,_", WINDOWS_CASES[:4] if sys.platform == "win32" else POSIX_CASES[:5])
def test_same_file_as_fsspec(url, _):
    """On this machine the path is the one fsspec's local filesystem opens for the URL."""
    fs = fsspec.filesystem("file")
    assert os.path.normcase(os.path.normpath(local_path(url))) == \
        os.path.normcase(os.path.normpath(fs._strip_protocol(url)))


def test_local_path_home_folder():
    assert local_path("file://~/x.h5") == os.path.expanduser("~/x.h5")
    assert local_path("~/x.h5") == "~/x.h5"  # a plain path is opened as it is


def test_scan_and_read_path_with_spaces_and_non_ascii(tmp_path):
    """The URL a scan records opens the same file again: spaces and non-ASCII characters are not
    percent-encoded (which fsspec would not decode), and fsspec's ReferenceFileSystem reads it."""
    h5py = pytest.importorskip("h5py")
    zarr = pytest.importorskip("zarr")
    d = tmp_path / "a dir é"
    d.mkdir()
    path = d / "data 1.h5"
    data = np.arange(120, dtype="i4").reshape(10, 12)
    tmp = tmp_path / "plain.h5"  # written under an ASCII name: only chunkview meets the other
    with h5py.File(tmp, "w") as f:
        f.create_dataset("x", data=data, chunks=(5, 6), compression="gzip")
    tmp.rename(path)
    refs = chunkview.scan(str(path))
    url = refs["x/0.0"][0]
    assert url == path_to_url(str(path.resolve()))
    assert os.path.samefile(local_path(url), path)
    np.testing.assert_array_equal(chunkview.open(refs)["x"][:], data)
    from fsspec.implementations.reference import ReferenceFileSystem

    fs = ReferenceFileSystem(refs.to_dict(), remote_protocol="file")
    got = zarr.open_group(fs.get_mapper(""), mode="r", zarr_format=2)["x"][:]
    np.testing.assert_array_equal(got, data)
