/* cv_decode.h: the decode kernels of HDF5-style chunk pipelines.
 *
 *   inflate      zlib / raw deflate / gzip streams, straight into the caller's buffer, with
 *                libdeflate linked at build time (CV_HAVE_LIBDEFLATE), libdeflate entry points
 *                the caller resolved at run time (cv_libdeflate_api), or stock zlib
 *   unshuffle    HDF5's shuffle filter reversed, with HDF5's edge rules; scalar, SSE2 and AVX2
 *                kernels chosen at run time on x86-64 (never at build time), NEON on arm64
 *   fletcher32   HDF5's Fletcher-32 variant, for verifying the 4-byte trailer of a chunk
 *
 * No Python.h, no I/O, no global mutable state.  Outputs are caller-owned; no function writes
 * past dstcap, whatever the input says.
 */
#ifndef CV_DECODE_H
#define CV_DECODE_H

#include "cv_common.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { CV_FMT_ZLIB = 0, CV_FMT_DEFLATE = 1, CV_FMT_GZIP = 2 };

/* libdeflate's decompression entry points as the caller resolved them, for builds made without
 * libdeflate's header (a shared library loaded at run time: the Python layer loads the system's
 * libdeflate.so.0 / libdeflate.0.dylib / deflate.dll).  The signatures are libdeflate's public
 * ABI, unchanged since 1.0: the decompressor is opaque; results are 0 (success), 1 (bad data),
 * 2 (short output) and 3 (insufficient space).  Every member must be set.  Caller-owned; it must
 * outlive every inflater and worker made with it. */
typedef struct cv_libdeflate_api {
    void *(*alloc_decompressor)(void);
    void (*free_decompressor)(void *d);
    int (*zlib_decompress)(void *d, const void *src, size_t srclen, void *dst, size_t dstcap,
                           size_t *outlen);
    int (*deflate_decompress)(void *d, const void *src, size_t srclen, void *dst, size_t dstcap,
                              size_t *outlen);
    int (*gzip_decompress)(void *d, const void *src, size_t srclen, void *dst, size_t dstcap,
                           size_t *outlen);
} cv_libdeflate_api;

/* One decompressor, reused across calls by one thread at a time.  api: libdeflate through those
 * entry points, or NULL for this build's own backend (cv_inflate_backend(): libdeflate linked at
 * build time, or zlib).  NULL when out of memory. */
typedef struct cv_inflater cv_inflater;
cv_inflater *cv_inflater_new(const cv_libdeflate_api *api);
void cv_inflater_free(cv_inflater *z);

/* Inflate src into dst.  On CV_OK *outlen holds the bytes written (<= dstcap).  Errors:
 * CV_ECORRUPT (bad or truncated stream, bad checksum), CV_ESIZE (the stream decodes to more than
 * dstcap bytes), CV_EINVAL (unknown format). */
int cv_inflate(cv_inflater *z, int format, const uint8_t *src, size_t srclen, uint8_t *dst,
               size_t dstcap, size_t *outlen);

/* Reverse HDF5's shuffle of nbytes bytes of elemsize-byte elements from src into dst (which must
 * not overlap).  As HDF5 does: elemsize <= 1 or nbytes < elemsize copies through, and the last
 * nbytes % elemsize bytes are copied unchanged. */
void cv_unshuffle(const uint8_t *src, uint8_t *dst, size_t nbytes, size_t elemsize);
/* The forward filter, for tests and writers. */
void cv_shuffle(const uint8_t *src, uint8_t *dst, size_t nbytes, size_t elemsize);

/* HDF5's Fletcher-32 of n bytes (big-endian 16-bit words; an odd last byte is the high byte). */
uint32_t cv_fletcher32(const uint8_t *src, size_t n);
/* Verify a chunk of n bytes whose last 4 bytes are the stored checksum (little-endian, or the
 * byte order older HDF5 versions wrote).  CV_OK, CV_ECHECKSUM, or CV_ETRUNCATED when n < 4. */
int cv_fletcher32_verify(const uint8_t *src, size_t n);

/* What this build can do: its own inflate backend, "libdeflate" (linked) or "zlib", and that
 * library's version (libdeflate's header version it was built with; zlib's own zlibVersion());
 * whether it was built to take libdeflate at run time (cv_libdeflate_api) in place of zlib: 1
 * when built without libdeflate's header and without CV_INFLATE_ZLIB_ONLY, else 0; and a bit set
 * of the SIMD kernels compiled in and of those the running CPU supports.  Static strings, never
 * NULL. */
const char *cv_inflate_backend(void);
const char *cv_inflate_version(void);
int cv_inflate_loadable(void);
enum { CV_SIMD_SSE2 = 1, CV_SIMD_AVX2 = 2, CV_SIMD_NEON = 4 };
unsigned cv_simd_built(void);
unsigned cv_simd_available(void);
/* Select the unshuffle kernel: 0 = best available, else one CV_SIMD_* bit or 8 for scalar
 * (for tests and benchmarks).  Returns CV_EUNSUPPORTED when not built or not supported. */
int cv_unshuffle_with(unsigned kernel, const uint8_t *src, uint8_t *dst, size_t nbytes,
                      size_t elemsize);

/* The kernel cv_unshuffle_with(0, ...) picks on this CPU (a CV_SIMD_* bit, or 8 for scalar). */
unsigned cv_unshuffle_kernel(void);
/* Unshuffle n whole elements whose byte planes start at src, src + stride, ...,
 * src + (es - 1) * stride into dst (n * es bytes): a run of a larger shuffled buffer, so a chunk
 * can be unshuffled row by row straight into its place in an output array.  kernel: a value
 * returned by cv_unshuffle_kernel() or 8 (scalar). */
void cv_unshuffle_run(unsigned kernel, const uint8_t *src, size_t stride, uint8_t *dst, size_t n,
                      size_t es);

#ifdef __cplusplus
}
#endif
#endif /* CV_DECODE_H */
