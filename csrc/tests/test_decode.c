/* Decode kernels: every unshuffle kernel against the scalar definition, shuffle round trips,
 * fletcher32 known values, inflate of corrupt and oversized streams (never past dstcap) with the
 * build's own backend and with libdeflate loaded at run time (cv_libdeflate_api), and how that
 * table's results are mapped (a stand-in library that answers each result code). */
#if !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L /* dlopen under -std=c99 */
#include <dlfcn.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cv_decode.h"
#include "cvtest.h"

static uint64_t st = 0x243F6A8885A308D3ULL;
static uint8_t rnd8(void) {
    st ^= st << 13;
    st ^= st >> 7;
    st ^= st << 17;
    return (uint8_t)st;
}

static void ref_unshuffle(const uint8_t *src, uint8_t *dst, size_t nbytes, size_t es) {
    if (es <= 1 || nbytes < es) {
        memcpy(dst, src, nbytes);
        return;
    }
    size_t n = nbytes / es;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < es; j++) dst[i * es + j] = src[j * n + i];
    memcpy(dst + n * es, src + n * es, nbytes - n * es);
}

static void test_unshuffle_kernels(void) {
    unsigned kernels[4] = {8, CV_SIMD_SSE2, CV_SIMD_AVX2, CV_SIMD_NEON};
    unsigned avail = cv_simd_available();
    size_t sizes[] = {0, 1, 3, 7, 16, 31, 32, 63, 64, 65, 127, 255, 256, 257, 1000, 4099, 65536 + 13};
    for (size_t es = 1; es <= 16; es++) {
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
            size_t nb = sizes[si] * (es > 3 ? 3 : 1) + (si & 1);
            uint8_t *src = malloc(nb + 1), *want = malloc(nb + 1), *got = malloc(nb + 64);
            for (size_t i = 0; i < nb; i++) src[i] = rnd8();
            ref_unshuffle(src, want, nb, es);
            for (int k = 0; k < 4; k++) {
                if (kernels[k] != 8 && !(avail & kernels[k])) {
                    CHECK_EQ(cv_unshuffle_with(kernels[k], src, got, nb, es), CV_EUNSUPPORTED);
                    continue;
                }
                memset(got, 0xEE, nb + 64);
                CHECK_EQ(cv_unshuffle_with(kernels[k], src, got, nb, es), CV_OK);
                CHECK(memcmp(got, want, nb) == 0);
                CHECK(got[nb] == 0xEE); /* nothing written past the end */
            }
            cv_shuffle(want, got, nb, es); /* the forward filter undoes it */
            CHECK(memcmp(got, src, nb) == 0);
            free(src);
            free(want);
            free(got);
        }
    }
}

static void test_fletcher32(void) {
    /* hand-computed: words 0x0102, 0x0304 -> sum1 = 0x0406, sum2 = 0x0102 + 0x0406 = 0x0508 */
    const uint8_t a[4] = {1, 2, 3, 4};
    CHECK_EQ(cv_fletcher32(a, 4), 0x05080406u);
    /* odd length: last byte is the high byte of a final word */
    const uint8_t b[3] = {1, 2, 3};
    CHECK_EQ(cv_fletcher32(b, 3), ((0x0102u + 0x0402u) << 16) | 0x0402u);
    uint8_t buf[1000 + 4];
    for (int i = 0; i < 1000; i++) buf[i] = rnd8();
    uint32_t f = cv_fletcher32(buf, 1000);
    buf[1000] = (uint8_t)f;
    buf[1001] = (uint8_t)(f >> 8);
    buf[1002] = (uint8_t)(f >> 16);
    buf[1003] = (uint8_t)(f >> 24);
    CHECK_EQ(cv_fletcher32_verify(buf, 1004), CV_OK);
    buf[10] ^= 1;
    CHECK_EQ(cv_fletcher32_verify(buf, 1004), CV_ECHECKSUM);
    CHECK_EQ(cv_fletcher32_verify(buf, 3), CV_ETRUNCATED);
    /* long input: the 360-word blocking keeps the sums exact (all 0xFF bytes stress carries) */
    uint8_t *big = malloc(100001);
    memset(big, 0xFF, 100001);
    uint64_t s1 = 0, s2 = 0;
    for (size_t i = 0; i + 1 < 100001; i += 2) {
        s1 = (s1 + 0xFFFF) % 65535;
        s2 = (s2 + s1) % 65535;
    }
    s1 = (s1 + 0xFF00) % 65535;
    s2 = (s2 + s1) % 65535;
    uint32_t g = cv_fletcher32(big, 100001);
    CHECK_EQ((g & 0xFFFF) % 65535, s1);
    CHECK_EQ((g >> 16) % 65535, s2);
    free(big);
}

static void test_inflate_errors(const cv_libdeflate_api *api) {
    cv_inflater *z = cv_inflater_new(api);
    CHECK(z != NULL);
    /* a stored (uncompressed) zlib stream of "hello": 78 01, block header, LEN/NLEN, data, adler */
    const uint8_t hello[] = {0x78, 0x01, 0x01, 0x05, 0x00, 0xFA, 0xFF, 'h', 'e', 'l', 'l', 'o',
                             0x06, 0x2C, 0x02, 0x15};
    uint8_t out[16];
    size_t got = 99;
    CHECK_EQ(cv_inflate(z, CV_FMT_ZLIB, hello, sizeof hello, out, sizeof out, &got), CV_OK);
    CHECK(got == 5 && memcmp(out, "hello", 5) == 0);
    memset(out, 0xEE, sizeof out);
    CHECK_EQ(cv_inflate(z, CV_FMT_ZLIB, hello, sizeof hello, out, 4, &got), CV_ESIZE);
    CHECK(out[4] == 0xEE); /* never past dstcap */
    for (size_t cut = 0; cut < sizeof hello; cut++) /* every truncation fails */
        CHECK(cv_inflate(z, CV_FMT_ZLIB, hello, cut, out, sizeof out, &got) != CV_OK);
    uint8_t bad[sizeof hello];
    memcpy(bad, hello, sizeof hello);
    bad[15] ^= 1; /* adler32 */
    CHECK_EQ(cv_inflate(z, CV_FMT_ZLIB, bad, sizeof bad, out, sizeof out, &got), CV_ECORRUPT);
    CHECK_EQ(cv_inflate(z, 9, hello, sizeof hello, out, sizeof out, &got), CV_EINVAL);
    /* random garbage never crashes */
    uint8_t junk[300];
    for (int t = 0; t < 2000; t++) {
        size_t n = (size_t)rnd8() + 1;
        for (size_t i = 0; i < n; i++) junk[i] = rnd8();
        if (t & 1) junk[0] = 0x78, junk[1] = 0x9C;
        (void)cv_inflate(z, t % 3, junk, n, out, sizeof out, &got);
        CHECK(got <= sizeof out);
    }
    cv_inflater_free(z);
    printf("inflate backend: %s%s, simd built %u, available %u\n",
           api ? "libdeflate loaded at run time, build's own: " : "", cv_inflate_backend(),
           cv_simd_built(), cv_simd_available());
}

/* A stand-in for libdeflate that answers the result code it is told to. */
static int fake_result, fake_alive, fake_overcount;
static void *fake_alloc(void) {
    fake_alive++;
    return &fake_alive;
}
static void fake_free(void *d) {
    CHECK(d == &fake_alive);
    fake_alive--;
}
static int fake_decompress(void *d, const void *src, size_t srclen, void *dst, size_t dstcap,
                           size_t *outlen) {
    size_t n = srclen < dstcap ? srclen : dstcap;
    CHECK(d == &fake_alive);
    memcpy(dst, src, n);
    *outlen = fake_overcount ? dstcap + 1 : n;
    return fake_result;
}

static void test_inflate_api_results(void) {
    cv_libdeflate_api api = {fake_alloc, fake_free, fake_decompress, fake_decompress,
                             fake_decompress};
    cv_inflater *z = cv_inflater_new(&api);
    CHECK(z != NULL && fake_alive == 1);
    uint8_t out[8];
    size_t got = 99;
    const int expect[4] = {CV_OK, CV_ECORRUPT, CV_ECORRUPT, CV_ESIZE};
    for (int fmt = 0; fmt < 3; fmt++) {
        for (int r = 0; r < 5; r++) {
            fake_result = r; /* 4: a code libdeflate does not have */
            int st = cv_inflate(z, fmt, (const uint8_t *)"abc", 3, out, sizeof out, &got);
            CHECK_EQ(st, r < 4 ? expect[r] : CV_ECORRUPT);
            CHECK_EQ(got, (size_t)(st == CV_OK ? 3 : 0));
        }
    }
    fake_result = 0;
    fake_overcount = 1; /* a count past the buffer is never passed on */
    CHECK_EQ(cv_inflate(z, CV_FMT_ZLIB, (const uint8_t *)"abc", 3, out, sizeof out, &got),
             CV_ECORRUPT);
    CHECK_EQ(got, (size_t)0);
    fake_overcount = 0;
    CHECK_EQ(cv_inflate(z, 7, (const uint8_t *)"abc", 3, out, sizeof out, &got), CV_EINVAL);
    cv_inflater_free(z);
    CHECK_EQ(fake_alive, 0);
    api.gzip_decompress = NULL; /* an incomplete table makes no inflater */
    CHECK(cv_inflater_new(&api) == NULL);
    CHECK_EQ(fake_alive, 0);
}

/* libdeflate from the system's shared library, as the Python layer loads it when the build had
 * no header; skipped (with a line saying so) where there is none. */
static void test_inflate_runtime_libdeflate(void) {
#if !defined(_WIN32)
    const char *names[] = {"libdeflate.so.0", "libdeflate.0.dylib", "libdeflate.dylib"};
    void *h = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !h; i++)
        h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("no libdeflate shared library: the run-time backend is not tested here\n");
        return;
    }
    cv_libdeflate_api api;
    *(void **)(&api.alloc_decompressor) = dlsym(h, "libdeflate_alloc_decompressor");
    *(void **)(&api.free_decompressor) = dlsym(h, "libdeflate_free_decompressor");
    *(void **)(&api.zlib_decompress) = dlsym(h, "libdeflate_zlib_decompress");
    *(void **)(&api.deflate_decompress) = dlsym(h, "libdeflate_deflate_decompress");
    *(void **)(&api.gzip_decompress) = dlsym(h, "libdeflate_gzip_decompress");
    CHECK(api.alloc_decompressor && api.free_decompressor && api.zlib_decompress &&
          api.deflate_decompress && api.gzip_decompress);
    test_inflate_errors(&api);
    dlclose(h);
#endif
}

int main(void) {
    test_unshuffle_kernels();
    test_fletcher32();
    test_inflate_errors(NULL);
    test_inflate_api_results();
    test_inflate_runtime_libdeflate();
    CVT_DONE("test_decode");
}
