"""Remote sources against real servers on 127.0.0.1 started here: an aiohttp HTTP server that
honours Range (chunkview.bench.server, with injected faults) and moto's S3 server reached
through s3fs.  Every read is compared with h5py on the same file."""

import json
import os
import shutil
import time

import fsspec
import numpy as np
import pytest
import zarr

import chunkview
from chunkview import ForbiddenSourceError, SourceChangedError
from chunkview.errors import FetchError, ScanError

h5py = pytest.importorskip("h5py")
pytest.importorskip("aiohttp")

from chunkview.bench.server import RangeServer  # noqa: E402


def _h5_all(path):
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset)
                     else None)
    return out


@pytest.fixture
def served(tmp_path, h5file):
    """A folder with a copy of the small test file and a larger one, served over HTTP."""
    shutil.copy(h5file, tmp_path / "small.h5")
    rng = np.random.default_rng(5)
    with h5py.File(tmp_path / "big.h5", "w") as f:
        f.create_dataset("x", data=rng.integers(0, 1000, (64, 200, 200), dtype="i4"),
                         chunks=(8, 100, 100), compression="gzip", shuffle=True)
    with RangeServer(tmp_path) as srv:
        srv.folder = tmp_path
        yield srv


def _fresh_http():
    # each test its own session, so connections of a stopped server are not reused
    return {"skip_instance_cache": True}


def _read_chunk(api, fo, **opts):
    """One chunk of t2m through chunkview.open, open_zarr or the chunkview filesystem."""
    if api == "open":
        return chunkview.open(fo, **opts)["t2m"][0, 0, 0]
    if api == "zarr":
        return chunkview.open_zarr(fo, **opts)["t2m"][0, 0, 0]
    fs = fsspec.filesystem("chunkview", fo=fo, skip_instance_cache=True, **opts)
    return fs.cat_file("t2m/0.0.0")


# ------------------------------------------------------------------ scan and read over HTTP


def test_scan_http_with_few_requests(served):
    url = served.url("small.h5")
    served.reset_stats()
    refs = chunkview.scan(url, storage_options=_fresh_http())
    # metadata read in aligned 1 MiB blocks: the small file costs a HEAD and one GET
    assert served.gets <= 2, served.log
    local = chunkview.scan(str(served.folder / "small.h5"))
    local_url = (served.folder / "small.h5").resolve().as_uri()
    assert {k for k in refs if k != ".cvsources"} == {k for k in local if k != ".cvsources"}
    for k in local:
        if k == ".cvsources":
            continue
        a, b = local[k], refs[k]
        if isinstance(a, list):
            assert a[0] == local_url and b[0] == url and a[1:] == b[1:], k
        else:
            assert a == b, k
    rec = refs.sources[url]
    assert rec["size"] == os.path.getsize(served.folder / "small.h5") and rec["etag"]


def test_read_http_every_api(served):
    url = served.url("small.h5")
    refs = chunkview.scan(url, storage_options=_fresh_http())
    want = _h5_all(served.folder / "small.h5")
    g = chunkview.open(refs, remote_options=_fresh_http())
    for name, arr in want.items():
        np.testing.assert_array_equal(g[name][...], arr, err_msg=name)
    z = chunkview.open_zarr(refs, remote_options=_fresh_http())
    for name, arr in want.items():
        np.testing.assert_array_equal(z[name][...], arr, err_msg=name)
    fs = fsspec.filesystem("chunkview", fo=refs, remote_protocol="http",
                           remote_options=_fresh_http(), skip_instance_cache=True)
    zg = zarr.open_group(fs.get_mapper(""), mode="r", zarr_format=2)
    for name, arr in want.items():
        np.testing.assert_array_equal(zg[name][...], arr, err_msg=name)


def test_ranges_merged_and_split(served):
    """All of x: nearby chunks merged into blocks, a long block split into parallel requests
    of ``request_bytes``, never more than ``max_requests`` in flight."""
    url = served.url("big.h5")
    refs = chunkview.scan(url, storage_options=_fresh_http())
    want = _h5_all(served.folder / "big.h5")["x"]
    nchunks = sum(1 for k in refs if k.startswith("x/") and not k.startswith("x/."))

    served.reset_stats()
    g = chunkview.open(refs, remote_options=_fresh_http(), check_source="off")
    np.testing.assert_array_equal(g["x"][...], want)
    assert served.gets == 1  # every chunk merged into one request

    served.reset_stats()
    g = chunkview.open(refs, remote_options=_fresh_http(), check_source="off",
                       request_bytes=64 << 10, max_requests=3)
    np.testing.assert_array_equal(g["x"][...], want)
    stored = sum(refs[k][2] for k in refs if k.startswith("x/") and not k.startswith("x/."))
    assert served.gets >= stored // (96 << 10)  # split into ~64 KiB parts
    assert served.max_in_flight <= 3
    assert served.bytes_sent >= stored

    served.reset_stats()
    z = chunkview.open_zarr(refs, remote_options=_fresh_http(), check_source="off",
                            max_gap=-1, multi_range=False)
    np.testing.assert_array_equal(z["x"][3:20, 50:150, 10:190], want[3:20, 50:150, 10:190])
    assert served.gets == 3 * 2 * 2  # no merging: one request per touched chunk
    assert nchunks == 32


def _ranges_asked(server):
    return [len(r.split(",")) for m, _, r in server.log if m == "GET" and r]


@pytest.mark.parametrize("api", ["open", "zarr"])
def test_multi_range_requests(served, api):
    """Blocks that are not near each other still go in one request: a multi-range GET whose
    multipart answer is split into its parts as it arrives."""
    url = served.url("big.h5")
    refs = chunkview.scan(url, storage_options=_fresh_http())
    want = _h5_all(served.folder / "big.h5")["x"][3:20, 50:150, 10:190]
    opener = chunkview.open if api == "open" else chunkview.open_zarr
    served.reset_stats()
    g = opener(refs, remote_options=_fresh_http(), check_source="off", max_gap=-1)
    np.testing.assert_array_equal(g["x"][3:20, 50:150, 10:190], want)
    assert _ranges_asked(served) == [12]  # 12 chunks, none adjacent to the next: one request
    # at most request_bytes per request: the 12 ranges spread over several requests
    served.reset_stats()
    g = opener(refs, remote_options=_fresh_http(), check_source="off", max_gap=-1,
               request_bytes=3 * max(refs[k][2] for k in refs if k.startswith("x/0.")))
    np.testing.assert_array_equal(g["x"][3:20, 50:150, 10:190], want)
    assert sorted(_ranges_asked(served)) == [3, 3, 3, 3]


@pytest.mark.parametrize("mode", ["ignore", "refuse"])
def test_multi_range_refused(tmp_path, h5file, mode):
    """A server that answers a multi-range request with the whole file (200, read no further)
    or 416 is remembered and read one range per request."""
    shutil.copy(h5file, tmp_path / "small.h5")
    with RangeServer(tmp_path, multi_range=mode) as srv:
        refs = chunkview.scan(srv.url("small.h5"), storage_options=_fresh_http())
        want = _h5_all(tmp_path / "small.h5")["t2m"]
        g = chunkview.open(refs, remote_options=_fresh_http(), check_source="off", max_gap=-1)
        srv.reset_stats()
        np.testing.assert_array_equal(g["t2m"][...], want)
        first = _ranges_asked(srv)
        assert first[0] > 1 and all(n == 1 for n in first[1:])  # tried once, then one each
        srv.reset_stats()
        np.testing.assert_array_equal(g["t2m"][...], want)
        assert all(n == 1 for n in _ranges_asked(srv))  # remembered
        assert len(_ranges_asked(srv)) == len(first) - 1


@pytest.mark.parametrize("fault", ["503", "reset", "truncate"])
def test_multi_range_faults_retried(served, fault):
    url = served.url("big.h5")
    refs = chunkview.scan(url, storage_options=_fresh_http())
    want = _h5_all(served.folder / "big.h5")["x"][3:20, 50:150, 10:190]
    served.fail(fault, path="big.h5")
    served.reset_stats()
    g = chunkview.open(refs, remote_options=_fresh_http(), check_source="off", max_gap=-1,
                       backoff=0.01)
    np.testing.assert_array_equal(g["x"][3:20, 50:150, 10:190], want)
    assert not served.faults
    asked = _ranges_asked(served)
    assert asked[0] == 12 and sum(asked[1:]) <= 12  # the retry asks for what is missing


def test_multi_range_failure_names_key_url_range(served):
    url = served.url("big.h5")
    refs = chunkview.scan(url, storage_options=_fresh_http())
    served.fail(*["503"] * 20, path="big.h5")
    with pytest.raises(FetchError) as ei:
        chunkview.open(refs, remote_options=_fresh_http(), check_source="off", max_gap=-1,
                       backoff=0.01, retries=1)["x"][3:20, 50:150, 10:190]
    err = ei.value
    assert err.url == url and err.key.startswith("x/") and err.end > err.start
    assert "one request for 12 ranges" in str(err) and "503" in str(err)


@pytest.fixture
def nginx(tmp_path):
    """nginx (Debian's package) serving a folder on 127.0.0.1: a real multi-range server."""
    import socket
    import subprocess

    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                     else None)
    if exe is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    root = tmp_path / "www"
    root.mkdir()
    (tmp_path / "tmp").mkdir()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    temp = " ".join(f"{k}_temp_path {tmp_path / 'tmp'};" for k in
                    ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(
        f"daemon off; worker_processes 1; pid {tmp_path / 'nginx.pid'};\n"
        # as root, nginx's workers would run as nobody, who cannot read pytest's folders
        + ("user root;\n" if hasattr(os, "geteuid") and os.geteuid() == 0 else "")
        + f"error_log {tmp_path / 'error.log'};\nevents {{ worker_connections 64; }}\n"
        f"http {{ access_log {tmp_path / 'access.log'}; {temp}\n"
        f"  server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n")
    proc = subprocess.Popen([exe, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.skip(f"nginx did not start: {proc.stderr.read().decode()[-300:]}")
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", root, tmp_path / "access.log"
    finally:
        proc.terminate()
        proc.wait(10)


def test_multi_range_nginx(nginx):
    base, root, log = nginx
    rng = np.random.default_rng(7)
    with h5py.File(root / "n.h5", "w") as f:
        f.create_dataset("x", data=rng.integers(0, 1000, (32, 200, 200), dtype="i4"),
                         chunks=(8, 50, 50), compression="gzip", shuffle=True)
    refs = chunkview.scan(f"{base}/n.h5", storage_options=_fresh_http())
    want = _h5_all(root / "n.h5")["x"]
    before = len(log.read_text().splitlines())
    z = chunkview.open_zarr(refs, remote_options=_fresh_http(), max_gap=-1)
    np.testing.assert_array_equal(z["x"][3:20, 30:170, 60:140], want[3:20, 30:170, 60:140])
    lines = log.read_text().splitlines()[before:]
    gets = [ln for ln in lines if '"GET ' in ln]
    assert len(gets) == 1 and '" 206 ' in gets[0], lines  # 36 chunks in one request


def test_decode_overlaps_fetch(served):
    """Remote blocks are handed to the decoder as they arrive, not all at the end."""
    url = served.url("big.h5")
    refs = chunkview.scan(url, storage_options=_fresh_http())
    g = chunkview.open(refs, remote_options=_fresh_http(), max_gap=-1, check_source="off")
    src = g._source
    keys = [k for k in refs if k.startswith("x/") and not k.startswith("x/.")]
    served.latency = 0.05
    ids, offs, lens = refs.lookup_many(keys)
    groups = [len(ready) for _, ready in src.fetch_iter(keys, ids, offs, lens)]
    assert sum(groups) == len(keys) and len(groups) > 1


# ------------------------------------------------------------------ faults


@pytest.mark.parametrize("fault", ["503", "500", "reset", "truncate", "short"])
def test_transient_faults_are_retried(served, fault):
    url = served.url("small.h5")
    refs = chunkview.scan(url, storage_options=_fresh_http())
    want = _h5_all(served.folder / "small.h5")["t2m"]
    served.fail(fault, fault, path="small.h5")
    served.reset_stats()
    g = chunkview.open(refs, remote_options=_fresh_http(), backoff=0.01)
    np.testing.assert_array_equal(g["t2m"][...], want)
    assert not served.faults  # both faults were met, then the retry succeeded


@pytest.mark.parametrize("api", ["open", "zarr", "fs"])
def test_persistent_failure_names_key_url_range(served, api):
    url = served.url("small.h5")
    refs = chunkview.scan(url, storage_options=_fresh_http())
    served.fail(*["503"] * 20, path="small.h5")
    opts = dict(remote_options=_fresh_http(), backoff=0.01, retries=2, check_source="off")
    t0 = time.perf_counter()
    with pytest.raises((FetchError, OSError)) as ei:
        _read_chunk(api, refs, **opts)
    assert time.perf_counter() - t0 < 10
    err = ei.value
    while not isinstance(err, FetchError) and err.__cause__ is not None:
        err = err.__cause__
    assert isinstance(err, FetchError), ei.value
    assert err.url == url and err.key.startswith("t2m/")
    assert err.start is not None and err.end > err.start
    assert "503" in str(err) or "Service Unavailable" in str(err)
    assert len(served.faults) == 20 - 3  # one chunk: the first try and two retries


def test_hang_times_out(served):
    url = served.url("small.h5")
    refs = chunkview.scan(url, storage_options=_fresh_http())
    served.fail("hang", path="small.h5")
    t0 = time.perf_counter()
    with pytest.raises(FetchError, match="TimeoutError"):
        chunkview.open(refs, remote_options=_fresh_http(), timeout=0.5, retries=0,
                       check_source="off")["t2m"][...]
    assert time.perf_counter() - t0 < 5


def test_ignored_range_is_not_data(served):
    url = served.url("small.h5")
    refs = chunkview.scan(url, storage_options=_fresh_http())
    served.fail(*["ignore-range"] * 10, path="small.h5")
    with pytest.raises(FetchError, match="ignored the Range header"):
        chunkview.open(refs, remote_options=_fresh_http(), retries=1, backoff=0.01,
                       check_source="off")["counts"][...]


def test_unreachable_server():
    refs = {"version": 1, "refs": {
        ".zgroup": '{"zarr_format":2}',
        "a/.zarray": json.dumps({"zarr_format": 2, "shape": [4], "chunks": [4], "dtype": "<i4",
                                 "compressor": None, "filters": None, "fill_value": 0,
                                 "order": "C"}),
        "a/0": ["http://127.0.0.1:9/nothing.bin", 0, 16]}}
    with pytest.raises(FetchError) as ei:
        chunkview.open(refs, retries=1, backoff=0.01)["a"][...]
    assert ei.value.key == "a/0" and "127.0.0.1:9" in ei.value.url
    assert (ei.value.start, ei.value.end) == (0, 16)


# ------------------------------------------------------------------ source changes


def _append(path, data=b"\0" * 10):
    with open(path, "ab") as f:
        f.write(data)


def test_source_change_size_http(served):
    url = served.url("small.h5")
    refs = chunkview.scan(url, storage_options=_fresh_http())
    chunkview.open(refs, remote_options=_fresh_http())["t2m"][0]
    _append(served.folder / "small.h5")
    for api in ("open", "zarr", "fs"):
        with pytest.raises(SourceChangedError, match="size"):
            _read_chunk(api, refs, remote_options=_fresh_http())
    # off: the caller takes the risk
    chunkview.open(refs, remote_options=_fresh_http(), check_source="off")["t2m"][0]


def test_source_change_etag_http(served):
    url = served.url("small.h5")
    refs = chunkview.scan(url, storage_options=_fresh_http())
    p = served.folder / "small.h5"
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF  # same size, different content (and a new mtime)
    time.sleep(0.01)
    p.write_bytes(bytes(data))
    chunkview.open(refs, remote_options=_fresh_http(), check_source="size")["t2m"][0]
    with pytest.raises(SourceChangedError, match="ETag"):
        chunkview.open(refs, remote_options=_fresh_http(), check_source="etag")["t2m"][0]


def test_source_change_local(tmp_path, h5file):
    p = tmp_path / "copy.h5"
    shutil.copy(h5file, p)
    refs = chunkview.scan(str(p))
    saved = tmp_path / "refs.json"
    refs.save(str(saved))
    chunkview.open(str(saved), check_source="etag")["t2m"][0]
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    chunkview.open(str(saved))["t2m"][0]  # size unchanged
    with pytest.raises(SourceChangedError, match="modified"):
        chunkview.open(str(saved), check_source="etag")["t2m"][0]
    _append(p)
    with pytest.raises(SourceChangedError, match="size"):
        chunkview.open(str(saved))["t2m"][0]
    with pytest.raises(SourceChangedError):
        chunkview.open_zarr(str(saved))["t2m"][0]
    with pytest.raises(ValueError, match="check_source"):
        chunkview.open(str(saved), check_source="sometimes")


# ------------------------------------------------------------------ untrusted references


def test_remote_references_may_not_read_local_files(served, h5file):
    """References loaded over HTTP that point at a local file are refused unless allowed."""
    refs = chunkview.scan(str(h5file))
    refs.save(str(served.folder / "refs.json"))
    rurl = served.url("refs.json")
    for api in ("open", "zarr", "fs"):
        with pytest.raises(ForbiddenSourceError, match="allowed_protocols"):
            _read_chunk(api, rurl, target_options=_fresh_http())
    want = _h5_all(h5file)["t2m"]
    g = chunkview.open(rurl, target_options=_fresh_http(), allowed_protocols=("file",))
    np.testing.assert_array_equal(g["t2m"][...], want)
    # local references read local files; an explicit list is enforced for them too
    chunkview.open(str(served.folder / "refs.json"))["t2m"][0]
    with pytest.raises(ForbiddenSourceError):
        chunkview.open(str(served.folder / "refs.json"), allowed_protocols=["s3"])["t2m"][0]


def test_decoded_size_bounded_by_metadata():
    """A zlib bomb behind a codec chain off the fast path fails with DecodeError without
    inflating it all."""
    import zlib

    bomb = zlib.compress(b"\0" * (64 << 20), 9)
    meta = {"zarr_format": 2, "shape": [1000], "chunks": [1000], "dtype": "<i4",
            "compressor": {"id": "zlib", "level": 1},
            "filters": [{"id": "delta", "dtype": "<i4"}], "fill_value": 0, "order": "C"}
    refs = {"version": 1, "refs": {".zgroup": '{"zarr_format":2}', "a/.zarray": json.dumps(meta),
                                   "a/0": "base64:" + __import__("base64").b64encode(bomb)
                                   .decode()}}
    with pytest.raises(chunkview.DecodeError, match="a/0"):
        chunkview.open(refs)["a"][...]


# ------------------------------------------------------------------ S3 (moto server)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    srv = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    opts = {"key": "testing", "secret": "testing", "skip_instance_cache": True,
            "client_kwargs": {"endpoint_url": f"http://{host}:{port}",
                              "region_name": "us-east-1"}}
    import boto3
    import s3fs

    boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing",
                 ).create_bucket(Bucket="chunkview-test")
    fs = s3fs.S3FileSystem(**opts)
    try:
        yield fs, opts
    finally:
        srv.stop()


def test_s3_scan_and_read(s3, h5file, tmp_path):
    fs, opts = s3
    fs.put(str(h5file), "chunkview-test/small.h5")
    url = "s3://chunkview-test/small.h5"
    refs = chunkview.scan(url, storage_options=opts)
    assert refs.sources[url]["etag"]
    want = _h5_all(h5file)
    g = chunkview.open(refs, remote_options=opts)
    z = chunkview.open_zarr(refs, remote_options=opts)
    cfs = fsspec.filesystem("chunkview", fo=refs, remote_protocol="s3", remote_options=opts,
                            skip_instance_cache=True)
    zg = zarr.open_group(cfs.get_mapper(""), mode="r", zarr_format=2)
    for name, arr in want.items():
        np.testing.assert_array_equal(g[name][...], arr, err_msg=name)
        np.testing.assert_array_equal(z[name][...], arr, err_msg=name)
        np.testing.assert_array_equal(zg[name][...], arr, err_msg=name)
    # references stored on S3 read chunks from S3
    refs.save(str(tmp_path / "refs.json"))
    fs.put(str(tmp_path / "refs.json"), "chunkview-test/refs.json")
    g2 = chunkview.open("s3://chunkview-test/refs.json", target_options=opts,
                        remote_options=opts)
    np.testing.assert_array_equal(g2["t2m"][...], want["t2m"])


def test_s3_source_change(s3, h5file, tmp_path):
    fs, opts = s3
    fs.put(str(h5file), "chunkview-test/changing.h5")
    url = "s3://chunkview-test/changing.h5"
    refs = chunkview.scan(url, storage_options=opts)
    data = bytearray(h5file.read_bytes())
    data[-1] ^= 0xFF
    fs.pipe("chunkview-test/changing.h5", bytes(data))
    chunkview.open(refs, remote_options=opts)["t2m"][0]  # same size
    with pytest.raises(SourceChangedError, match="ETag"):
        chunkview.open(refs, remote_options=opts, check_source="etag")["t2m"][0]
    fs.pipe("chunkview-test/changing.h5", bytes(data) + b"more")
    with pytest.raises(SourceChangedError, match="size"):
        chunkview.open_zarr(refs, remote_options=opts)["t2m"][0]


def test_s3_change_after_the_first_read(s3, h5file):
    """With check_source="etag" every S3 answer is checked (If-Match, and the answer's ETag),
    not only the first read of a reader: an object rewritten (same size) between two reads of
    one opened group is refused on both read paths."""
    fs, opts = s3
    url = "s3://chunkview-test/later.h5"
    fs.put(str(h5file), "chunkview-test/later.h5")
    refs = chunkview.scan(url, storage_options=opts)
    data = bytearray(h5file.read_bytes())
    data[-1] ^= 0xFF
    want = _h5_all(h5file)["t2m"]
    g = chunkview.open(refs, remote_options=opts, check_source="etag")
    z = chunkview.open_zarr(refs, remote_options=opts, check_source="etag")
    np.testing.assert_array_equal(g["t2m"][0], want[0])
    np.testing.assert_array_equal(z["t2m"][0], want[0])
    fs.pipe("chunkview-test/later.h5", bytes(data))
    with pytest.raises(SourceChangedError, match="ETag"):
        g["t2m"][-1]
    with pytest.raises(SourceChangedError, match="ETag"):
        z["t2m"][-1]
    # without the ETag check the same-size rewrite is read (size is all that is compared)
    g2 = chunkview.open(refs, remote_options=opts)
    g2["t2m"][-1]


@pytest.mark.parametrize("fault", ["ignore-range", "short", "truncate"])
def test_filesystem_refuses_a_lying_server(served, fault):
    """The chunkview filesystem reads through the same fetch as chunkview.open: a body that is
    not the range asked for (the whole file, half of it, a connection cut short) is never
    returned as the key's bytes, and the error names the key, URL and range, quickly."""
    url = served.url("small.h5")
    refs = chunkview.scan(url, storage_options=_fresh_http())
    served.fail(*[fault] * 10, path="small.h5")
    fs = fsspec.filesystem("chunkview", fo=refs, skip_instance_cache=True,
                           remote_options=_fresh_http(), retries=1, backoff=0.01,
                           check_source="off")
    t0 = time.perf_counter()
    with pytest.raises(FetchError) as ei:
        fs.cat_file("t2m/0.0.0")
    assert time.perf_counter() - t0 < 10
    assert ei.value.key == "t2m/0.0.0" and ei.value.url == url
    assert ei.value.end > ei.value.start
    with pytest.raises(FetchError):
        fs.cat(["t2m/0.0.0", "t2m/0.0.1"])


def test_filesystem_source_change(tmp_path, h5file):
    """A file that changed since the scan is refused by the filesystem too (size, then
    modification time with check_source="etag")."""
    p = tmp_path / "copy.h5"
    shutil.copy(h5file, p)
    refs = chunkview.scan(str(p))

    def cat(**kw):
        fs = fsspec.filesystem("chunkview", fo=refs, skip_instance_cache=True, **kw)
        return fs.cat_file("t2m/0.0.0")

    before = cat(check_source="etag")
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert cat() == before  # the size is unchanged
    with pytest.raises(SourceChangedError, match="modified"):
        cat(check_source="etag")
    _append(p)
    with pytest.raises(SourceChangedError, match="size"):
        cat()


@pytest.mark.parametrize("api", ["open", "zarr", "fs"])
def test_shifted_range_is_not_data(served, api):
    """A server answering 206 with another range of the right length (its Content-Range says
    so) is refused on every read path; fsspec's own cat_file would return those bytes."""
    url = served.url("small.h5")
    refs = chunkview.scan(url, storage_options=_fresh_http())
    served.fail(*["shift"] * 30, path="small.h5")
    t0 = time.perf_counter()
    with pytest.raises((FetchError, OSError)) as ei:
        _read_chunk(api, refs, remote_options=_fresh_http(), backoff=0.01, retries=1,
                    check_source="off", multi_range=False)
    assert time.perf_counter() - t0 < 10
    err = ei.value
    while not isinstance(err, FetchError) and err.__cause__ is not None:
        err = err.__cause__
    assert isinstance(err, FetchError), ei.value
    assert err.url == url and err.key.startswith("t2m/") and "the server answered" in str(err)


def test_scan_refuses_a_shifted_range(served):
    """The scanner's block reader checks Content-Range as well: metadata read from the wrong
    place is never parsed."""
    from chunkview.io.blocks import open_reader

    url = served.url("small.h5")
    reader = open_reader(url, _fresh_http(), block_size=4096)
    want = bytes(reader.read(8192, 100))
    served.fail(*["shift"] * 30, path="small.h5")
    fresh = open_reader(url, _fresh_http(), block_size=4096)
    with pytest.raises(ScanError, match="the server answered") as ei:
        fresh.read(8192, 100)
    assert ei.value.url == url
    served.faults.clear()
    assert bytes(fresh.read(8192, 100)) == want


@pytest.mark.parametrize("fault", ["shift", "short", "ignore-range", "truncate"])
def test_whole_file_ranges_from_a_lying_server(served, fault):
    """Ranges of a whole-file reference (open-ended and from the end, which fsspec allows)
    through the chunkview filesystem: a lying server never gives wrong bytes as the answer,
    and the read gives up quickly."""
    url = served.url("small.h5")
    truth = (served.root / "small.h5").read_bytes()
    fs = fsspec.filesystem("chunkview", fo={"w": [url]}, skip_instance_cache=True,
                           remote_options=_fresh_http(), retries=1, backoff=0.01,
                           check_source="off")
    for start, end in ((1, -5), (-5, None), (10, None), (100, 200)):
        served.fail(*[fault] * 4, path="small.h5")
        t0 = time.perf_counter()
        try:
            got = fs.cat_file("w", start=start, end=end)
        except FetchError as e:
            assert e.key == "w" and e.url == url
        else:
            assert got == truth[start:end], (fault, start, end)
        assert time.perf_counter() - t0 < 10
