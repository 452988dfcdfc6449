# cython: freethreading_compatible = False
"""Thin Cython wrapper of the C reference index (csrc/cv_index.h) and the C JSON reference parser.

Marshals buffers and releases the GIL around bulk work; C status codes become exceptions in
chunkview._status and parallel lookups run on chunkview._pool.  All logic lives in C (below)
or Python (above).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_Check
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc

cimport numpy as cnp

from chunkview._cv cimport *

import os
import time as _time

import numpy as np

from chunkview import _pool, _status

cnp.import_array()

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL

cdef extern from "cvalloc.h":
    unsigned int CV_TRACEMALLOC_DOMAIN

INLINE = -1
MISSING = -2
WHOLE = np.iinfo(np.uint64).max
# the tracemalloc domain of the C core's memory (index, JSON parser, decoders):
# tracemalloc.DomainFilter(True, TRACEMALLOC_DOMAIN) selects it in a snapshot
TRACEMALLOC_DOMAIN = CV_TRACEMALLOC_DOMAIN


# the C status codes, for chunkview._status to check its table against
STATUS_CODES = {"ENOMEM": CV_ENOMEM, "EINVAL": CV_EINVAL, "ENOTFOUND": CV_ENOTFOUND,
                "ERANGE": CV_ERANGE, "EFORMAT": CV_EFORMAT, "ECHECKSUM": CV_ECHECKSUM,
                "EVERSION": CV_EVERSION, "ETRUNCATED": CV_ETRUNCATED, "EREADONLY": CV_EREADONLY,
                "EUTF8": CV_EUTF8, "EUNSUPPORTED": CV_EUNSUPPORTED, "ECORRUPT": CV_ECORRUPT,
                "ESIZE": CV_ESIZE, "ESOURCE": CV_ESOURCE}


cdef str _where(cv_where *w):
    """", field F at byte N" for a failure the C core located."""
    if w.field == NULL:
        return ""
    return f" (field {w.field.decode()!r} at byte {w.at})"


cdef object status_error(int st, str what):
    """A C status as the exception chunkview._status words it."""
    return _status.status_error(st, cv_strerror(st).decode(), what)


cdef extern from "Python.h":
    bint PyList_CheckExact(object o)
    PyObject *PyList_GET_ITEM(object o, Py_ssize_t i)
    PyObject *PyTuple_GET_ITEM(object o, Py_ssize_t i)


cdef extern from *:
    """
    /* The bytes of an exact str that is compact ASCII (its own UTF-8) or of an exact bytes
     * object, read in place; NULL for anything else.  No reference is taken: the caller holds
     * the key. */
    static inline const uint8_t *cv_fast_key(PyObject *o, Py_ssize_t *n) {
        if (PyUnicode_CheckExact(o) && PyUnicode_IS_COMPACT_ASCII(o)) {
            *n = PyUnicode_GET_LENGTH(o);
            return (const uint8_t *)(((PyASCIIObject *)o) + 1);
        }
        if (PyBytes_CheckExact(o)) {
            *n = PyBytes_GET_SIZE(o);
            return (const uint8_t *)PyBytes_AS_STRING(o);
        }
        return NULL;
    }
    """
    const uint8_t *cv_fast_key(PyObject *o, Py_ssize_t *n) noexcept


cdef inline const uint8_t *key_ptr(object key, Py_ssize_t *n) except NULL:
    """The UTF-8 bytes of a str or bytes key, in place (a str caches its UTF-8)."""
    cdef const uint8_t *p = cv_fast_key(<PyObject *>key, n)
    if p != NULL:
        return p
    if PyUnicode_Check(key):
        try:
            return <const uint8_t *>PyUnicode_AsUTF8AndSize(key, n)
        except UnicodeEncodeError as e:
            raise _status.error("key_utf8", key) from e
    if isinstance(key, bytes):
        n[0] = PyBytes_GET_SIZE(key)
        return <const uint8_t *>PyBytes_AS_STRING(key)
    raise _status.error("key_type", type(key).__name__)


cdef Py_ssize_t LOOKUP_SLICE = 4096  # keys handed to C per batch-lookup call
cdef Py_ssize_t LOOKUP_PART = 8192  # keys claimed at a time by a thread of a parallel lookup
PARALLEL_MIN = 1 << 15  # batches this long are looked up in several threads


cdef int _key_pointers(keys, Py_ssize_t lo, Py_ssize_t hi, const uint8_t **kp,
                       size_t *kls) except -1:
    """Pointers to and lengths of the UTF-8 bytes of keys[lo:hi] (a list or tuple, which keeps
    them alive), into kp[0:hi-lo] and kls."""
    cdef Py_ssize_t i, kl
    cdef PyObject *o
    cdef const uint8_t *p
    cdef bint is_list = PyList_CheckExact(keys)
    for i in range(lo, hi):
        o = PyList_GET_ITEM(keys, i) if is_list else PyTuple_GET_ITEM(keys, i)
        p = cv_fast_key(o, &kl)  # the common case without a call to key_ptr
        if p == NULL:
            p = key_ptr(<object>o, &kl)
        kp[i - lo] = p
        kls[i - lo] = <size_t>kl
    return 0


cdef class _Lookup:
    """One parallel batch lookup: the key table and outputs that its threads share."""
    cdef ChunkIndex owner
    cdef const uint8_t **kp
    cdef size_t *kls
    cdef int64_t *ids
    cdef uint64_t *offs
    cdef uint64_t *lens
    cdef size_t n
    cdef size_t next
    cdef bint corrupt

    def __dealloc__(self):
        free(self.kp)
        free(self.kls)

    def run(self):
        cdef cv_index *ix = self.owner.idx
        cdef int64_t got
        with nogil:
            got = cv_index_get_many_shared(ix, self.n, self.kp, self.kls, self.ids, self.offs,
                                           self.lens, &self.next, <size_t>LOOKUP_PART)
        if got < 0:
            self.corrupt = True


cdef class ChunkIndex:
    """A compact C hash table from chunk keys to references.

    A reference is ``(url, offset, length)``, a whole file ``(url,)``, or inline ``bytes``.
    URLs are interned once.  Pickles as the native format's bytes.
    """

    cdef cv_index *idx
    cdef object _owner  # buffer the index borrows (mmap or bytes), kept alive here
    # Readers that released the GIL (batch lookups, grid lookups, check, tobytes) and writers
    # that did (bulk inserts, shrink) exclude each other; the counters change under the GIL.
    # A writer waits for readers to leave, a reader for a writer to finish, so a reference set
    # changed in one thread while another runs lookup_many is safe (issue 21).
    cdef int _readers
    cdef bint _writing

    def __cinit__(self):
        self.idx = NULL
        self._owner = None
        self._readers = 0
        self._writing = False

    cdef int _begin_read(self) except -1:
        while self._writing:
            _time.sleep(1e-5)  # releases the GIL: the writer finishes
        self._readers += 1
        return 0

    cdef inline void _end_read(self) noexcept:
        self._readers -= 1

    cdef int _begin_write(self) except -1:
        while self._writing or self._readers:
            _time.sleep(1e-5)
        self._writing = True
        return 0

    cdef inline void _end_write(self) noexcept:
        self._writing = False

    cdef inline int _wait_readers(self) except -1:
        """Before a write that keeps the GIL: no reader is left in C, and none starts before
        the write is done (starting one needs the GIL)."""
        self._begin_write()
        self._end_write()
        return 0

    cdef inline int _no_writer(self) except -1:
        """Before a read that keeps the GIL: wait out a writer that released it."""
        while self._writing:
            _time.sleep(1e-5)
        return 0

    def __init__(self):
        self.idx = cv_index_new()
        if self.idx == NULL:
            raise MemoryError()

    def __dealloc__(self):
        if self.idx != NULL:
            cv_index_free(self.idx)
            self.idx = NULL

    # ------------------------------------------------------------------ construction

    @staticmethod
    def from_arrays(keys, url_ids, offsets, lengths, urls):
        """Bulk build: ``keys`` (sequence of str/bytes), ``url_ids`` (ints into ``urls``),
        ``offsets`` and ``lengths`` (non-negative ints; length ``WHOLE`` = whole file)."""
        cdef ChunkIndex self = ChunkIndex()
        self.add_many(keys, url_ids, offsets, lengths, urls)
        return self

    def add_many(self, keys, url_ids, offsets, lengths, urls, bint shrink=True):
        """Bulk insert; ``shrink=False`` leaves the index growable for further inserts (call
        :meth:`shrink` after the last)."""
        cdef Py_ssize_t n = len(keys), i, kl
        cdef int st
        ids_map = np.array([self.add_url(u) for u in urls], dtype=np.uint32)
        ids = np.asarray(url_ids)
        if ids.shape != (n,) or np.asarray(offsets).shape != (n,) or np.asarray(lengths).shape != (n,):
            raise _status.error("lengths_differ", "keys, url_ids, offsets and lengths")
        if n and (ids.min() < 0 or ids.max() >= len(urls)):
            raise _status.error("url_id_range")
        off_a = np.asarray(offsets)
        len_a = np.asarray(lengths)
        if n and off_a.dtype.kind == "i" and off_a.min() < 0:
            raise _status.error("negative_offset")
        if n and len_a.dtype.kind == "i" and len_a.min() < 0:
            raise _status.error("negative_length")
        cdef cnp.ndarray[uint32_t, ndim=1] cids = np.ascontiguousarray(ids_map[ids.astype(np.intp)])
        cdef cnp.ndarray[uint64_t, ndim=1] coff = np.ascontiguousarray(off_a, dtype=np.uint64)
        cdef cnp.ndarray[uint64_t, ndim=1] clen = np.ascontiguousarray(len_a, dtype=np.uint64)
        cdef const uint8_t **kp = <const uint8_t **>malloc(max(n, 1) * sizeof(uint8_t *))
        cdef size_t *kls = <size_t *>malloc(max(n, 1) * sizeof(size_t))
        if kp == NULL or kls == NULL:
            free(kp)
            free(kls)
            raise MemoryError()
        self._begin_write()
        try:
            for i in range(n):
                kp[i] = key_ptr(keys[i], &kl)
                kls[i] = <size_t>kl
            with nogil:
                st = cv_index_put_many(self.idx, <size_t>n, kp, kls,
                                       <const uint32_t *>cids.data,
                                       <const uint64_t *>coff.data, <const uint64_t *>clen.data)
                if st == CV_OK and shrink:
                    st = cv_index_shrink(self.idx)
            if st != CV_OK:
                raise status_error(st, "bulk insert")
        finally:
            self._end_write()
            free(kp)
            free(kls)

    def add_grid(self, prefix, coords, url_ids, offsets, lengths, urls, sep=".",
                 bint shrink=True):
        """Bulk insert of chunk references keyed ``prefix + "i.j.k"`` from the rows of
        ``coords`` ((n, rank) non-negative ints; rank 0 gives ``prefix + "0"``), the keys
        formatted in C.  ``shrink=False`` leaves the index growable for further inserts
        (call :meth:`shrink` after the last)."""
        cdef bytes pre = prefix.encode() if isinstance(prefix, str) else bytes(prefix)
        cdef bytes bsep = sep.encode() if isinstance(sep, str) else bytes(sep)
        cdef cnp.ndarray[int64_t, ndim=2] cc = np.ascontiguousarray(coords, dtype=np.int64)
        cdef Py_ssize_t n = cc.shape[0]
        if len(bsep) != 1:
            raise _status.error("sep_one_byte")
        ids_map = np.array([self.add_url(u) for u in urls], dtype=np.uint32)
        ids = np.asarray(url_ids)
        if ids.shape != (n,) or np.shape(offsets) != (n,) or np.shape(lengths) != (n,):
            raise _status.error("lengths_differ", "coords, url_ids, offsets and lengths")
        if n and (ids.min() < 0 or ids.max() >= len(urls)):
            raise _status.error("url_id_range")
        if n and cc.shape[1] and cc.min() < 0:
            raise _status.error("negative_coordinate")
        cdef cnp.ndarray[uint32_t, ndim=1] cids = np.ascontiguousarray(ids_map[ids.astype(np.intp)])
        cdef cnp.ndarray[uint64_t, ndim=1] coff = np.ascontiguousarray(offsets, dtype=np.uint64)
        cdef cnp.ndarray[uint64_t, ndim=1] clen = np.ascontiguousarray(lengths, dtype=np.uint64)
        cdef const uint8_t *pp = <const uint8_t *>PyBytes_AS_STRING(pre)
        cdef size_t pl = len(pre), rank = cc.shape[1]
        cdef uint8_t s0 = bsep[0]
        cdef const int64_t *cp = <const int64_t *>cc.data
        cdef int st
        self._begin_write()
        try:
            with nogil:
                st = cv_index_put_grid(self.idx, pp, pl, s0, <size_t>n, rank, cp,
                                       <const uint32_t *>cids.data, <const uint64_t *>coff.data,
                                       <const uint64_t *>clen.data)
                if st == CV_OK and shrink:
                    st = cv_index_shrink(self.idx)
        finally:
            self._end_write()
        if st != CV_OK:
            raise status_error(st, "bulk insert")

    def reserve(self, nkeys, keybytes=0):
        """Make room for ``nkeys`` more keys of ``keybytes`` bytes in all before a run of
        inserts (one allocation instead of geometric growth)."""
        cdef int st
        if nkeys < 0 or keybytes < 0:
            raise _status.error("negative_reservation")
        self._wait_readers()
        st = cv_index_reserve(self.idx, <size_t>nkeys, <size_t>keybytes)
        if st != CV_OK:
            raise status_error(st, "reserve")

    def meta_keys(self):
        """The keys whose last ``/``-separated component starts with ``.`` (``.zarray``,
        ``.zattrs``, ``.zgroup``, chunkview's ``.cv*``...): the metadata of a reference set
        without decoding every chunk key."""
        cdef size_t cursor = 0, kl, j
        cdef const uint8_t *kp
        cdef cv_ref r
        cdef int st
        out = []
        while True:
            st = cv_index_next(self.idx, &cursor, &kp, &kl, &r)
            if st == CV_ENOTFOUND:
                return out
            if st != CV_OK:
                raise status_error(st, f"record at byte {cursor}")
            j = kl
            while j > 0 and kp[j - 1] != 47:  # '/'
                j -= 1
            if j < kl and kp[j] == 46:  # '.'
                out.append((<const char *>kp)[:kl].decode("utf-8", "surrogateescape"))

    def shrink(self):
        """Compact and freeze the index after a run of inserts (lookups then take one
        memory round trip)."""
        cdef int st
        self._begin_write()
        try:
            with nogil:
                st = cv_index_shrink(self.idx)
        finally:
            self._end_write()
        if st != CV_OK:
            raise status_error(st, "shrink")

    @staticmethod
    def frombytes(buf, bint copy=False, bint verify=True):
        """Open the native format from a buffer (bytes, memoryview, mmap).  With ``copy=False``
        the index reads the buffer in place and keeps a reference to it."""
        cdef const uint8_t[::1] view = memoryview(buf).cast("B")
        cdef int st = 0
        cdef ChunkIndex self = ChunkIndex.__new__(ChunkIndex)
        cdef size_t n = view.shape[0]
        cdef const uint8_t *p = &view[0] if n else <const uint8_t *>b""
        cdef cv_where w
        w.field = NULL
        w.at = 0
        with nogil:
            self.idx = cv_index_open_buffer_at(p, n, copy, verify, &st, &w)
        if self.idx == NULL:
            raise status_error(st, "cannot open native chunkview index" + _where(&w))
        if not copy:
            self._owner = buf
        return self

    @staticmethod
    def from_json(buf):
        """Parse kerchunk reference JSON (v0/v1) in C.  Returns ``(index, info)`` where info has
        ``version``, the raw ``templates`` / ``gen`` JSON text (or None), ``deferred``: a list of
        ``(raw key JSON, raw value JSON)`` for object values, and ``nrefs``."""
        cdef const uint8_t[::1] view = memoryview(buf).cast("B")
        cdef ChunkIndex self = ChunkIndex()
        cdef cv_refjson_result res
        cdef int st
        cdef size_t n = view.shape[0]
        cdef const uint8_t *p = &view[0] if n else <const uint8_t *>b""
        with nogil:
            st = cv_refjson_parse(self.idx, p, n, &res)
            if st >= 0:
                st = cv_index_shrink(self.idx)
        try:
            if st < 0:
                key = None
                if res.err_key.len:
                    key = bytes(view[res.err_key.start:res.err_key.start + res.err_key.len])
                msg = res.err_msg.decode() if res.err_msg != NULL else cv_strerror(st).decode()
                raise _status.json_error(st, msg, res.err_pos, key)
            info = {
                "version": res.version,
                "nrefs": res.nrefs,
                "templates": bytes(view[res.templates.start:res.templates.start + res.templates.len])
                if res.templates.len else None,
                "gen": bytes(view[res.gen.start:res.gen.start + res.gen.len]) if res.gen.len else None,
                "deferred": [
                    (bytes(view[res.deferred[2 * i].start:res.deferred[2 * i].start + res.deferred[2 * i].len]),
                     bytes(view[res.deferred[2 * i + 1].start:res.deferred[2 * i + 1].start + res.deferred[2 * i + 1].len]))
                    for i in range(res.ndeferred)
                ],
            }
        finally:
            cv_refjson_result_free(&res)
        return self, info

    # ------------------------------------------------------------------ URLs

    def add_url(self, url):
        """Intern ``url`` and return its id."""
        cdef bytes b = url.encode() if isinstance(url, str) else bytes(url)
        self._wait_readers()
        cdef int64_t r = cv_index_url_intern(self.idx, <const uint8_t *>PyBytes_AS_STRING(b),
                                             <size_t>PyBytes_GET_SIZE(b))
        if r < 0:
            raise status_error(<int>r, f"cannot add URL {url!r}")
        return r

    @property
    def urls(self):
        """The interned URLs, by id."""
        cdef size_t i, n = cv_index_url_count(self.idx), ln
        cdef const uint8_t *p
        out = []
        for i in range(n):
            st = cv_index_url_get(self.idx, <uint32_t>i, &p, &ln)
            if st != CV_OK:
                raise status_error(st, f"URL {i}")
            out.append((<const char *>p)[:ln].decode("utf-8", "surrogateescape"))
        return out

    def replace_urls(self, urls):
        """Replace the text of every URL (``len(urls) == len(self.urls)``); equal texts merge."""
        cdef size_t n = len(urls), i
        enc = [u.encode() if isinstance(u, str) else bytes(u) for u in urls]
        cdef const uint8_t **ps = <const uint8_t **>malloc(max(n, 1) * sizeof(uint8_t *))
        cdef size_t *ls = <size_t *>malloc(max(n, 1) * sizeof(size_t))
        if ps == NULL or ls == NULL:
            free(ps)
            free(ls)
            raise MemoryError()
        self._wait_readers()
        try:
            for i in range(n):
                ps[i] = <const uint8_t *>PyBytes_AS_STRING(enc[i])
                ls[i] = <size_t>PyBytes_GET_SIZE(enc[i])
            st = cv_index_urls_replace(self.idx, n, ps, ls)
            if st != CV_OK:
                raise status_error(st, "cannot replace URLs")
        finally:
            free(ps)
            free(ls)

    # ------------------------------------------------------------------ mapping

    def __len__(self):
        return cv_index_len(self.idx)

    def __contains__(self, key):
        cdef Py_ssize_t kl
        self._no_writer()
        cdef const uint8_t *kp = key_ptr(key, &kl)
        return cv_index_find(self.idx, kp, <size_t>kl) >= 0

    cdef object _value(self, cv_ref *r):
        cdef const uint8_t *d
        cdef size_t dl
        cdef const uint8_t *u
        cdef size_t ul
        cdef int st
        if r.url == CV_URL_INLINE:
            st = cv_index_inline(self.idx, r, &d, &dl)
            if st != CV_OK:
                raise status_error(st, "inline data")
            return PyBytes_FromStringAndSize(<const char *>d, <Py_ssize_t>dl)
        st = cv_index_url_get(self.idx, r.url, &u, &ul)
        if st != CV_OK:
            raise status_error(st, "URL")
        url = (<const char *>u)[:ul].decode("utf-8", "surrogateescape")
        if r.length == CV_LEN_WHOLE:
            return [url]
        return [url, r.offset, r.length]

    def get(self, key, default=None):
        """The reference for ``key`` in fsspec's form: bytes, ``[url]`` or ``[url, offset, length]``."""
        cdef Py_ssize_t kl
        self._no_writer()
        cdef const uint8_t *kp = key_ptr(key, &kl)
        cdef cv_ref r
        cdef int st = cv_index_get(self.idx, kp, <size_t>kl, &r)
        if st == CV_ENOTFOUND:
            return default
        if st != CV_OK:
            raise status_error(st, f"key {key!r}")
        return self._value(&r)

    def __getitem__(self, key):
        cdef Py_ssize_t kl
        self._no_writer()
        cdef const uint8_t *kp = key_ptr(key, &kl)
        cdef cv_ref r
        cdef int st = cv_index_get(self.idx, kp, <size_t>kl, &r)
        if st == CV_ENOTFOUND:
            raise _status.not_found(key)
        if st != CV_OK:
            raise status_error(st, f"key {key!r}")
        return self._value(&r)

    def lookup(self, key):
        """Raw lookup: ``(url_id, offset, length)``; url_id is INLINE (-1) for inline data and
        length is WHOLE for a whole file.  Raises ReferenceNotFound."""
        cdef Py_ssize_t kl
        self._no_writer()
        cdef const uint8_t *kp = key_ptr(key, &kl)
        cdef cv_ref r
        cdef int st = cv_index_get(self.idx, kp, <size_t>kl, &r)
        if st == CV_ENOTFOUND:
            raise _status.not_found(key)
        if st != CV_OK:
            raise status_error(st, f"key {key!r}")
        return (INLINE if r.url == CV_URL_INLINE else <int64_t>r.url), r.offset, r.length

    def lookup_many(self, keys, threads=None):
        """Batch lookup.  Returns numpy arrays ``(url_ids int64, offsets uint64, lengths uint64)``;
        url_id is INLINE (-1) for inline data and MISSING (-2) for absent keys.

        A batch of at least ``PARALLEL_MIN`` keys is looked up by ``threads`` threads (default:
        one per CPU; 1 keeps it in the calling thread) after the calling thread has read the
        keys.  ``keys`` must not change during the call."""
        cdef Py_ssize_t n = len(keys)
        if not PyList_CheckExact(keys) and not isinstance(keys, tuple):
            keys = list(keys)  # a sequence may make each item on the fly: keep them alive
        nt = (os.cpu_count() or 1) if threads is None else int(threads)
        if nt > 1 and n >= PARALLEL_MIN:
            return self._lookup_parallel(keys, n, min(nt, n // LOOKUP_PART))
        cdef Py_ssize_t lo, hi, j
        cdef Py_ssize_t m = min(n, LOOKUP_SLICE)
        cdef int64_t found = 0, got
        cdef cnp.ndarray[int64_t, ndim=1] ids = np.empty(n, dtype=np.int64)
        cdef cnp.ndarray[uint64_t, ndim=1] offs = np.empty(n, dtype=np.uint64)
        cdef cnp.ndarray[uint64_t, ndim=1] lens = np.empty(n, dtype=np.uint64)
        cdef int64_t *pid = <int64_t *>ids.data
        cdef uint64_t *poff = <uint64_t *>offs.data
        cdef uint64_t *plen = <uint64_t *>lens.data
        # keys go to C in slices: the pointer table stays small and in cache (no page faults
        # for a table as long as the key list)
        cdef const uint8_t **kp = <const uint8_t **>malloc(max(m, 1) * sizeof(uint8_t *))
        cdef size_t *kls = <size_t *>malloc(max(m, 1) * sizeof(size_t))
        if kp == NULL or kls == NULL:
            free(kp)
            free(kls)
            raise MemoryError()
        self._begin_read()
        try:
            lo = 0
            while lo < n:
                hi = min(n, lo + LOOKUP_SLICE)
                _key_pointers(keys, lo, hi, kp, kls)
                j = hi - lo
                if j > 64:
                    with nogil:
                        got = cv_index_get_many(self.idx, <size_t>j, kp, kls, pid + lo,
                                                poff + lo, plen + lo)
                else:
                    got = cv_index_get_many(self.idx, <size_t>j, kp, kls, pid + lo, poff + lo,
                                            plen + lo)
                if got < 0:
                    found = got
                    break
                found += got
                lo = hi
        finally:
            self._end_read()
            free(kp)
            free(kls)
        if found < 0:
            raise status_error(<int>found, "batch lookup")
        return ids, offs, lens

    cdef object _lookup_parallel(self, keys, Py_ssize_t n, int nt):
        """lookup_many in nt threads: this one reads every key, then all claim parts of the
        batch from a shared counter (the calling thread too, so a busy pool only slows it)."""
        ids = np.empty(n, dtype=np.int64)
        offs = np.empty(n, dtype=np.uint64)
        lens = np.empty(n, dtype=np.uint64)
        cdef _Lookup job = _Lookup.__new__(_Lookup)
        job.owner = self
        job.n = <size_t>n
        job.kp = <const uint8_t **>malloc(n * sizeof(uint8_t *))
        job.kls = <size_t *>malloc(n * sizeof(size_t))
        if job.kp == NULL or job.kls == NULL:
            raise MemoryError()
        _key_pointers(keys, 0, n, job.kp, job.kls)
        job.ids = <int64_t *>cnp.PyArray_DATA(ids)
        job.offs = <uint64_t *>cnp.PyArray_DATA(offs)
        job.lens = <uint64_t *>cnp.PyArray_DATA(lens)
        # a worker not started yet is dropped: the others finish the parts it would have claimed
        self._begin_read()
        try:
            _pool.run(job.run, nt, cancel_unstarted=True)
        finally:
            self._end_read()
        if job.corrupt:
            raise status_error(CV_ECORRUPT, "batch lookup")
        return ids, offs, lens

    def get_grid(self, prefix, grid, sep="."):
        """Look up every chunk of a zarr v2 chunk grid: keys ``prefix + "i.j.k"`` for all
        coordinates below ``grid`` (chunks per dimension), in C order, formatted in C.
        Returns numpy arrays ``(url_ids int64, offsets uint64, lengths uint64)`` of
        ``prod(grid)`` entries; url_id is INLINE (-1) for inline data and MISSING (-2) for
        absent keys."""
        cdef bytes pre = prefix.encode() if isinstance(prefix, str) else bytes(prefix)
        cdef bytes bsep = sep.encode() if isinstance(sep, str) else bytes(sep)
        cdef cnp.ndarray[int64_t, ndim=1] g = np.ascontiguousarray(grid, dtype=np.int64)
        if len(bsep) != 1:
            raise _status.error("sep_one_byte")
        if g.size and g.min() < 0:
            raise _status.error("negative_grid")
        cdef Py_ssize_t n = int(np.prod(g, dtype=np.int64)) if g.size else 1
        cdef cnp.ndarray[uint32_t, ndim=1] ids = np.empty(n, dtype=np.uint32)
        cdef cnp.ndarray[uint64_t, ndim=1] offs = np.empty(n, dtype=np.uint64)
        cdef cnp.ndarray[uint64_t, ndim=1] lens = np.empty(n, dtype=np.uint64)
        cdef cnp.ndarray[uint8_t, ndim=1] found = np.empty(n, dtype=np.uint8)
        cdef const uint8_t *pp = <const uint8_t *>PyBytes_AS_STRING(pre)
        cdef size_t pl = len(pre), rank = g.shape[0]
        cdef uint8_t s0 = bsep[0]
        cdef int st
        self._begin_read()
        try:
            with nogil:
                st = cv_index_get_grid(self.idx, pp, pl, s0, rank, <const int64_t *>g.data,
                                       <size_t>n, <uint32_t *>ids.data, <uint64_t *>offs.data,
                                       <uint64_t *>lens.data, <uint8_t *>found.data)
        finally:
            self._end_read()
        if st != CV_OK:
            raise status_error(st, f"grid lookup of {prefix!r}")
        out = ids.astype(np.int64)
        out[ids == CV_URL_INLINE] = INLINE
        out[found == 0] = MISSING
        return out, offs, lens

    def inline(self, key):
        """Inline bytes of ``key`` (ReferenceNotFound / ValueError if it is not inline)."""
        v = self[key]
        if not isinstance(v, bytes):
            raise _status.error("not_inline", key)
        return v

    def __setitem__(self, key, value):
        """Set a reference: bytes/str (inline), ``[url]`` or ``[url, offset, length]``."""
        if isinstance(value, str):
            value = value.encode()
        if isinstance(value, (bytes, bytearray, memoryview)):
            self.set_inline(key, bytes(value))
        elif isinstance(value, (list, tuple)) and len(value) == 1:
            self.set(key, value[0])
        elif isinstance(value, (list, tuple)) and len(value) == 3:
            self.set(key, value[0], value[1], value[2])
        else:
            raise _status.error("bad_reference", key, value)

    def set(self, key, url, offset=None, length=None):
        """Set a byte-range reference, or a whole-file one when offset and length are None."""
        cdef Py_ssize_t kl
        cdef const uint8_t *kp = key_ptr(key, &kl)
        cdef uint64_t o, ln
        if offset is None and length is None:
            o, ln = 0, CV_LEN_WHOLE
        else:
            if offset is None or length is None:
                raise _status.error("offset_without_length", key)
            if int(offset) < 0 or int(length) < 0 or int(offset) + int(length) >= 2 ** 64 - 1:
                raise _status.error("reference_range", key, offset, length)
            o, ln = int(offset), int(length)
        uid = self.add_url(url if url is not None else "")
        self._wait_readers()
        st = cv_index_put(self.idx, kp, <size_t>kl, <uint32_t>uid, o, ln)
        if st != CV_OK:
            raise status_error(st, f"key {key!r}")

    def set_inline(self, key, data):
        cdef Py_ssize_t kl
        cdef const uint8_t *kp = key_ptr(key, &kl)
        cdef const uint8_t[::1] view = memoryview(data).cast("B")
        cdef size_t n = view.shape[0]
        cdef const uint8_t *p = &view[0] if n else <const uint8_t *>b""
        self._wait_readers()
        st = cv_index_put_inline(self.idx, kp, <size_t>kl, p, n)
        if st != CV_OK:
            raise status_error(st, f"key {key!r}")

    def __delitem__(self, key):
        cdef Py_ssize_t kl
        cdef const uint8_t *kp = key_ptr(key, &kl)
        self._wait_readers()
        st = cv_index_del(self.idx, kp, <size_t>kl)
        if st == CV_ENOTFOUND:
            raise _status.not_found(key)
        if st != CV_OK:
            raise status_error(st, f"key {key!r}")

    def _iter_raw(self, bint values):
        cdef size_t cursor = 0, kl
        cdef const uint8_t *kp
        cdef cv_ref r
        cdef int st
        while True:
            st = cv_index_next(self.idx, &cursor, &kp, &kl, &r)
            if st == CV_ENOTFOUND:
                return
            if st != CV_OK:
                raise status_error(st, f"record at byte {cursor}")
            key = (<const char *>kp)[:kl].decode("utf-8", "surrogateescape")
            if values:
                yield key, self._value(&r)
            else:
                yield key

    def __iter__(self):
        return self._iter_raw(False)

    def keys(self):
        return list(self._iter_raw(False))

    def items(self):
        return self._iter_raw(True)

    def to_arrays(self):
        """All entries in insertion order: ``(keys, url_ids, offsets, lengths)`` with url_id
        INLINE (-1) for inline entries (offset/length then locate nothing useful: use ``inline``)."""
        cdef size_t cursor = 0, kl, j = 0
        cdef const uint8_t *kp
        cdef cv_ref r
        cdef int st
        cdef size_t live = cv_index_len(self.idx)
        cdef cnp.ndarray[int64_t, ndim=1] ids = np.empty(live, dtype=np.int64)
        cdef cnp.ndarray[uint64_t, ndim=1] offs = np.empty(live, dtype=np.uint64)
        cdef cnp.ndarray[uint64_t, ndim=1] lens = np.empty(live, dtype=np.uint64)
        keys = []
        while True:
            st = cv_index_next(self.idx, &cursor, &kp, &kl, &r)
            if st == CV_ENOTFOUND:
                break
            if st != CV_OK:
                raise status_error(st, f"record at byte {cursor}")
            if j >= live:
                raise status_error(CV_ECORRUPT, "more records than the live count")
            keys.append((<const char *>kp)[:kl].decode("utf-8", "surrogateescape"))
            ids[j] = INLINE if r.url == CV_URL_INLINE else <int64_t>r.url
            offs[j] = r.offset
            lens[j] = r.length
            j += 1
        if j != live:
            raise status_error(CV_ECORRUPT, "fewer records than the live count")
        return keys, ids, offs, lens

    def check(self):
        """Walk every bucket, record and order entry (an opened file is otherwise checked lazily,
        on each access).  Raises ReferenceFormatError when the structure is inconsistent."""
        cdef int st
        cdef cv_where w
        w.field = NULL
        w.at = 0
        self._begin_read()
        try:
            with nogil:
                st = cv_index_check_at(self.idx, &w)
        finally:
            self._end_read()
        if st != CV_OK:
            raise status_error(st, "index structure" + _where(&w))

    @property
    def nbytes(self):
        """Bytes of memory the C index holds (not counting a borrowed buffer)."""
        return cv_index_memory(self.idx)

    # ------------------------------------------------------------------ native format

    def tobytes(self):
        """The native format (docs/format.md) as bytes."""
        self._begin_read()
        try:
            return self._tobytes()
        finally:
            self._end_read()

    cdef object _tobytes(self):
        cdef int64_t sz = cv_index_serialized_size(self.idx)
        if sz < 0:
            raise status_error(<int>sz, "serialize")
        out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>sz)
        cdef uint8_t *p = <uint8_t *>PyBytes_AS_STRING(out)
        cdef int64_t r
        with nogil:
            r = cv_index_serialize(self.idx, p, <size_t>sz)
        if r < 0:
            raise status_error(<int>r, "serialize")
        return out

    def __reduce__(self):
        return (_from_bytes, (self.tobytes(),))

    def __repr__(self):
        return f"<ChunkIndex: {len(self)} references, {cv_index_url_count(self.idx)} URLs>"


def _from_bytes(buf):
    return ChunkIndex.frombytes(buf, copy=False, verify=True)


def xxh64(data, uint64_t seed=0):
    """XXH64 of ``data`` (the checksum of the native format)."""
    cdef const uint8_t[::1] view = memoryview(data).cast("B")
    cdef size_t n = view.shape[0]
    return cv_xxh64(&view[0] if n else <const uint8_t *>b"", n, seed)
