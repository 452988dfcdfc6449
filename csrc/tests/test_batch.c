/* Tests of cv_batch: chunks through filter pipelines into strided outputs, against a naive
 * element-by-element reference; bad selections, corrupt, truncated and wrongly sized chunks;
 * per-chunk filter masks; several threads sharing one job array. */
#include <pthread.h>

#include "../cv_batch.h"
#include "cvtest.h"

static uint64_t rs = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}
static int64_t rndi(int64_t lo, int64_t hi) { return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1)); }

/* A zlib stream made of stored blocks (valid for every inflater, no compressor needed). */
static size_t zlib_stored(const uint8_t *src, size_t n, uint8_t *dst) {
    size_t o = 0;
    dst[o++] = 0x78;
    dst[o++] = 0x01;
    size_t i = 0;
    do {
        size_t b = n - i > 65535 ? 65535 : n - i;
        dst[o++] = (uint8_t)(i + b == n ? 1 : 0);
        dst[o++] = (uint8_t)(b & 0xFF);
        dst[o++] = (uint8_t)(b >> 8);
        dst[o++] = (uint8_t)(~b & 0xFF);
        dst[o++] = (uint8_t)((~b >> 8) & 0xFF);
        memcpy(dst + o, src + i, b);
        o += b;
        i += b;
    } while (i < n);
    uint32_t a = 1, b2 = 0;
    for (size_t k = 0; k < n; k++) {
        a = (a + src[k]) % 65521;
        b2 = (b2 + a) % 65521;
    }
    uint32_t ad = (b2 << 16) | a;
    dst[o++] = (uint8_t)(ad >> 24);
    dst[o++] = (uint8_t)(ad >> 16);
    dst[o++] = (uint8_t)(ad >> 8);
    dst[o++] = (uint8_t)ad;
    return o;
}

static size_t add_fletcher(uint8_t *buf, size_t n) {
    cv_store32le(buf + n, cv_fletcher32(buf, n));
    return n + 4;
}

/* Encode raw (nbytes) with [shuffle?][zlib?][fletcher?]; returns the stored size. */
static size_t encode(const uint8_t *raw, size_t nbytes, size_t es, int shuf, int zl, int fl,
                     uint8_t *out) {
    uint8_t *tmp = malloc(nbytes + 16);
    memcpy(tmp, raw, nbytes);
    size_t n = nbytes;
    if (shuf) cv_shuffle(raw, tmp, nbytes, es);
    if (zl) {
        n = zlib_stored(tmp, nbytes, out);
    } else {
        memcpy(out, tmp, nbytes);
    }
    if (fl) n = add_fletcher(out, n);
    free(tmp);
    return n;
}

static void setup_plan(cv_plan *p, int ndim, const int64_t *chunk, size_t is, int shuf, int zl,
                       int fl) {
    memset(p, 0, sizeof(*p));
    p->ndim = ndim;
    p->itemsize = is;
    for (int d = 0; d < ndim; d++) p->chunk[d] = chunk[d];
    if (fl) p->steps[p->nsteps++] = (cv_step){CV_STEP_FLETCHER32, 2, 0};
    if (zl) p->steps[p->nsteps++] = (cv_step){CV_STEP_ZLIB, 1, 0};
    if (shuf) p->steps[p->nsteps++] = (cv_step){CV_STEP_UNSHUFFLE, 0, is};
}

/* Output: a C-ordered 2-D buffer of n bytes with rows of s0 bytes and items of s1 bytes. */
static void set_output(cv_plan *p, uint8_t *out, size_t n, int64_t s0, int64_t s1) {
    p->ostride[0] = s0, p->ostride[1] = s1;
    p->out_lo = out;
    p->out_hi = out + n;
}

static void test_random_pipelines(void) {
    for (int iter = 0; iter < 3000; iter++) {
        int ndim = (int)rndi(0, 3);
        int64_t chunk[3] = {1, 1, 1}, start[3], step[3], count[3];
        static const size_t sizes[] = {1, 2, 3, 4, 8, 16};
        size_t is = sizes[rnd() % 6];
        size_t nel = 1;
        for (int d = 0; d < ndim; d++) {
            chunk[d] = rndi(1, 40);
            nel *= (size_t)chunk[d];
        }
        size_t D = nel * is;
        int shuf = (int)(rnd() & 1), zl = (int)(rnd() & 1), fl = (int)(rnd() % 3 == 0);
        uint8_t *raw = malloc(D), *stored = malloc(D + D / 8 + 64);
        for (size_t i = 0; i < D; i++) raw[i] = (uint8_t)rnd();
        size_t slen = encode(raw, D, is, shuf, zl, fl, stored);
        /* selection and output: output shape = counts, random dim order and directions */
        int64_t ostr[3], full = (rnd() % 4) == 0;
        size_t onel = 1;
        for (int d = 0; d < ndim; d++) {
            if (full) {
                start[d] = 0, step[d] = 1, count[d] = chunk[d];
            } else {
                start[d] = rndi(0, chunk[d] - 1);
                step[d] = rndi(1, 4);
                count[d] = rndi(1, (chunk[d] - 1 - start[d]) / step[d] + 1);
            }
            onel *= (size_t)count[d];
        }
        /* the output buffer holds the selection padded by one element per dim, to catch
         * stray writes; C order with a possible reversal of dimension 0 */
        int64_t oshape[3];
        size_t pad_nel = 1;
        for (int d = 0; d < ndim; d++) {
            oshape[d] = count[d] + 1;
            pad_nel *= (size_t)oshape[d];
        }
        int64_t s = (int64_t)is;
        for (int d = ndim - 1; d >= 0; d--) {
            ostr[d] = s;
            s *= oshape[d];
        }
        int rev = ndim > 0 && (rnd() & 1);
        uint8_t *out = malloc(pad_nel * is);
        memset(out, 0xEE, pad_nel * is);
        uint8_t *first = out;
        if (rev) {
            first = out + (count[0] - 1) * ostr[0];
            ostr[0] = -ostr[0];
        }
        cv_plan p;
        setup_plan(&p, ndim, chunk, is, shuf, zl, fl);
        for (int d = 0; d < ndim; d++) p.ostride[d] = ostr[d];
        p.out_lo = out;
        p.out_hi = out + pad_nel * is;
        CHECK_EQ(cv_plan_init(&p), CV_OK);
        CHECK_EQ(p.nbytes, D);
        int64_t sel[9];
        for (int d = 0; d < ndim; d++) {
            sel[3 * d] = start[d];
            sel[3 * d + 1] = step[d];
            sel[3 * d + 2] = count[d];
        }
        cv_job j = {stored, slen, first, sel, 0, 0, 0, 0};
        cv_worker *w = cv_worker_new(NULL);
        CHECK_EQ(cv_decode_job(w, &p, &j), CV_OK);
        /* reference: every selected element, and the padding untouched */
        uint8_t *expect = malloc(pad_nel * is);
        memset(expect, 0xEE, pad_nel * is);
        for (size_t e = 0; e < onel; e++) {
            size_t r = e, src_el = 0, mul = 1;
            int64_t ooff = 0;
            int64_t idx[3] = {0, 0, 0};
            for (int d = ndim - 1; d >= 0; d--) {
                idx[d] = (int64_t)(r % (size_t)count[d]);
                r /= (size_t)count[d];
            }
            for (int d = ndim - 1; d >= 0; d--) {
                src_el += (size_t)(start[d] + idx[d] * step[d]) * mul;
                mul *= (size_t)chunk[d];
                ooff += idx[d] * ostr[d];
            }
            memcpy(expect + (first - out) + ooff, raw + src_el * is, is);
        }
        int same = memcmp(out, expect, pad_nel * is) == 0;
        CHECK(same);
        if (!same)
            fprintf(stderr, "iter %d ndim %d is %zu shuf %d zl %d fl %d rev %d\n", iter, ndim, is,
                    shuf, zl, fl, rev);
        /* a missing chunk gets the fill value in exactly the same places */
        uint8_t fillv[16];
        for (size_t b = 0; b < is; b++) fillv[b] = (uint8_t)(0x40 + b);
        p.fill = (iter & 1) ? fillv : NULL;
        memset(out, 0xEE, pad_nel * is);
        cv_job jm = {NULL, 0, first, sel, 0, 0, 0, 0};
        CHECK_EQ(cv_decode_job(w, &p, &jm), CV_OK);
        size_t nfilled = 0;
        for (size_t e = 0; e < pad_nel; e++) {
            int is_fill = p.fill ? memcmp(out + e * is, fillv, is) == 0
                                 : memcmp(out + e * is, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", is) == 0;
            nfilled += (size_t)is_fill;
        }
        CHECK_EQ(nfilled, onel);
        /* corrupt the stored bytes: every change of a covered byte must be caught */
        if (zl || fl) {
            size_t pos = (size_t)rndi(0, (int64_t)slen - 1);
            /* (bits 3-7 of a stored block's header byte are padding that inflaters ignore) */
            int hdr = zl && pos >= 2 && (pos - 2) % 65540 == 0 && pos + 4 + (fl ? 4 : 0) < slen;
            stored[pos] ^= (uint8_t)(1u << (rnd() % (hdr ? 3 : 8)));
            cv_job jc = {stored, slen, first, sel, 0, 0, 0, 0};
            int stc = cv_decode_job(w, &p, &jc);
            CHECK(stc != CV_OK);
        }
        /* truncated by one byte: an error, never a read past srclen */
        if (slen > 1) {
            uint8_t *t = malloc(slen - 1);
            memcpy(t, stored, slen - 1);
            cv_job jt = {t, slen - 1, first, sel, 0, 0, 0, 0};
            CHECK(cv_decode_job(w, &p, &jt) != CV_OK);
            free(t);
        }
        cv_worker_free(w);
        free(raw), free(stored), free(out), free(expect);
    }
}

static void test_bad_jobs(void) {
    int64_t chunk[2] = {4, 6};
    /* the output lies 8 bytes into a larger buffer, so a destination 4 bytes before it is still
     * a pointer into the same object (forming `out - 4` on a bare array is undefined, and clang's
     * UBSan reports it) */
    uint8_t raw[4 * 6 * 4], outbuf[8 + 4 * 6 * 4], *out = outbuf + 8;
    const size_t outlen = 4 * 6 * 4;
    for (size_t i = 0; i < sizeof raw; i++) raw[i] = (uint8_t)i;
    cv_plan p;
    setup_plan(&p, 2, chunk, 4, 0, 0, 0);
    set_output(&p, out, outlen, 24, 4);
    CHECK_EQ(cv_plan_init(&p), CV_OK);
    cv_worker *w = cv_worker_new(NULL);
    int64_t ok[6] = {0, 1, 4, 0, 1, 6};
    cv_job j = {raw, sizeof raw, out, ok, 0, 0, 0, 0};
    CHECK_EQ(cv_decode_job(w, &p, &j), CV_OK);
    CHECK(memcmp(out, raw, sizeof raw) == 0);
    /* selections outside the chunk */
    int64_t bad1[6] = {0, 1, 5, 0, 1, 6}, bad2[6] = {3, 2, 2, 0, 1, 6}, bad3[6] = {-1, 1, 1, 0, 1, 1},
            bad4[6] = {0, 0, 2, 0, 1, 1};
    const int64_t *bads[4] = {bad1, bad2, bad3, bad4};
    for (int b = 0; b < 4; b++) {
        cv_job jb = {raw, sizeof raw, out, bads[b], 0, 0, 0, 0};
        CHECK_EQ(cv_decode_job(w, &p, &jb), CV_EINVAL);
    }
    /* outside the output */
    cv_job jo = {raw, sizeof raw, out + 4, ok, 0, 0, 0, 0};
    CHECK_EQ(cv_decode_job(w, &p, &jo), CV_EINVAL);
    cv_job jl = {raw, sizeof raw, out - 4, ok, 0, 0, 0, 0};
    CHECK_EQ(cv_decode_job(w, &p, &jl), CV_EINVAL);
    /* huge strides cannot wrap around */
    p.ostride[0] = INT64_MAX / 2;
    cv_job jh = {raw, sizeof raw, out, ok, 0, 0, 0, 0};
    CHECK_EQ(cv_decode_job(w, &p, &jh), CV_EINVAL);
    p.ostride[0] = 24;
    /* wrong raw size */
    cv_job js = {raw, sizeof raw - 1, out, ok, 0, 0, 0, 0};
    CHECK_EQ(cv_decode_job(w, &p, &js), CV_ESIZE);
    CHECK_EQ(js.detail, (int64_t)sizeof raw - 1);
    /* a zlib stream that decodes to more than the chunk */
    uint8_t big[200], z[300];
    memset(big, 7, sizeof big);
    size_t zl = zlib_stored(big, sizeof big, z);
    cv_plan pz;
    setup_plan(&pz, 2, chunk, 4, 0, 1, 0);
    set_output(&pz, out, outlen, 24, 4);
    CHECK_EQ(cv_plan_init(&pz), CV_OK);
    cv_job jz = {z, zl, out, ok, 0, 0, 0, 0};
    CHECK_EQ(cv_decode_job(w, &pz, &jz), CV_ESIZE);
    CHECK_EQ(jz.step, 0);
    /* ... or to less */
    zl = zlib_stored(big, 50, z);
    cv_job jz2 = {z, zl, out, ok, 0, 0, 0, 0};
    CHECK_EQ(cv_decode_job(w, &pz, &jz2), CV_ESIZE);
    CHECK_EQ(jz2.detail, 50);
    /* the filter mask skips the inflate: the raw chunk is read as it is */
    cv_job jm = {raw, sizeof raw, out, ok, 1u << 1, 0, 0, 0};
    memset(out, 0, outlen);
    CHECK_EQ(cv_decode_job(w, &pz, &jm), CV_OK);
    CHECK(memcmp(out, raw, sizeof raw) == 0);
    /* bad plans */
    cv_plan pb = pz;
    pb.steps[pb.nsteps++] = (cv_step){CV_STEP_GZIP, -1, 0};
    CHECK_EQ(cv_plan_init(&pb), CV_EINVAL);
    pb = pz;
    pb.chunk[1] = 0;
    CHECK_EQ(cv_plan_init(&pb), CV_EINVAL);
    pb = pz;
    pb.chunk[0] = INT64_MAX / 2;
    pb.chunk[1] = INT64_MAX / 2;
    CHECK_EQ(cv_plan_init(&pb), CV_ERANGE);
    pb = pz;
    pb.steps[0].kind = 99;
    CHECK_EQ(cv_plan_init(&pb), CV_EINVAL);
    cv_worker_free(w);
}

/* Threads: 4 workers share one array of 64 chunk jobs of a (16*8, 16*8) output. */
typedef struct {
    const cv_plan *p;
    cv_job *jobs;
    size_t n, *next, failed;
} targ;

static void *thread_main(void *arg) {
    targ *t = arg;
    cv_worker *w = cv_worker_new(NULL);
    t->failed = cv_decode_jobs(w, t->p, t->jobs, t->n, t->next, 3);
    cv_worker_free(w);
    return NULL;
}

static void test_threads(void) {
    enum { C = 16, G = 8, N = G * G };
    int64_t chunk[2] = {C, C};
    size_t is = 4, D = C * C * is;
    uint8_t *raw = malloc(N * D), *stored = malloc(N * (D + 64));
    uint8_t *out = malloc(N * D), *expect = malloc(N * D);
    size_t soff[N], slen[N];
    for (size_t i = 0; i < N * D; i++) raw[i] = (uint8_t)rnd();
    size_t o = 0;
    for (int c = 0; c < N; c++) {
        soff[c] = o;
        slen[c] = encode(raw + c * D, D, is, 1, 1, 1, stored + o);
        o += slen[c];
        int gy = c / G, gx = c % G;
        for (int y = 0; y < C; y++)
            memcpy(expect + ((size_t)(gy * C + y) * G * C + (size_t)gx * C) * is,
                   raw + c * D + (size_t)y * C * is, C * is);
    }
    cv_plan p;
    setup_plan(&p, 2, chunk, is, 1, 1, 1);
    set_output(&p, out, N * D, G * C * is, is);
    CHECK_EQ(cv_plan_init(&p), CV_OK);
    int64_t sel[6] = {0, 1, C, 0, 1, C};
    cv_job jobs[N];
    for (int c = 0; c < N; c++) {
        int gy = c / G, gx = c % G;
        jobs[c] = (cv_job){stored + soff[c], slen[c],
                           out + ((size_t)gy * C * G * C + (size_t)gx * C) * is, sel, 0, 0, 0, 0};
    }
    /* one chunk is corrupt: its failure is recorded, the others are decoded */
    stored[soff[5] + 20] ^= 1;
    size_t next = 0;
    pthread_t th[4];
    targ ta[4];
    for (int t = 0; t < 4; t++) {
        ta[t] = (targ){&p, jobs, N, &next, 0};
        pthread_create(&th[t], NULL, thread_main, &ta[t]);
    }
    size_t failed = 0;
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        failed += ta[t].failed;
    }
    CHECK_EQ(failed, 1);
    CHECK_EQ(jobs[5].status, CV_ECHECKSUM);
    CHECK_EQ(jobs[5].step, 0);
    for (int c = 0; c < N; c++) {
        if (c == 5) continue;
        int gy = c / G, gx = c % G, same = 1;
        for (int y = 0; y < C; y++) {
            size_t off = ((size_t)(gy * C + y) * G * C + (size_t)gx * C) * is;
            same &= memcmp(out + off, expect + off, C * is) == 0;
        }
        CHECK(same);
    }
    free(raw), free(stored), free(out), free(expect);
}

int main(void) {
    test_random_pipelines();
    test_bad_jobs();
    test_threads();
    CVT_DONE("test_batch");
}
