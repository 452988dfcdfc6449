/* cv_common.h: status codes, allocation hooks and small helpers shared by the chunkview C core.
 *
 * The C core includes no Python.h, keeps no global mutable state and does no I/O.  Every
 * function returns an int status (CV_OK or a negative CV_E* code) or a signed count that is
 * negative on error.  Inputs are (const uint8_t *src, size_t srclen); outputs are caller-owned
 * (uint8_t *dst, size_t dstcap).
 */
#ifndef CV_COMMON_H
#define CV_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h> /* MSVC intrinsics: _mm_prefetch, _BitScanForward, _Interlocked*, __cpuid */
#endif

#ifdef __cplusplus
extern "C" {
#endif

enum {
    CV_OK = 0,
    CV_ENOMEM = -1,      /* allocation failed */
    CV_EINVAL = -2,      /* invalid argument */
    CV_ENOTFOUND = -3,   /* key not present */
    CV_ERANGE = -4,      /* a number or size is out of range / would overflow */
    CV_EFORMAT = -5,     /* malformed input (bad magic, bad structure, bad syntax) */
    CV_ECHECKSUM = -6,   /* checksum mismatch */
    CV_EVERSION = -7,    /* unsupported format version */
    CV_ETRUNCATED = -8,  /* input ends early */
    CV_EREADONLY = -9,   /* object is read-only */
    CV_EUTF8 = -10,      /* bytes are not valid UTF-8 */
    CV_EUNSUPPORTED = -11, /* valid input that this build cannot handle */
    CV_ECORRUPT = -12,   /* decoded data is corrupt */
    CV_ESIZE = -13,      /* decoded size does not match the expected size */
    CV_ESOURCE = -14,    /* the source bytes vanished while read (a mapped file shrank) */
};

/* Human-readable text for a status code (static storage, never NULL). */
const char *cv_strerror(int status);

/* Allocation hooks.  Every allocation of the core goes through CV_MALLOC / CV_REALLOC /
 * CV_FREE.  By default they are malloc / realloc / free (the C unit tests).  A build defining
 * CV_ALLOC_HOOKS routes them to the three functions below, which the embedding program provides:
 * the Python extensions define them in src/chunkview/cvalloc.c, reporting every block to
 * tracemalloc (that file includes Python.h; the core never does).  A build may also define
 * CV_MALLOC / CV_REALLOC / CV_FREE itself. */
#if defined(CV_ALLOC_HOOKS) && !defined(CV_MALLOC)
void *cv_hook_malloc(size_t n);
void *cv_hook_realloc(void *p, size_t n);
void cv_hook_free(void *p);
#define CV_MALLOC(n) cv_hook_malloc(n)
#define CV_REALLOC(p, n) cv_hook_realloc((p), (n))
#define CV_FREE(p) cv_hook_free(p)
#endif
#ifndef CV_MALLOC
#define CV_MALLOC(n) malloc(n)
#define CV_REALLOC(p, n) realloc((p), (n))
#define CV_FREE(p) free(p)
#endif

/* Little-endian loads and stores that are safe for unaligned pointers.  Big-endian hosts are
 * recognised through GCC/clang's __BYTE_ORDER__ (every MSVC target is little-endian). */
static inline uint64_t cv_load64le(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}
static inline uint32_t cv_load32le(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}
static inline void cv_store64le(uint8_t *p, uint64_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, 8);
}
static inline void cv_store32le(uint8_t *p, uint32_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    memcpy(p, &v, 4);
}

/* 1 when the host is little-endian (the native index format stores arrays as they lie in memory). */
static inline int cv_host_is_le(void) {
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Branch hints and a read prefetch: GCC/clang builtins, MSVC intrinsics, else no-ops. */
#if defined(__GNUC__) || defined(__clang__)
#define CV_LIKELY(x) __builtin_expect(!!(x), 1)
#define CV_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define CV_PREFETCH(p) __builtin_prefetch(p)
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#define CV_LIKELY(x) (x)
#define CV_UNLIKELY(x) (x)
#define CV_PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#else
#define CV_LIKELY(x) (x)
#define CV_UNLIKELY(x) (x)
#define CV_PREFETCH(p) ((void)(p))
#endif

/* Claim n items of shared work: atomically add n to *next and return its old value. */
#if defined(_MSC_VER) && !defined(__clang__)
static inline size_t cv_claim(size_t *next, size_t n) {
#if defined(_WIN64)
    return (size_t)_InterlockedExchangeAdd64((volatile __int64 *)next, (__int64)n);
#else
    return (size_t)_InterlockedExchangeAdd((volatile long *)next, (long)n);
#endif
}
#else
static inline size_t cv_claim(size_t *next, size_t n) {
    return __atomic_fetch_add(next, n, __ATOMIC_RELAXED);
}
#endif

/* Trailing zero bits of x != 0. */
#if defined(__GNUC__) || defined(__clang__)
static inline unsigned cv_ctz64(uint64_t x) { return (unsigned)__builtin_ctzll(x); }
#elif defined(_MSC_VER)
static inline unsigned cv_ctz64(uint64_t x) {
    unsigned long i;
#if defined(_M_X64) || defined(_M_ARM64)
    _BitScanForward64(&i, x);
    return (unsigned)i;
#else
    if (_BitScanForward(&i, (unsigned long)x)) return (unsigned)i;
    _BitScanForward(&i, (unsigned long)(x >> 32));
    return (unsigned)i + 32;
#endif
}
#else
static inline unsigned cv_ctz64(uint64_t x) {
    unsigned n = 0;
    while (!(x & 1u)) {
        x >>= 1;
        n++;
    }
    return n;
}
#endif

#ifdef __cplusplus
}
#endif
#endif /* CV_COMMON_H */
