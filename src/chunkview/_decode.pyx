# cython: freethreading_compatible = True
"""Decode kernels (csrc/cv_decode.c): inflate, HDF5 unshuffle, fletcher32."""
from libc.stdint cimport uint8_t, uint32_t

from chunkview._cv cimport *

from chunkview import errors

_FORMATS = {"zlib": CV_FMT_ZLIB, "deflate": CV_FMT_DEFLATE, "gzip": CV_FMT_GZIP}
_KERNELS = {None: 0, "auto": 0, "scalar": 8, "sse2": CV_SIMD_SSE2, "avx2": CV_SIMD_AVX2,
            "neon": CV_SIMD_NEON}


def _simd_names(unsigned bits):
    return [name for name, b in (("sse2", CV_SIMD_SSE2), ("avx2", CV_SIMD_AVX2),
                                 ("neon", CV_SIMD_NEON)) if bits & b]


def build_info():
    """What this build can do: the inflate backend, the SIMD unshuffle kernels compiled in and
    those this CPU can run (chosen at run time, never at build time)."""
    return {
        "inflate": cv_inflate_backend().decode(),
        "simd_built": _simd_names(cv_simd_built()),
        "simd_available": _simd_names(cv_simd_available()),
    }


cdef class Inflater:
    """One decompressor, reused across calls (not shared between threads)."""
    cdef cv_inflater *z

    def __cinit__(self):
        self.z = cv_inflater_new()
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
            raise errors.DecodeError(f"{format} stream decodes to more than {dl} bytes")
        if st != CV_OK:
            raise errors.DecodeError(f"corrupt {format} stream ({cv_strerror(st).decode()})")
        return got


def inflate(src, size_t out_size, str format="zlib"):
    """Inflate ``src`` to exactly ``out_size`` bytes (HDF5 chunks decode to a size known from
    the metadata); a stream of any other length raises DecodeError."""
    out = bytearray(out_size)
    got = Inflater().inflate(src, out, format)
    if got != out_size:
        raise errors.DecodeError(f"{format} stream decoded to {got} bytes, expected {out_size}")
    return bytes(out)


def unshuffle(const uint8_t[::1] src, size_t elemsize, out=None, kernel=None):
    """Reverse HDF5's shuffle filter (HDF5 semantics: trailing ``len % elemsize`` bytes copied
    through, 1-byte types untouched).  ``kernel``: None/"auto", "scalar", "sse2", "avx2", "neon"."""
    cdef size_t n = src.shape[0]
    if out is None:
        out = bytearray(n)
    cdef uint8_t[::1] dst = out
    if <size_t>dst.shape[0] != n:
        raise ValueError(f"out has {dst.shape[0]} bytes, need {n}")
    cdef unsigned k = _KERNELS[kernel]
    cdef int st = CV_OK
    if n:
        with nogil:
            st = cv_unshuffle_with(k, &src[0], &dst[0], n, elemsize)
    elif k != 0 and k != 8 and not (cv_simd_available() & k):
        st = CV_EUNSUPPORTED
    if st == CV_EUNSUPPORTED:
        raise errors.UnsupportedError(f"unshuffle kernel {kernel!r} is not available here")
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
        raise errors.DecodeError(f"chunk of {n} bytes is too short for a fletcher32 checksum")
    if st != CV_OK:
        raise errors.DecodeError("fletcher32 checksum mismatch: the chunk is corrupt")
    return n - 4
