# cython: freethreading_compatible = True
"""Decode kernels (csrc/cv_decode.c): inflate, HDF5 unshuffle, fletcher32, the batch decoder.

Marshals buffers and releases the GIL once per batch; errors are worded in chunkview._status,
batches run on chunkview._pool's threads and libdeflate is loaded by chunkview._libdeflate."""
from cpython.buffer cimport PyBUF_SIMPLE, PyObject_GetBuffer, PyBuffer_Release
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uintptr_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset

cimport numpy as cnp

from chunkview._cv cimport *

import sys

from chunkview import _libdeflate, _pool, _status

cnp.import_array()

_FORMATS = {"zlib": CV_FMT_ZLIB, "deflate": CV_FMT_DEFLATE, "gzip": CV_FMT_GZIP}
_KERNELS = {None: 0, "auto": 0, "scalar": 8, "sse2": CV_SIMD_SSE2, "avx2": CV_SIMD_AVX2,
            "neon": CV_SIMD_NEON}


def _simd_names(unsigned bits):
    return [name for name, b in (("sse2", CV_SIMD_SSE2), ("avx2", CV_SIMD_AVX2),
                                 ("neon", CV_SIMD_NEON)) if bits & b]


# libdeflate loaded at run time, for builds made without its header (cv_inflate_loadable()): its
# entry points are set once, while this module is imported, before any inflater exists; every
# inflater and worker made afterwards uses them.  The library handle is kept for the process.
cdef cv_libdeflate_api _rt_api
cdef const cv_libdeflate_api *_api = NULL
_runtime = {}  # "file" and "handle" once loaded; "reason" when it was not


cdef void _set_runtime_api(list addrs):
    global _api
    _rt_api.alloc_decompressor = <void *(*)() noexcept nogil><void *><uintptr_t>addrs[0]
    _rt_api.free_decompressor = <void (*)(void *) noexcept nogil><void *><uintptr_t>addrs[1]
    _rt_api.zlib_decompress = <int (*)(void *, const void *, size_t, void *, size_t,
                                       size_t *) noexcept nogil><void *><uintptr_t>addrs[2]
    _rt_api.deflate_decompress = <int (*)(void *, const void *, size_t, void *, size_t,
                                          size_t *) noexcept nogil><void *><uintptr_t>addrs[3]
    _rt_api.gzip_decompress = <int (*)(void *, const void *, size_t, void *, size_t,
                                       size_t *) noexcept nogil><void *><uintptr_t>addrs[4]
    _api = &_rt_api


def _use_libdeflate(list addrs):
    """Inflate with the libdeflate entry points at ``addrs`` from now on (chunkview._libdeflate
    calls this while this module is imported, before any inflater exists)."""
    _set_runtime_api(addrs)


def _drop_libdeflate():
    """Back to this build's own inflate (zlib)."""
    global _api
    _api = NULL


def _inflate_loadable():
    """Whether this build takes libdeflate at run time (built without its header)."""
    return bool(cv_inflate_loadable())


def build_info():
    """What this build can do: the inflate in use and its version (``inflate_linkage``: "build"
    when linked at build time, "runtime" when the system's libdeflate was loaded at import; with
    ``inflate_note`` saying why a build that could load libdeflate uses zlib), the SIMD unshuffle
    kernels compiled in and those this CPU can run (chosen at run time, never at build time)."""
    info = {
        "inflate": cv_inflate_backend().decode(),
        "inflate_version": cv_inflate_version().decode(),
        "inflate_linkage": "build",
        "inflate_note": None,
        "simd_built": _simd_names(cv_simd_built()),
        "simd_available": _simd_names(cv_simd_available()),
    }
    if _api != NULL:
        info["inflate"] = "libdeflate"
        info["inflate_version"] = None  # chunkview.build_info reads it from the file's package
        info["inflate_linkage"] = "runtime"
        info["inflate_library"] = _runtime["file"]
    elif cv_inflate_loadable():
        info["inflate_note"] = _runtime.get("reason")
    elif info["inflate"] == "zlib":
        info["inflate_note"] = "built with CHUNKVIEW_INFLATE=zlib"
    return info


cdef class Inflater:
    """One decompressor, reused across calls (not shared between threads)."""
    cdef cv_inflater *z

    def __cinit__(self):
        self.z = cv_inflater_new(_api)
        if self.z == NULL:
            raise MemoryError()

    def __dealloc__(self):
        cv_inflater_free(self.z)

    def inflate(self, const uint8_t[::1] src, out, str format="zlib"):
        """Inflate ``src`` into the writable buffer ``out``; returns the bytes written.  Raises
        DecodeError for a corrupt stream or one that decodes to more than ``len(out)`` bytes."""
        cdef uint8_t[::1] dst = out
        cdef size_t got = 0
        cdef int fmt = _FORMATS[format]
        cdef int st
        cdef size_t sl = src.shape[0], dl = dst.shape[0]
        cdef const uint8_t *sp = &src[0] if sl else NULL
        cdef uint8_t *dp = &dst[0] if dl else NULL
        cdef uint8_t dummy = 0
        if sp == NULL:
            sp = &dummy
        if dp == NULL:
            dp = &dummy
        with nogil:
            st = cv_inflate(self.z, fmt, sp, sl, dp, dl, &got)
        if st == CV_ESIZE:
            raise _status.error("stream_too_long", format, dl)
        if st != CV_OK:
            raise _status.error("stream_corrupt", format, cv_strerror(st).decode())
        return got


def inflate(src, size_t out_size, str format="zlib"):
    """Inflate ``src`` to exactly ``out_size`` bytes (HDF5 chunks decode to a size known from
    the metadata); a stream of any other length raises DecodeError."""
    out = bytearray(out_size)
    got = Inflater().inflate(src, out, format)
    if got != out_size:
        raise _status.error("stream_size", format, got, out_size)
    return bytes(out)


def unshuffle(const uint8_t[::1] src, size_t elemsize, out=None, kernel=None):
    """Reverse HDF5's shuffle filter (HDF5 semantics: trailing ``len % elemsize`` bytes copied
    through, 1-byte types untouched).  ``kernel``: None/"auto", "scalar", "sse2", "avx2", "neon"."""
    cdef size_t n = src.shape[0]
    if out is None:
        out = bytearray(n)
    cdef uint8_t[::1] dst = out
    if <size_t>dst.shape[0] != n:
        raise _status.error("out_size", dst.shape[0], n)
    cdef unsigned k = _KERNELS[kernel]
    cdef int st = CV_OK
    if n:
        with nogil:
            st = cv_unshuffle_with(k, &src[0], &dst[0], n, elemsize)
    elif k != 0 and k != 8 and not (cv_simd_available() & k):
        st = CV_EUNSUPPORTED
    if st == CV_EUNSUPPORTED:
        raise _status.error("kernel_unavailable", kernel)
    return out


def shuffle(const uint8_t[::1] src, size_t elemsize):
    """HDF5's shuffle filter (for tests and writers)."""
    cdef size_t n = src.shape[0]
    out = bytearray(n)
    cdef uint8_t[::1] dst = out
    if n:
        with nogil:
            cv_shuffle(&src[0], &dst[0], n, elemsize)
    return out


def fletcher32(const uint8_t[::1] src):
    """HDF5's Fletcher-32 checksum."""
    cdef size_t n = src.shape[0]
    return cv_fletcher32(&src[0] if n else NULL, n)


def fletcher32_verify(const uint8_t[::1] src):
    """Check a chunk whose last 4 bytes are its stored Fletcher-32; returns the payload length.
    Raises DecodeError on a mismatch or when shorter than 4 bytes."""
    cdef size_t n = src.shape[0]
    cdef int st = cv_fletcher32_verify(&src[0] if n else NULL, n)
    if st == CV_ETRUNCATED:
        raise _status.error("fletcher_short", n)
    if st != CV_OK:
        raise _status.error("fletcher_mismatch")
    return n - 4


# ------------------------------------------------------------------ batch decode

STEP_KINDS = {"fletcher32": CV_STEP_FLETCHER32, "zlib": CV_STEP_ZLIB,
              "deflate": CV_STEP_DEFLATE, "gzip": CV_STEP_GZIP, "shuffle": CV_STEP_UNSHUFFLE}
MAX_DIMS = CV_MAX_DIMS
MAX_STEPS = CV_MAX_STEPS

cdef class _Batch:
    """The C plan and job table of one batch; run() decodes jobs until none are left."""
    cdef cv_plan plan
    cdef cv_job *jobs
    cdef size_t njobs
    cdef size_t next
    cdef size_t grain
    cdef Py_buffer *views
    cdef Py_ssize_t nviews
    cdef Py_ssize_t nacquired
    cdef object keep

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.views != NULL:
            for i in range(self.nacquired):
                PyBuffer_Release(&self.views[i])
            free(self.views)
        free(self.jobs)

    def run(self):
        cdef cv_worker *w = cv_worker_new(_api)
        if w == NULL:
            raise MemoryError()
        with nogil:
            cv_decode_jobs_guarded(w, &self.plan, self.jobs, self.njobs, &self.next, self.grain)
        cv_worker_free(w)


def decode_batch(tuple chunk, size_t itemsize, list steps, cnp.ndarray out,
                 const int64_t[::1] out_offsets, const int64_t[:, :, ::1] sel, list bufs,
                 const int32_t[::1] buf_index, const int64_t[::1] offsets,
                 const int64_t[::1] lengths, const uint32_t[::1] masks=None, fill=None,
                 int threads=1):
    """Decode chunks into ``out`` (any strides, ``out.ndim == len(chunk)``), the GIL released
    once per batch in each of ``threads`` threads.

    ``steps``: the filter pipeline in decode order, ``(kind, mask_bit, param)`` with kind one of
    STEP_KINDS.  Job i reads ``bufs[buf_index[i]][offsets[i]:offsets[i] + lengths[i]]``
    (``buf_index[i] == -1``: a missing chunk, filled with ``fill``, itemsize bytes or None for
    zeros), skips the steps whose mask bit is set in ``masks[i]``, and writes the part
    ``sel[i]`` (ndim x (start, step, count) in chunk coordinates) at byte ``out_offsets[i]``
    of ``out``.  Returns ``[(i, status, text, step, detail), ...]`` for the jobs that failed
    (``step``: index into ``steps`` or -1; ``detail``: a size found, or -1).
    """
    cdef _Batch b = _Batch()
    cdef Py_ssize_t n = out_offsets.shape[0], i, d
    cdef int ndim = len(chunk)
    cdef int st, nst = len(steps)
    cdef bytes fillb
    if ndim > CV_MAX_DIMS or nst > CV_MAX_STEPS:
        raise _status.error("too_many_dims", CV_MAX_DIMS, CV_MAX_STEPS)
    if out.ndim != ndim:
        raise _status.error("out_ndim", out.ndim, ndim)
    if not cnp.PyArray_ISWRITEABLE(out):
        raise _status.error("out_readonly")
    if out.itemsize != <Py_ssize_t>itemsize:
        raise _status.error("out_itemsize", out.itemsize, itemsize)
    if (sel.shape[0] != n or (n and (sel.shape[1] != ndim or sel.shape[2] != 3))
            or buf_index.shape[0] != n or offsets.shape[0] != n or lengths.shape[0] != n
            or (masks is not None and masks.shape[0] != n)):
        raise _status.error("jobs_differ")
    memset(&b.plan, 0, sizeof(cv_plan))
    b.plan.ndim = ndim
    b.plan.itemsize = itemsize
    cdef Py_ssize_t lo = 0, hi = itemsize, ext
    for d in range(ndim):
        b.plan.chunk[d] = chunk[d]
        b.plan.ostride[d] = out.strides[d]
        if out.shape[d] == 0:
            return []
        ext = out.strides[d] * (out.shape[d] - 1)
        if ext < 0:
            lo += ext
        else:
            hi += ext
    cdef uint8_t *base = <uint8_t *>cnp.PyArray_DATA(out)
    b.plan.out_lo = base + lo
    b.plan.out_hi = base + hi
    b.plan.nsteps = nst
    for i, (kind, mask_bit, param) in enumerate(steps):
        b.plan.steps[i].kind = STEP_KINDS[kind]
        b.plan.steps[i].mask_bit = mask_bit
        b.plan.steps[i].param = param
    if fill is not None:
        fillb = bytes(fill)
        if len(fillb) != <Py_ssize_t>itemsize:
            raise _status.error("fill_size", len(fillb), itemsize)
        b.plan.fill = <const uint8_t *>fillb
    else:
        fillb = None
    st = cv_plan_init(&b.plan)
    if st != CV_OK:
        raise _status.error("plan_unsupported", chunk, steps, cv_strerror(st).decode())
    b.keep = (out, sel, fillb, bufs)
    if n == 0:
        return []
    b.njobs = n
    b.jobs = <cv_job *>calloc(n, sizeof(cv_job))
    b.nviews = len(bufs)
    b.views = <Py_buffer *>calloc(b.nviews if b.nviews else 1, sizeof(Py_buffer))
    if b.jobs == NULL or b.views == NULL:
        raise MemoryError()
    for i in range(b.nviews):
        PyObject_GetBuffer(bufs[i], &b.views[i], PyBUF_SIMPLE)
        b.nacquired = i + 1
    failed = []
    cdef int32_t bi
    cdef int64_t off, ln, oo
    cdef Py_ssize_t span = hi - lo
    for i in range(n):
        bi = buf_index[i]
        off = offsets[i]
        ln = lengths[i]
        oo = out_offsets[i]
        b.jobs[i].sel = &sel[i, 0, 0]
        b.jobs[i].mask = masks[i] if masks is not None else 0
        if oo < lo or oo >= hi:
            b.jobs[i].status = CV_EINVAL  # outside out: the C check would refuse it too
            b.jobs[i].src = NULL
            b.jobs[i].out = NULL
            failed.append((i, CV_EINVAL, _status.job_text(CV_EINVAL, "", "outside_output"), -1,
                           -1))
            continue
        b.jobs[i].out = base + oo
        if bi == -1:
            b.jobs[i].src = NULL
        elif bi < 0 or bi >= b.nviews or off < 0 or ln < 0 or off > b.views[bi].len \
                or ln > b.views[bi].len - off:
            failed.append((i, CV_ETRUNCATED, _status.job_text(CV_ETRUNCATED, "", "short_fetch"),
                           -1, -1 if bi < 0 or bi >= b.nviews else b.views[bi].len - off))
            b.jobs[i].out = NULL
        else:
            b.jobs[i].src = <const uint8_t *>b.views[bi].buf + off
            b.jobs[i].srclen = ln
    if failed:
        # run only the good jobs: compact the table (failed ones have out == NULL)
        d = 0
        for i in range(n):
            if b.jobs[i].out != NULL:
                b.jobs[d] = b.jobs[i]
                d += 1
        bad = {f[0] for f in failed}
        good = [i for i in range(n) if i not in bad]
        b.njobs = d
    else:
        good = None
    cdef size_t nt = max(1, min(threads, b.njobs))
    b.grain = max(1, min(64, b.njobs // (nt * 16)))
    cv_guard_install()  # a mapped file that shrinks under the batch: CV_ESOURCE, not SIGBUS
    _pool.run(b.run, nt)
    for i in range(b.njobs):
        if b.jobs[i].status != CV_OK:
            failed.append((good[i] if good is not None else i, b.jobs[i].status,
                           _status.job_text(b.jobs[i].status,
                                            cv_strerror(b.jobs[i].status).decode()),
                           b.jobs[i].step, b.jobs[i].detail))
    failed.sort()
    return failed


def guarded_copy(buf, Py_ssize_t offset=0, Py_ssize_t length=-1):
    """``bytes(buf[offset:offset + length])`` (length -1: to the end) for a buffer that may be a
    memory-mapped file truncated under it: the copy runs under the SIGBUS guard, so vanished
    pages become a SourceChangedError, not a dead process."""
    cdef const uint8_t[::1] view = memoryview(buf).cast("B")
    cdef Py_ssize_t n = view.shape[0]
    if offset < 0 or offset > n:
        raise _status.error("copy_range", offset, length, n)
    if length < 0:
        length = n - offset
    if length > n - offset:
        raise _status.error("copy_range", offset, length, n)
    out = PyBytes_FromStringAndSize(NULL, length)
    cdef char *dst = PyBytes_AS_STRING(out)
    cdef int st = CV_OK
    if length:
        cv_guard_install()
        with nogil:
            st = cv_guarded_copy(dst, &view[offset], <size_t>length)
    if st != CV_OK:
        raise _status.error("source_shrank", offset, offset + length)
    return out


def guard_installed():
    """Whether chunkview's SIGBUS guard is the current SIGBUS handler."""
    return bool(cv_guard_active())


_libdeflate.install(sys.modules[__name__])
