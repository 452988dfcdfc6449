"""``ChunkviewFileSystem``: the fsspec filesystem over a reference set (protocol ``"chunkview"``).

A drop-in for fsspec's ``ReferenceFileSystem``: the same constructor arguments, keys served as
files, byte ranges of the targets fetched on demand.  References live in the C index, batch
reads (``cat``, ``cat_ranges``, zarr's ``get_partial_values``) merge nearby ranges of one URL
into one read on every path, and errors name the key, the URL and the byte range.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import re
import weakref

import fsspec
from fsspec.asyn import AsyncFileSystem
from fsspec.core import split_protocol
from fsspec.implementations.reference import ReferenceNotReachable
from fsspec.spec import AbstractBufferedFile

from chunkview._index import INLINE, MISSING, WHOLE
from chunkview.errors import ChunkviewError, FetchError, ReferenceNotFound, fetch_detail
from chunkview.io.fetch import Source
from chunkview.io.resolve import LOCAL_PROTOCOLS, Resolver
from chunkview.keys import LIVE_REFERENCES_TOKEN
from chunkview.options import ReadOptions
from chunkview.refs.load import load

_MAGIC = re.compile(r"[*?\[]")


class ReferenceNotReachableError(FetchError, ReferenceNotReachable):
    """A reference's bytes could not be read through :class:`ChunkviewFileSystem`: both
    chunkview's :class:`~chunkview.errors.FetchError` (an ``OSError``) and fsspec's
    ``ReferenceNotReachable``, naming the key, the URL and the byte range; ``__cause__`` is
    what the target filesystem raised."""

    def __init__(self, key, url, start=None, end=None, cause=None):
        FetchError.__init__(self, key, url, start, end, cause)
        self.args = (f'Reference "{key}" failed to fetch target {url!r} '
                     f'{fetch_detail(start, end, cause)}',)

    def __str__(self):
        return self.args[0]


def _reachable(res):
    """A FetchError as :class:`ReferenceNotReachableError` (other results unchanged)."""
    if isinstance(res, FetchError) and not isinstance(res, ReferenceNotReachableError):
        cause = res.__cause__ if res.__cause__ is not None else res
        new = ReferenceNotReachableError(res.key, res.url, res.start, res.end, cause=cause)
        new.__cause__ = cause
        return new
    return res
_LIVE_REFS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_token_counter = itertools.count()


class ChunkviewFileSystem(AsyncFileSystem):
    """View the chunks of a reference set as files.

    Parameters are those of fsspec's ``ReferenceFileSystem``: ``fo`` (a path/URL of JSON,
    parquet or native references, a kerchunk dict, or a :class:`chunkview.References`),
    ``target`` (the URL for references without one), ``target_protocol`` / ``target_options``
    (to read ``fo``), ``remote_protocol`` / ``remote_options`` (to read the data), ``fs`` (a
    filesystem or a ``{protocol: filesystem or options}`` dict), ``template_overrides`` and
    ``cache_size`` (records kept by lazily read parquet references).  URLs resolve as for
    :func:`chunkview.open` (:class:`chunkview.io.resolve.Resolver`), and reads take the same
    :class:`chunkview.options.ReadOptions` keywords (``max_gap``, ``retries``, ...).
    """

    protocol = "chunkview"
    cachable = False
    root_marker = ""
    async_impl = True

    def __init__(self, fo, target=None, ref_storage_args=None, target_protocol=None,
                 target_options=None, remote_protocol=None, remote_options=None, fs=None,
                 template_overrides=None, simple_templates=True, cache_size=128, lazy=None,
                 **kwargs):
        self.read = ReadOptions.from_kwargs(kwargs)
        super().__init__(**kwargs)
        if isinstance(fo, dict) and LIVE_REFERENCES_TOKEN in fo:
            refs = _LIVE_REFS.get(fo[LIVE_REFERENCES_TOKEN])
            if refs is None:
                raise ChunkviewError("the references of this serialized filesystem are not "
                                     "available in this process; pass a path or a dict as fo")
            fo = refs
        self.references = load(fo, target_protocol=target_protocol,
                               target_options=ref_storage_args or target_options,
                               template_overrides=template_overrides, cache_size=cache_size,
                               lazy=lazy)
        # the batch fetch every reader shares (io/fetch.py), here for byte ranges on this loop
        self.source = Source(self.references,
                             Resolver(remote_protocol=remote_protocol,
                                      remote_options=remote_options, fs=fs, target=target,
                                      asynchronous=self.asynchronous), self.read)
        self.resolver = self.source.resolver
        self.target = target
        self._token = None

    # ----------------------------------------------------------------- serialisation

    def to_dict(self, *, include_password: bool = True) -> dict:
        """JSON-able form (``fsspec.AbstractFileSystem.from_json`` recreates the instance).
        A reference set given as a path travels as that path; one given in memory is found
        again by a token in this process."""
        fo = self.storage_args[0] if self.storage_args else self.storage_options.get("fo")
        if not isinstance(fo, (str, os.PathLike)):
            if self._token is None:
                self._token = f"{os.getpid()}-{id(self)}-{next(_token_counter)}"
                _LIVE_REFS[self._token] = self.references
            fo = {LIVE_REFERENCES_TOKEN: self._token}
        from fsspec.json import FilesystemJSONEncoder

        enc = FilesystemJSONEncoder()
        opts = {k: v for k, v in self.storage_options.items() if k != "fo"}
        if not include_password:
            opts.pop("password", None)
        d = dict(cls=f"{type(self).__module__}:{type(self).__name__}", protocol=self.protocol,
                 args=[], fo=enc.make_serializable(fo if not isinstance(fo, os.PathLike)
                                                   else os.fspath(fo)))
        d.update(enc.make_serializable(opts))
        return d

    @property
    def fss(self) -> dict:
        """``{protocol: filesystem}`` for the protocols the references use, and ``None``:
        the filesystem names without a protocol are read with (as ``ReferenceFileSystem``
        has it)."""
        r = self.resolver
        out = {}
        protocols = {split_protocol(u)[0] for u in self.references.urls if isinstance(u, str)}
        for p in protocols | {r.remote_protocol}:
            if p not in LOCAL_PROTOCOLS:
                out[p] = r.fs_for(p + "://")
        out.update(r.fss)
        if None not in out:
            default = out.get(r.remote_protocol) if r.remote_protocol not in LOCAL_PROTOCOLS \
                else fsspec.filesystem("file")
            if self.storage_options.get("fs") is default and not default.async_impl:
                # as ReferenceFileSystem shows a synchronous filesystem handed in as fs=
                from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

                default = AsyncFileSystemWrapper(default)
            out[None] = default
        return out

    # ----------------------------------------------------------------- resolving keys

    def _resolve(self, keys, starts=None, ends=None):
        """For each key: ("data", bytes) | ("range", url, start, end, whole) | ("missing",)."""
        keys = [self._strip_protocol(k) for k in keys]
        ids, offs, lens = self.references.lookup_many(keys)
        urls = self.references.urls
        out = []
        whole = int(WHOLE)
        for i, key in enumerate(keys):
            uid = int(ids[i])
            s = None if starts is None else starts[i]
            e = None if ends is None else ends[i]
            if uid == MISSING:
                out.append(("missing", key))
            elif uid == INLINE:
                out.append(("data", key, self.references[key][s:e]))
            else:
                url = self.resolver.url(key, urls[uid])
                length = int(lens[i])
                if length == whole:
                    out.append(("range", key, url, s, e, True))
                    continue
                start0 = int(offs[i])
                end0 = start0 + length
                # resolve like slicing the part, never reaching outside the referenced range
                if s is None:
                    s1 = start0
                elif s >= 0:
                    s1 = min(start0 + s, end0)
                else:
                    s1 = max(end0 + s, start0)
                if e is None:
                    e1 = end0
                elif e >= 0:
                    e1 = min(start0 + e, end0)
                else:
                    e1 = max(end0 + e, start0)
                out.append(("range", key, url, s1, max(e1, s1), False))
        return out

    # ----------------------------------------------------------------- reading

    async def _read(self, resolved, **kwargs) -> list:
        """The shared fetch (``Source.read_ranges``), failures as
        :class:`ReferenceNotReachableError`."""
        return [_reachable(r) for r in await self.source.read_ranges(resolved, **kwargs)]

    async def _cat_file(self, path, start=None, end=None, **kwargs):
        (item,) = self._resolve([path], None if start is None else [start],
                                None if end is None else [end])
        if item[0] == "missing":
            raise FileNotFoundError(item[1])
        (res,) = await self._read([item])
        if isinstance(res, Exception):
            raise res
        return res

    async def _cat_ranges(self, paths, starts, ends, max_gap=None, batch_size=None,
                          on_error="return", **kwargs):
        if not isinstance(starts, list):
            starts = [starts] * len(paths)
        if not isinstance(ends, list):
            ends = [ends] * len(paths)
        if len(starts) != len(paths) or len(ends) != len(paths):
            raise ValueError("paths, starts and ends must have the same length")
        resolved = self._resolve(paths, starts, ends)
        results = await self._read(resolved, max_gap=max_gap)
        if on_error == "raise":
            for r in results:
                if isinstance(r, Exception):
                    raise r
        return results

    async def _cat(self, path, recursive=False, on_error="raise", batch_size=None, **kwargs):
        single = isinstance(path, str) and not recursive and not _MAGIC.search(path)
        if single:
            paths = [path]
        elif isinstance(path, list) and not recursive and not any(
                _MAGIC.search(p) for p in path):
            paths = path
        else:
            paths = await self._expand_path(path, recursive=recursive)
            paths = [p for p in paths if p in self.references]
        resolved = self._resolve(paths)
        results = await self._read(resolved)
        out = {}
        for item, res in zip(resolved, results):
            key = item[1]
            if isinstance(res, Exception):
                if on_error == "raise":
                    raise res
                if on_error == "omit":
                    continue
            out[key] = res
        if single:
            if not out:
                raise FileNotFoundError(path)
            return out[resolved[0][1]]
        return out

    def cat(self, path, recursive=False, on_error="raise", **kwargs):
        # fsspec's sync() raises a returned exception: box the result (one path with
        # on_error="return" returns its error)
        async def boxed():
            return (await self._cat(path, recursive=recursive, on_error=on_error, **kwargs),)

        return fsspec.asyn.sync(self.loop, boxed)[0]

    def cat_file(self, path, start=None, end=None, **kwargs):
        return fsspec.asyn.sync(self.loop, self._cat_file, path, start=start, end=end)

    async def _get_file(self, rpath, lpath, **kwargs):
        if self.isdir(rpath):
            return os.makedirs(lpath, exist_ok=True)
        data = await self._cat_file(rpath)
        with open(lpath, "wb") as f:
            f.write(data)

    def _open(self, path, mode="rb", block_size=None, cache_options=None, **kwargs):
        if "r" not in mode or "+" in mode:
            raise NotImplementedError("chunkview references are read-only")
        path = self._strip_protocol(path)
        value = self.references.get(path)
        if value is None:
            raise FileNotFoundError(path)
        if isinstance(value, bytes):
            return io.BytesIO(value)
        return ChunkviewFile(self, path, mode, block_size=block_size or "default",
                             cache_options=cache_options, **kwargs)

    # ----------------------------------------------------------------- listing

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = fsspec.utils.stringify_path(path)
        # "reference://" too: a drop-in registered as fsspec's "reference" protocol
        for proto in ("chunkview", "reference"):
            if path.startswith(proto + "://"):
                path = path[len(proto) + 3:]
                break
            if path.startswith(proto + "::"):
                path = path[len(proto) + 2:]
                break
        return path.strip("/")

    def _file_info(self, key, value=None):
        value = self.references.get(key) if value is None else value
        if isinstance(value, bytes):
            size = len(value)
        elif len(value) == 1:
            size = None
        else:
            size = value[2]
        return {"name": key, "type": "file", "size": size}

    def ls(self, path, detail=True, **kwargs):
        path = self._strip_protocol(path)
        listing = self.references.listing()
        entry = listing.get(path)
        if entry is None:
            if path in self.references:
                info = self._file_info(path)
                return [info] if detail else [path]
            raise FileNotFoundError(path)
        if not detail:
            return sorted(list(entry["dirs"]) + list(entry["files"]))
        out = [{"name": d, "type": "directory", "size": 0} for d in entry["dirs"]]
        out += [self._file_info(k) for k in entry["files"]]
        return sorted(out, key=lambda o: o["name"])

    async def _ls(self, path, detail=True, **kwargs):
        return self.ls(path, detail=detail, **kwargs)

    def isdir(self, path):
        return self._strip_protocol(path) in self.references.listing()

    async def _isdir(self, path):
        return self.isdir(path)

    def isfile(self, path):
        return self._strip_protocol(path) in self.references

    async def _isfile(self, path):
        return self.isfile(path)

    def exists(self, path, **kwargs):
        path = self._strip_protocol(path)
        return path in self.references or path in self.references.listing()

    async def _exists(self, path, **kwargs):
        return self.exists(path)

    async def _info(self, path, **kwargs):
        # the sync ``info`` is generated from this by fsspec's mirror_sync_methods
        path = self._strip_protocol(path)
        value = self.references.get(path)
        if value is None:
            if path in self.references.listing():
                return {"name": path, "type": "directory", "size": 0}
            raise FileNotFoundError(path)
        info = self._file_info(path, value)
        if info["size"] is None:  # a whole file: its size comes from the target
            try:
                info["size"] = await self.source.size(path, self.resolver.url(path, value[0]))
            except FetchError as e:
                raise _reachable(e) from e.__cause__
        return info

    def find(self, path, maxdepth=None, withdirs=False, detail=False, **kwargs):
        path = self._strip_protocol(path)
        if withdirs or maxdepth is not None:
            return super().find(path, maxdepth=maxdepth, withdirs=withdirs, detail=detail,
                                **kwargs)
        if path:
            pre = path + "/"
            keys = sorted(k for k in self.references if k == path or k.startswith(pre))
        else:
            keys = sorted(self.references)
        if detail:
            return {k: self._file_info(k) for k in keys}
        return keys

    async def _find(self, path, maxdepth=None, withdirs=False, **kwargs):
        if withdirs or maxdepth is not None:
            return await super()._find(path, maxdepth=maxdepth, withdirs=withdirs, **kwargs)
        return self.find(path, maxdepth=maxdepth, withdirs=withdirs, **kwargs)

    # ----------------------------------------------------------------- writing (in memory)

    async def _pipe_file(self, path, data, mode="overwrite", **kwargs):
        path = self._strip_protocol(path)
        if mode == "create" and self.exists(path):
            raise FileExistsError(path)
        self.references[path] = data

    def save_json(self, url, **storage_options):
        """Write the references (as changed through this filesystem) as kerchunk JSON."""
        self.references.save(url, format="json", storage_options=storage_options or None)

    async def _put_file(self, lpath, rpath, mode="overwrite", **kwargs):
        """Store a local file's bytes as the inline value of key ``rpath``."""
        rpath = self._strip_protocol(rpath)
        if mode == "create" and self.exists(rpath):
            raise FileExistsError(rpath)
        data = await asyncio.to_thread(_read_local, lpath)
        self.references[rpath] = data

    async def _makedirs(self, path, exist_ok=False):
        pass  # directories are implied by keys

    async def _mkdir(self, path, create_parents=True, **kwargs):
        pass

    async def _rm(self, path, recursive=False, batch_size=None, maxdepth=None, **kwargs):
        paths = path if isinstance(path, list) else [path]
        for p in paths:
            p = self._strip_protocol(p)
            keys = [p] if p in self.references else []
            if recursive:
                keys += [k for k in self.find(p) if k != p]
            for k in keys:
                await self._rm_file(k)

    async def _rm_file(self, path, **kwargs):
        try:
            del self.references[self._strip_protocol(path)]
        except (KeyError, ReferenceNotFound):
            pass


def _read_local(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class ChunkviewFile(AbstractBufferedFile):
    """Read-only buffered file over one reference (byte range or whole file)."""

    def __init__(self, fs, path, mode="rb", block_size="default", cache_options=None, **kwargs):
        super().__init__(fs, path, mode=mode, block_size=block_size,
                         cache_options=cache_options, **kwargs)

    def _fetch_range(self, start, end):
        return self.fs.cat_file(self.path, start=start, end=end)
