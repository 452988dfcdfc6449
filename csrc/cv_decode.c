/* cv_decode.c: see cv_decode.h. */
#include "cv_decode.h"

#if defined(CV_HAVE_LIBDEFLATE)
#include <libdeflate.h>
#else
#include <limits.h>
#include <zlib.h>
#endif

#if defined(__x86_64__) || defined(_M_X64)
#define CV_X86 1
#include <immintrin.h>
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#define CV_TARGET_AVX2
#else
#define CV_TARGET_AVX2 __attribute__((target("avx2")))
#endif
#endif

#if defined(__aarch64__) || defined(_M_ARM64)
#define CV_ARM64 1
#include <arm_neon.h>
#endif

/* ---------------------------------------------------------------- inflate */

struct cv_inflater {
    const cv_libdeflate_api *api; /* libdeflate through these entry points, or NULL: zlib */
    void *d;                      /* api's decompressor */
#if !defined(CV_HAVE_LIBDEFLATE)
    z_stream zs;
    int ready;
#endif
};

#if defined(CV_HAVE_LIBDEFLATE)
/* the linked library behind the same table as one loaded at run time (one code path) */
static void *ld_alloc(void) { return libdeflate_alloc_decompressor(); }
static void ld_free(void *d) { libdeflate_free_decompressor((struct libdeflate_decompressor *)d); }
static int ld_zlib(void *d, const void *src, size_t srclen, void *dst, size_t dstcap,
                   size_t *outlen) {
    return (int)libdeflate_zlib_decompress((struct libdeflate_decompressor *)d, src, srclen, dst,
                                           dstcap, outlen);
}
static int ld_deflate(void *d, const void *src, size_t srclen, void *dst, size_t dstcap,
                      size_t *outlen) {
    return (int)libdeflate_deflate_decompress((struct libdeflate_decompressor *)d, src, srclen,
                                              dst, dstcap, outlen);
}
static int ld_gzip(void *d, const void *src, size_t srclen, void *dst, size_t dstcap,
                   size_t *outlen) {
    return (int)libdeflate_gzip_decompress((struct libdeflate_decompressor *)d, src, srclen, dst,
                                           dstcap, outlen);
}
static const cv_libdeflate_api cv_linked_libdeflate = {ld_alloc, ld_free, ld_zlib, ld_deflate,
                                                       ld_gzip};
#endif

const char *cv_inflate_backend(void) {
#if defined(CV_HAVE_LIBDEFLATE)
    return "libdeflate";
#else
    return "zlib";
#endif
}

const char *cv_inflate_version(void) {
#if defined(CV_HAVE_LIBDEFLATE)
    return LIBDEFLATE_VERSION_STRING;
#else
    return zlibVersion();
#endif
}

int cv_inflate_loadable(void) {
#if defined(CV_HAVE_LIBDEFLATE) || defined(CV_INFLATE_ZLIB_ONLY)
    return 0;
#else
    return 1;
#endif
}

#if !defined(CV_HAVE_LIBDEFLATE)
/* zlib's state and window come from the core's allocation hooks too (per stream: no global) */
static voidpf cv_zalloc(voidpf opaque, uInt items, uInt size) {
    (void)opaque;
    if (size && items > SIZE_MAX / size) return Z_NULL;
    return CV_MALLOC((size_t)items * size);
}
static void cv_zfree(voidpf opaque, voidpf p) {
    (void)opaque;
    CV_FREE(p);
}
#endif

cv_inflater *cv_inflater_new(const cv_libdeflate_api *api) {
#if defined(CV_HAVE_LIBDEFLATE)
    if (!api) api = &cv_linked_libdeflate;
#endif
    if (api && (!api->alloc_decompressor || !api->free_decompressor || !api->zlib_decompress ||
                !api->deflate_decompress || !api->gzip_decompress))
        return NULL;
    cv_inflater *z = CV_MALLOC(sizeof(cv_inflater));
    if (!z) return NULL;
    memset(z, 0, sizeof(*z));
    z->api = api;
    if (api) {
        z->d = api->alloc_decompressor();
        if (!z->d) {
            CV_FREE(z);
            return NULL;
        }
        return z;
    }
#if !defined(CV_HAVE_LIBDEFLATE)
    z->zs.zalloc = cv_zalloc;
    z->zs.zfree = cv_zfree;
    if (inflateInit2(&z->zs, 15 + 32) != Z_OK) {
        CV_FREE(z);
        return NULL;
    }
    z->ready = 1;
#endif
    return z;
}

void cv_inflater_free(cv_inflater *z) {
    if (!z) return;
    if (z->api) z->api->free_decompressor(z->d);
#if !defined(CV_HAVE_LIBDEFLATE)
    if (z->ready) inflateEnd(&z->zs);
#endif
    CV_FREE(z);
}

int cv_inflate(cv_inflater *z, int format, const uint8_t *src, size_t srclen, uint8_t *dst,
               size_t dstcap, size_t *outlen) {
    *outlen = 0;
    if (format != CV_FMT_ZLIB && format != CV_FMT_DEFLATE && format != CV_FMT_GZIP)
        return CV_EINVAL;
    if (z->api) {
        size_t got = 0;
        int r;
        if (format == CV_FMT_ZLIB)
            r = z->api->zlib_decompress(z->d, src, srclen, dst, dstcap, &got);
        else if (format == CV_FMT_DEFLATE)
            r = z->api->deflate_decompress(z->d, src, srclen, dst, dstcap, &got);
        else
            r = z->api->gzip_decompress(z->d, src, srclen, dst, dstcap, &got);
        if (r == 3) return CV_ESIZE; /* LIBDEFLATE_INSUFFICIENT_SPACE */
        if (r != 0) return CV_ECORRUPT;
        if (got > dstcap) return CV_ECORRUPT; /* never trust a count from outside the core */
        *outlen = got;
        return CV_OK;
    }
#if defined(CV_HAVE_LIBDEFLATE)
    return CV_EINVAL; /* unreachable: a linked build always has an api */
#else
    int wbits = format == CV_FMT_ZLIB ? 15 : (format == CV_FMT_DEFLATE ? -15 : 16 + 15);
    if (srclen > UINT_MAX || dstcap > UINT_MAX) return CV_EUNSUPPORTED;
    if (inflateReset2(&z->zs, wbits) != Z_OK) return CV_ECORRUPT;
    z->zs.next_in = (Bytef *)(uintptr_t)src;
    z->zs.avail_in = (uInt)srclen;
    z->zs.next_out = dst;
    z->zs.avail_out = (uInt)dstcap;
    int r = inflate(&z->zs, Z_FINISH);
    if (r == Z_STREAM_END) {
        *outlen = dstcap - z->zs.avail_out;
        return CV_OK;
    }
    if ((r == Z_BUF_ERROR || r == Z_OK) && z->zs.avail_out == 0) {
        /* out of room: more output pending (too big), or the input simply ended there */
        return z->zs.avail_in > 0 || r == Z_OK ? CV_ESIZE : CV_ECORRUPT;
    }
    return CV_ECORRUPT;
#endif
}

/* ---------------------------------------------------------------- shuffle */

static void unshuffle_scalar(const uint8_t *src, size_t st, uint8_t *dst, size_t n, size_t es,
                             size_t from) {
    /* elements [from, n); byte plane j starts at src + j * st */
    if (es == 4) {
        const uint8_t *p0 = src, *p1 = src + st, *p2 = src + 2 * st, *p3 = src + 3 * st;
        for (size_t i = from; i < n; i++) {
            dst[4 * i] = p0[i];
            dst[4 * i + 1] = p1[i];
            dst[4 * i + 2] = p2[i];
            dst[4 * i + 3] = p3[i];
        }
        return;
    }
    for (size_t i = from; i < n; i++)
        for (size_t j = 0; j < es; j++) dst[i * es + j] = src[j * st + i];
}

#if defined(CV_X86)
/* SSE2: 16 elements per step. */
static size_t unshuffle_sse2(const uint8_t *src, size_t st, uint8_t *dst, size_t n,
                             size_t es) {
    size_t i = 0;
    if (es == 2) {
        for (; i + 16 <= n; i += 16) {
            __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
            __m128i b = _mm_loadu_si128((const __m128i *)(src + st + i));
            _mm_storeu_si128((__m128i *)(dst + 2 * i), _mm_unpacklo_epi8(a, b));
            _mm_storeu_si128((__m128i *)(dst + 2 * i + 16), _mm_unpackhi_epi8(a, b));
        }
    } else if (es == 4) {
        for (; i + 16 <= n; i += 16) {
            __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
            __m128i b = _mm_loadu_si128((const __m128i *)(src + st + i));
            __m128i c = _mm_loadu_si128((const __m128i *)(src + 2 * st + i));
            __m128i d = _mm_loadu_si128((const __m128i *)(src + 3 * st + i));
            __m128i ab0 = _mm_unpacklo_epi8(a, b), ab1 = _mm_unpackhi_epi8(a, b);
            __m128i cd0 = _mm_unpacklo_epi8(c, d), cd1 = _mm_unpackhi_epi8(c, d);
            uint8_t *o = dst + 4 * i;
            _mm_storeu_si128((__m128i *)o, _mm_unpacklo_epi16(ab0, cd0));
            _mm_storeu_si128((__m128i *)(o + 16), _mm_unpackhi_epi16(ab0, cd0));
            _mm_storeu_si128((__m128i *)(o + 32), _mm_unpacklo_epi16(ab1, cd1));
            _mm_storeu_si128((__m128i *)(o + 48), _mm_unpackhi_epi16(ab1, cd1));
        }
    } else if (es == 8) {
        for (; i + 16 <= n; i += 16) {
            __m128i p[8], u[8], v[8];
            for (int k = 0; k < 8; k++) p[k] = _mm_loadu_si128((const __m128i *)(src + k * st + i));
            for (int k = 0; k < 4; k++) {
                u[2 * k] = _mm_unpacklo_epi8(p[2 * k], p[2 * k + 1]);     /* elems 0-7 */
                u[2 * k + 1] = _mm_unpackhi_epi8(p[2 * k], p[2 * k + 1]); /* elems 8-15 */
            }
            /* v: 4-byte groups of bytes 0-3 (from u0,u2) and 4-7 (from u4,u6) */
            v[0] = _mm_unpacklo_epi16(u[0], u[2]); /* bytes 0-3, elems 0-3 */
            v[1] = _mm_unpackhi_epi16(u[0], u[2]); /* elems 4-7 */
            v[2] = _mm_unpacklo_epi16(u[1], u[3]); /* elems 8-11 */
            v[3] = _mm_unpackhi_epi16(u[1], u[3]); /* elems 12-15 */
            v[4] = _mm_unpacklo_epi16(u[4], u[6]); /* bytes 4-7 */
            v[5] = _mm_unpackhi_epi16(u[4], u[6]);
            v[6] = _mm_unpacklo_epi16(u[5], u[7]);
            v[7] = _mm_unpackhi_epi16(u[5], u[7]);
            uint8_t *o = dst + 8 * i;
            for (int k = 0; k < 4; k++) {
                _mm_storeu_si128((__m128i *)(o + 32 * k), _mm_unpacklo_epi32(v[k], v[k + 4]));
                _mm_storeu_si128((__m128i *)(o + 32 * k + 16), _mm_unpackhi_epi32(v[k], v[k + 4]));
            }
        }
    }
    return i;
}

/* AVX2: 32 elements per step; unpacks work within 128-bit lanes, so the halves are regrouped
 * with permute2x128 before storing. */
CV_TARGET_AVX2 static size_t unshuffle_avx2(const uint8_t *src, size_t st, uint8_t *dst, size_t n,
                             size_t es) {
    size_t i = 0;
    if (es == 2) {
        for (; i + 32 <= n; i += 32) {
            __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
            __m256i b = _mm256_loadu_si256((const __m256i *)(src + st + i));
            __m256i lo = _mm256_unpacklo_epi8(a, b), hi = _mm256_unpackhi_epi8(a, b);
            _mm256_storeu_si256((__m256i *)(dst + 2 * i), _mm256_permute2x128_si256(lo, hi, 0x20));
            _mm256_storeu_si256((__m256i *)(dst + 2 * i + 32), _mm256_permute2x128_si256(lo, hi, 0x31));
        }
    } else if (es == 4) {
        for (; i + 32 <= n; i += 32) {
            __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
            __m256i b = _mm256_loadu_si256((const __m256i *)(src + st + i));
            __m256i c = _mm256_loadu_si256((const __m256i *)(src + 2 * st + i));
            __m256i d = _mm256_loadu_si256((const __m256i *)(src + 3 * st + i));
            __m256i ab0 = _mm256_unpacklo_epi8(a, b), ab1 = _mm256_unpackhi_epi8(a, b);
            __m256i cd0 = _mm256_unpacklo_epi8(c, d), cd1 = _mm256_unpackhi_epi8(c, d);
            __m256i o0 = _mm256_unpacklo_epi16(ab0, cd0); /* elems 0-3 | 16-19 */
            __m256i o1 = _mm256_unpackhi_epi16(ab0, cd0); /* 4-7 | 20-23 */
            __m256i o2 = _mm256_unpacklo_epi16(ab1, cd1); /* 8-11 | 24-27 */
            __m256i o3 = _mm256_unpackhi_epi16(ab1, cd1); /* 12-15 | 28-31 */
            uint8_t *o = dst + 4 * i;
            _mm256_storeu_si256((__m256i *)o, _mm256_permute2x128_si256(o0, o1, 0x20));
            _mm256_storeu_si256((__m256i *)(o + 32), _mm256_permute2x128_si256(o2, o3, 0x20));
            _mm256_storeu_si256((__m256i *)(o + 64), _mm256_permute2x128_si256(o0, o1, 0x31));
            _mm256_storeu_si256((__m256i *)(o + 96), _mm256_permute2x128_si256(o2, o3, 0x31));
        }
    } else if (es == 8) {
        for (; i + 32 <= n; i += 32) {
            __m256i p[8], u[8], v[8], w[8];
            for (int k = 0; k < 8; k++)
                p[k] = _mm256_loadu_si256((const __m256i *)(src + k * st + i));
            for (int k = 0; k < 4; k++) {
                u[2 * k] = _mm256_unpacklo_epi8(p[2 * k], p[2 * k + 1]);
                u[2 * k + 1] = _mm256_unpackhi_epi8(p[2 * k], p[2 * k + 1]);
            }
            v[0] = _mm256_unpacklo_epi16(u[0], u[2]);
            v[1] = _mm256_unpackhi_epi16(u[0], u[2]);
            v[2] = _mm256_unpacklo_epi16(u[1], u[3]);
            v[3] = _mm256_unpackhi_epi16(u[1], u[3]);
            v[4] = _mm256_unpacklo_epi16(u[4], u[6]);
            v[5] = _mm256_unpackhi_epi16(u[4], u[6]);
            v[6] = _mm256_unpacklo_epi16(u[5], u[7]);
            v[7] = _mm256_unpackhi_epi16(u[5], u[7]);
            for (int k = 0; k < 4; k++) { /* w[2k], w[2k+1]: elems 4k..4k+3 (| +16) */
                w[2 * k] = _mm256_unpacklo_epi32(v[k], v[k + 4]);
                w[2 * k + 1] = _mm256_unpackhi_epi32(v[k], v[k + 4]);
            }
            uint8_t *o = dst + 8 * i;
            for (int k = 0; k < 4; k++) { /* elems 4k.. start at byte 32k, elems 16+4k at 128+32k */
                _mm256_storeu_si256((__m256i *)(o + 32 * k),
                                    _mm256_permute2x128_si256(w[2 * k], w[2 * k + 1], 0x20));
                _mm256_storeu_si256((__m256i *)(o + 128 + 32 * k),
                                    _mm256_permute2x128_si256(w[2 * k], w[2 * k + 1], 0x31));
            }
        }
    }
    return i;
}
#endif

#if defined(CV_ARM64)
/* NEON: the structured stores interleave 2 or 4 planes directly. */
static size_t unshuffle_neon(const uint8_t *src, size_t st, uint8_t *dst, size_t n,
                             size_t es) {
    size_t i = 0;
    if (es == 2) {
        for (; i + 16 <= n; i += 16) {
            uint8x16x2_t v;
            v.val[0] = vld1q_u8(src + i);
            v.val[1] = vld1q_u8(src + st + i);
            vst2q_u8(dst + 2 * i, v);
        }
    } else if (es == 4) {
        for (; i + 16 <= n; i += 16) {
            uint8x16x4_t v;
            v.val[0] = vld1q_u8(src + i);
            v.val[1] = vld1q_u8(src + st + i);
            v.val[2] = vld1q_u8(src + 2 * st + i);
            v.val[3] = vld1q_u8(src + 3 * st + i);
            vst4q_u8(dst + 4 * i, v);
        }
    }
    return i;
}
#endif

static int cpu_has_avx2(void) {
#if defined(CV_X86)
#if defined(_MSC_VER) && !defined(__clang__)
    int r[4];
    __cpuid(r, 0);
    if (r[0] < 7) return 0;
    __cpuid(r, 1);
    if (!(r[2] & (1 << 27)) || !(r[2] & (1 << 28))) return 0; /* OSXSAVE, AVX */
    if ((_xgetbv(0) & 6) != 6) return 0;                     /* the OS saves YMM */
    __cpuidex(r, 7, 0);
    return (r[1] & (1 << 5)) != 0;
#else
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
#endif
#else
    return 0;
#endif
}

unsigned cv_simd_built(void) {
#if defined(CV_X86)
    return CV_SIMD_SSE2 | CV_SIMD_AVX2;
#elif defined(CV_ARM64)
    return CV_SIMD_NEON;
#else
    return 0;
#endif
}

unsigned cv_unshuffle_kernel(void) {
    unsigned avail = cv_simd_available();
    return (avail & CV_SIMD_AVX2)   ? CV_SIMD_AVX2
           : (avail & CV_SIMD_SSE2) ? CV_SIMD_SSE2
           : (avail & CV_SIMD_NEON) ? CV_SIMD_NEON
                                    : 8;
}

void cv_unshuffle_run(unsigned kernel, const uint8_t *src, size_t stride, uint8_t *dst, size_t n,
                      size_t es) {
    size_t done = 0;
    switch (kernel) {
#if defined(CV_X86)
    case CV_SIMD_SSE2: done = unshuffle_sse2(src, stride, dst, n, es); break;
    case CV_SIMD_AVX2: done = unshuffle_avx2(src, stride, dst, n, es); break;
#endif
#if defined(CV_ARM64)
    case CV_SIMD_NEON: done = unshuffle_neon(src, stride, dst, n, es); break;
#endif
    default: break;
    }
    unshuffle_scalar(src, stride, dst, n, es, done);
}

unsigned cv_simd_available(void) {
    unsigned b = cv_simd_built();
    if ((b & CV_SIMD_AVX2) && !cpu_has_avx2()) b &= ~(unsigned)CV_SIMD_AVX2;
    return b;
}

int cv_unshuffle_with(unsigned kernel, const uint8_t *src, uint8_t *dst, size_t nbytes,
                      size_t elemsize) {
    unsigned avail = cv_simd_available();
    if (kernel == 0) kernel = cv_unshuffle_kernel();
    if (kernel != 8 && !(kernel & avail)) return CV_EUNSUPPORTED;
    if (elemsize <= 1 || nbytes < elemsize) {
        if (nbytes) memcpy(dst, src, nbytes);
        return CV_OK;
    }
    size_t n = nbytes / elemsize;
    cv_unshuffle_run(kernel, src, n, dst, n, elemsize);
    size_t tail = nbytes - n * elemsize;
    if (tail) memcpy(dst + n * elemsize, src + n * elemsize, tail);
    return CV_OK;
}

void cv_unshuffle(const uint8_t *src, uint8_t *dst, size_t nbytes, size_t elemsize) {
    (void)cv_unshuffle_with(0, src, dst, nbytes, elemsize);
}

void cv_shuffle(const uint8_t *src, uint8_t *dst, size_t nbytes, size_t elemsize) {
    if (elemsize <= 1 || nbytes < elemsize) {
        if (nbytes) memcpy(dst, src, nbytes);
        return;
    }
    size_t n = nbytes / elemsize;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < elemsize; j++) dst[j * n + i] = src[i * elemsize + j];
    size_t tail = nbytes - n * elemsize;
    if (tail) memcpy(dst + n * elemsize, src + n * elemsize, tail);
}

/* ---------------------------------------------------------------- fletcher32 */

uint32_t cv_fletcher32(const uint8_t *src, size_t n) {
    uint32_t sum1 = 0, sum2 = 0;
    size_t words = n / 2;
    while (words) {
        size_t t = words > 360 ? 360 : words; /* sums stay below 2^32 */
        words -= t;
        do {
            sum1 += (uint32_t)((src[0] << 8) | src[1]);
            sum2 += sum1;
            src += 2;
        } while (--t);
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16);
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16);
    }
    if (n & 1) {
        sum1 += (uint32_t)src[0] << 8;
        sum2 += sum1;
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16);
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16);
    }
    sum1 = (sum1 & 0xFFFF) + (sum1 >> 16);
    sum2 = (sum2 & 0xFFFF) + (sum2 >> 16);
    return (sum2 << 16) | sum1;
}

int cv_fletcher32_verify(const uint8_t *src, size_t n) {
    if (n < 4) return CV_ETRUNCATED;
    uint32_t stored = cv_load32le(src + n - 4);
    uint32_t f = cv_fletcher32(src, n - 4);
    /* files from HDF5 before 1.6.3 stored the bytes of each 16-bit half swapped */
    uint32_t swapped = ((f & 0x00FF00FFu) << 8) | ((f >> 8) & 0x00FF00FFu);
    return stored == f || stored == swapped ? CV_OK : CV_ECHECKSUM;
}
