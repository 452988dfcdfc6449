#include <stdio.h>
#include <string.h>

#include "cv_hash.h"
#include "cv_index.h"
#include "cvtest.h"

static void test_basic(void) {
    cv_index *idx = cv_index_new();
    CHECK(idx != NULL);
    int64_t u = cv_index_url_intern(idx, (const uint8_t *)"file:///a.h5", 12);
    CHECK_EQ(u, 0);
    CHECK_EQ(cv_index_url_intern(idx, (const uint8_t *)"file:///a.h5", 12), 0);
    CHECK_EQ(cv_index_url_intern(idx, (const uint8_t *)"file:///b.h5", 12), 1);
    char key[32];
    for (int i = 0; i < 100000; i++) {
        int n = snprintf(key, sizeof key, "v/%d", i);
        CHECK_EQ(cv_index_put(idx, (uint8_t *)key, (size_t)n, (uint32_t)(i & 1), (uint64_t)i * 10,
                              (uint64_t)i + 1), CV_OK);
    }
    CHECK_EQ(cv_index_len(idx), 100000);
    cv_ref r;
    for (int i = 0; i < 100000; i += 7) {
        int n = snprintf(key, sizeof key, "v/%d", i);
        CHECK_EQ(cv_index_get(idx, (uint8_t *)key, (size_t)n, &r), CV_OK);
        CHECK_EQ(r.url, (uint32_t)(i & 1));
        CHECK_EQ(r.offset, (uint64_t)i * 10);
        CHECK_EQ(r.length, (uint64_t)i + 1);
    }
    CHECK_EQ(cv_index_get(idx, (const uint8_t *)"v/100000", 8, &r), CV_ENOTFOUND);
    /* embedded NULs are distinct keys */
    CHECK_EQ(cv_index_put_inline(idx, (const uint8_t *)"a\0b", 3, (const uint8_t *)"xyz", 3), CV_OK);
    CHECK_EQ(cv_index_get(idx, (const uint8_t *)"a\0c", 3, &r), CV_ENOTFOUND);
    CHECK_EQ(cv_index_get(idx, (const uint8_t *)"a", 1, &r), CV_ENOTFOUND);
    CHECK_EQ(cv_index_get(idx, (const uint8_t *)"a\0b", 3, &r), CV_OK);
    CHECK_EQ(r.url, CV_URL_INLINE);
    const uint8_t *d;
    size_t dl;
    CHECK_EQ(cv_index_inline(idx, &r, &d, &dl), CV_OK);
    CHECK(dl == 3 && memcmp(d, "xyz", 3) == 0);
    /* big and whole-file lengths */
    CHECK_EQ(cv_index_put(idx, (const uint8_t *)"big", 3, 0, 1, (uint64_t)1 << 40), CV_OK);
    CHECK_EQ(cv_index_put(idx, (const uint8_t *)"whole", 5, 1, 0, CV_LEN_WHOLE), CV_OK);
    CHECK_EQ(cv_index_get(idx, (const uint8_t *)"big", 3, &r), CV_OK);
    CHECK_EQ(r.length, (uint64_t)1 << 40);
    CHECK_EQ(cv_index_get(idx, (const uint8_t *)"whole", 5, &r), CV_OK);
    CHECK_EQ(r.length, CV_LEN_WHOLE);
    /* overwrite back to a small length drops the big entry */
    CHECK_EQ(cv_index_put(idx, (const uint8_t *)"big", 3, 0, 1, 5), CV_OK);
    CHECK_EQ(cv_index_get(idx, (const uint8_t *)"big", 3, &r), CV_OK);
    CHECK_EQ(r.length, 5);
    /* overflowing range and unknown url rejected */
    CHECK_EQ(cv_index_put(idx, (const uint8_t *)"x", 1, 0, UINT64_MAX - 1, 5), CV_ERANGE);
    CHECK_EQ(cv_index_put(idx, (const uint8_t *)"x", 1, 9, 0, 5), CV_EINVAL);
    /* delete */
    size_t before = cv_index_len(idx);
    CHECK_EQ(cv_index_del(idx, (const uint8_t *)"v/5", 3), CV_OK);
    CHECK_EQ(cv_index_del(idx, (const uint8_t *)"v/5", 3), CV_ENOTFOUND);
    CHECK_EQ(cv_index_len(idx), before - 1);
    CHECK_EQ(cv_index_get(idx, (const uint8_t *)"v/5", 3, &r), CV_ENOTFOUND);

    /* serialize, reopen borrowed and copied, compare */
    int64_t sz = cv_index_serialized_size(idx);
    CHECK(sz > 0);
    uint8_t *buf = malloc((size_t)sz);
    CHECK_EQ(cv_index_serialize(idx, buf, (size_t)sz), sz);
    for (int copy = 0; copy < 2; copy++) {
        int st;
        cv_index *j = cv_index_open_buffer(buf, (size_t)sz, copy, 1, &st);
        CHECK(j != NULL);
        if (!j) continue;
        CHECK_EQ(cv_index_len(j), cv_index_len(idx));
        size_t c1 = 0, c2 = 0, seen = 0;
        for (;;) {
            const uint8_t *k1, *k2;
            size_t l1, l2;
            cv_ref r1, r2;
            int s1 = cv_index_next(idx, &c1, &k1, &l1, &r1);
            int s2 = cv_index_next(j, &c2, &k2, &l2, &r2);
            CHECK_EQ(s1, s2);
            if (s1 != CV_OK) break;
            seen++;
            CHECK(l1 == l2 && memcmp(k1, k2, l1) == 0);
            CHECK(r1.url == r2.url && r1.length == r2.length);
            if (r1.url != CV_URL_INLINE) CHECK(r1.offset == r2.offset);
        }
        CHECK_EQ(seen, cv_index_len(idx));
        /* mutation of a borrowed index copies first */
        CHECK_EQ(cv_index_put(j, (const uint8_t *)"new", 3, 0, 1, 2), CV_OK);
        CHECK_EQ(cv_index_get(j, (const uint8_t *)"v/99", 4, &r), CV_OK);
        CHECK_EQ(r.offset, 990);
        cv_index_free(j);
    }
    /* every single-byte corruption is caught (checksums) or at least never crashes */
    for (int64_t i = 0; i < sz; i += 97) {
        buf[i] ^= 0x5A;
        int st;
        cv_index *j = cv_index_open_buffer(buf, (size_t)sz, 0, 1, &st);
        CHECK(j == NULL);
        CHECK(st == CV_ECHECKSUM || st == CV_EFORMAT);
        buf[i] ^= 0x5A;
    }
    /* truncation */
    {
        int st;
        CHECK(cv_index_open_buffer(buf, (size_t)sz - 8, 0, 1, &st) == NULL);
        CHECK_EQ(st, CV_ETRUNCATED);
        CHECK(cv_index_open_buffer(buf, 64, 0, 1, &st) == NULL);
        CHECK_EQ(st, CV_ETRUNCATED);
    }
    free(buf);
    cv_index_free(idx);
}

static void test_url_widening(void) {
    cv_index *idx = cv_index_new();
    char url[32], key[32];
    for (int i = 0; i < 70000; i++) {
        int n = snprintf(url, sizeof url, "s3://b/%d.nc", i);
        int64_t id = cv_index_url_intern(idx, (uint8_t *)url, (size_t)n);
        CHECK_EQ(id, i);
        int k = snprintf(key, sizeof key, "k%d", i);
        CHECK_EQ(cv_index_put(idx, (uint8_t *)key, (size_t)k, (uint32_t)id, 1, 2), CV_OK);
    }
    cv_ref r;
    CHECK_EQ(cv_index_get(idx, (const uint8_t *)"k300", 4, &r), CV_OK);
    CHECK_EQ(r.url, 300);
    CHECK_EQ(cv_index_get(idx, (const uint8_t *)"k69999", 6, &r), CV_OK);
    CHECK_EQ(r.url, 69999);
    const uint8_t *u;
    size_t ul;
    CHECK_EQ(cv_index_url_get(idx, 69999, &u, &ul), CV_OK);
    CHECK(ul == 13 && memcmp(u, "s3://b/69999.nc", 13) == 0 ? 1 : ul == 15);
    /* replace: map everything to two URLs */
    size_t n = cv_index_url_count(idx);
    const uint8_t **urls = malloc(n * sizeof *urls);
    size_t *lens = malloc(n * sizeof *lens);
    for (size_t i = 0; i < n; i++) {
        urls[i] = (const uint8_t *)((i & 1) ? "odd" : "even");
        lens[i] = (i & 1) ? 3 : 4;
    }
    CHECK_EQ(cv_index_urls_replace(idx, n, urls, lens), CV_OK);
    CHECK_EQ(cv_index_url_count(idx), 2);
    CHECK_EQ(cv_index_get(idx, (const uint8_t *)"k301", 4, &r), CV_OK);
    CHECK_EQ(cv_index_url_get(idx, r.url, &u, &ul), CV_OK);
    CHECK(ul == 3 && memcmp(u, "odd", 3) == 0);
    free(urls);
    free(lens);
    cv_index_free(idx);
}

static void test_batch(void) {
    cv_index *idx = cv_index_new();
    cv_index_url_intern(idx, (const uint8_t *)"f", 1);
    const uint8_t *keys[3] = {(const uint8_t *)"a", (const uint8_t *)"b", (const uint8_t *)"zz"};
    size_t kl[3] = {1, 1, 2};
    uint32_t uid[3] = {0, 0, 0};
    uint64_t off[3] = {1, 2, 3}, len[3] = {4, 5, 6};
    CHECK_EQ(cv_index_put_many(idx, 2, keys, kl, uid, off, len), CV_OK);
    int64_t ou[3];
    uint64_t oo[3], ol[3];
    CHECK_EQ(cv_index_get_many(idx, 3, keys, kl, ou, oo, ol), 2);
    CHECK(ou[0] == 0 && oo[0] == 1 && ol[0] == 4);
    CHECK(ou[1] == 0 && oo[1] == 2 && ol[1] == 5);
    CHECK(ou[2] == CV_ID_MISSING);
    cv_index_free(idx);
}

/* Overwrites that grow, deletes and re-inserts against a model of a Python dict: iteration
 * keeps first-insertion order, like dict. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

#define NK 40
typedef struct {
    int present;
    unsigned long order; /* insertion stamp */
    int inline_;
    uint64_t off, len;
    uint8_t data[300];
    size_t dlen;
} model_t;

static void check_model(cv_index *idx, model_t *m) {
    /* expected order: present keys sorted by stamp */
    int ord[NK], n = 0;
    for (int i = 0; i < NK; i++)
        if (m[i].present) ord[n++] = i;
    for (int a = 1; a < n; a++)
        for (int b = a; b > 0 && m[ord[b - 1]].order > m[ord[b]].order; b--) {
            int t = ord[b]; ord[b] = ord[b - 1]; ord[b - 1] = t;
        }
    CHECK_EQ(cv_index_len(idx), (size_t)n);
    size_t cursor = 0;
    int seen = 0;
    const uint8_t *k;
    size_t kl;
    cv_ref r;
    while (cv_index_next(idx, &cursor, &k, &kl, &r) == CV_OK) {
        char want[16];
        int wl = seen < n ? snprintf(want, sizeof want, "key%d", ord[seen]) : 0;
        CHECK(seen < n && kl == (size_t)wl && memcmp(k, want, kl) == 0);
        if (seen < n) {
            model_t *e = &m[ord[seen]];
            if (e->inline_) {
                const uint8_t *d;
                size_t dl;
                CHECK(r.url == CV_URL_INLINE && cv_index_inline(idx, &r, &d, &dl) == CV_OK &&
                      dl == e->dlen && memcmp(d, e->data, dl) == 0);
            } else {
                CHECK(r.url == 0 && r.offset == e->off && r.length == e->len);
            }
        }
        seen++;
    }
    CHECK_EQ(seen, n);
}

/* Serialize idx into a new *buf (the caller frees it) and open that, copied or borrowed. */
static cv_index *reopen(cv_index *idx, int copy, uint8_t **buf) {
    int64_t sz = cv_index_serialized_size(idx);
    CHECK(sz > 0);
    *buf = malloc((size_t)sz);
    CHECK_EQ(cv_index_serialize(idx, *buf, (size_t)sz), sz);
    int st;
    cv_index *j = cv_index_open_buffer(*buf, (size_t)sz, copy, 1, &st);
    CHECK(j != NULL);
    return j;
}

static void test_order_model(void) {
    for (int round = 0; round < 20; round++) {
        cv_index *idx = cv_index_new();
        cv_index_url_intern(idx, (const uint8_t *)"u", 1);
        model_t m[NK];
        memset(m, 0, sizeof m);
        unsigned long stamp = 0;
        for (int step = 0; step < 3000; step++) {
            int i = (int)(rnd() % NK);
            char key[16];
            int kl = snprintf(key, sizeof key, "key%d", i);
            unsigned op = (unsigned)(rnd() % 10);
            if (op < 2) {
                int st = cv_index_del(idx, (uint8_t *)key, (size_t)kl);
                CHECK_EQ(st, m[i].present ? CV_OK : CV_ENOTFOUND);
                m[i].present = 0;
            } else if (op < 4) {
                size_t dl = (size_t)(rnd() % 300);
                uint8_t d[300];
                for (size_t j = 0; j < dl; j++) d[j] = (uint8_t)rnd();
                CHECK_EQ(cv_index_put_inline(idx, (uint8_t *)key, (size_t)kl, d, dl), CV_OK);
                if (!m[i].present) m[i].order = stamp++;
                m[i].present = 1;
                m[i].inline_ = 1;
                memcpy(m[i].data, d, dl);
                m[i].dlen = dl;
            } else {
                /* offsets of 1 to 8 bytes: values grow and shrink */
                uint64_t off = rnd() >> (rnd() % 64), len = rnd() >> (32 + rnd() % 32);
                if (off > UINT64_MAX - len) off = 0;
                CHECK_EQ(cv_index_put(idx, (uint8_t *)key, (size_t)kl, 0, off, len), CV_OK);
                if (!m[i].present) m[i].order = stamp++;
                m[i].present = 1;
                m[i].inline_ = 0;
                m[i].off = off;
                m[i].len = len;
            }
            if (step % 97 == 0) check_model(idx, m);
            if (step % 1000 == 999) {
                /* round trip through the native format; the opened copy must agree */
                CHECK_EQ(cv_index_shrink(idx), CV_OK);
                check_model(idx, m);
                uint8_t *buf;
                cv_index *j = reopen(idx, 1, &buf);
                if (j) {
                    check_model(j, m);
                    cv_index_free(j);
                }
                free(buf);
            }
        }
        check_model(idx, m);
        cv_index_free(idx);
    }
}

/* Random byte flips in a serialized index, opened without verification: lookups and iteration
 * must fail cleanly or succeed, never read out of bounds (run under SAN=1). */
static void test_open_corrupt_fuzz(void) {
    cv_index *idx = cv_index_new();
    cv_index_url_intern(idx, (const uint8_t *)"u", 1);
    char key[16];
    for (int i = 0; i < 300; i++) {
        int kl = snprintf(key, sizeof key, "v/%d", i);
        if (i % 5 == 0) cv_index_put_inline(idx, (uint8_t *)key, (size_t)kl, (uint8_t *)"abcdef", 6);
        else cv_index_put(idx, (uint8_t *)key, (size_t)kl, 0, (uint64_t)i * 1000, 77);
    }
    for (int i = 0; i < 300; i += 7) {
        int kl = snprintf(key, sizeof key, "v/%d", i);
        cv_index_put(idx, (uint8_t *)key, (size_t)kl, 0, UINT64_C(1) << 50, 1); /* relocate */
    }
    int64_t sz = cv_index_serialized_size(idx);
    uint8_t *good = malloc((size_t)sz), *buf = malloc((size_t)sz);
    CHECK_EQ(cv_index_serialize(idx, good, (size_t)sz), sz);
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(buf, good, (size_t)sz);
        int flips = 1 + (int)(rnd() % 4);
        for (int f = 0; f < flips; f++) buf[128 + rnd() % ((uint64_t)sz - 128)] ^= (uint8_t)(1 + rnd() % 255);
        int st;
        cv_index *j = cv_index_open_buffer(buf, (size_t)sz, (int)(trial & 1), 0, &st);
        if (!j) continue;
        size_t cursor = 0;
        const uint8_t *k;
        size_t kl2;
        cv_ref r;
        int guard = 0;
        while (cv_index_next(j, &cursor, &k, &kl2, &r) == CV_OK && guard++ < 1000) {
            const uint8_t *d;
            size_t dl;
            if (r.url == CV_URL_INLINE) (void)cv_index_inline(j, &r, &d, &dl);
        }
        static char keys[100][16];
        const uint8_t *kp[100];
        size_t kls[100];
        int64_t ids[100];
        uint64_t offs[100], lens[100];
        for (int i = 0; i < 300; i += 3) {
            int kl = snprintf(keys[i / 3], sizeof keys[0], "v/%d", i);
            kp[i / 3] = (const uint8_t *)keys[i / 3];
            kls[i / 3] = (size_t)kl;
            (void)cv_index_get(j, (uint8_t *)keys[i / 3], (size_t)kl, &r);
        }
        (void)cv_index_get_many(j, 100, kp, kls, ids, offs, lens);
        (void)cv_index_check(j);
        /* modifications of a corrupt index must fail cleanly too */
        (void)cv_index_put(j, (const uint8_t *)"new", 3, 0, 1, 2);
        (void)cv_index_del(j, (const uint8_t *)"v/3", 3);
        (void)cv_index_shrink(j);
        cv_index_free(j);
    }
    /* the verified open rejects every flip in the body via the checksum */
    free(good);
    free(buf);
    cv_index_free(idx);
}

/* The key hash spreads typical chunk keys evenly: bucket loads of 1M "v/i" keys over 1M/6
 * buckets stay near Poisson(6) (max well under 40), and similar keys differ in many bits. */
static void test_keyhash_spread(void) {
    size_t n = 1000000, nb = n / 6 + 1;
    uint32_t *cnt = calloc(nb, 4);
    char key[32];
    for (size_t i = 0; i < n; i++) {
        int kl = snprintf(key, sizeof key, (i & 1) ? "v/%zu" : "t2m/%zu.0.0", i);
        uint64_t h = cv_keyhash((uint8_t *)key, (size_t)kl);
        cnt[(size_t)(((h & 0xFFFFFFFFu) * (uint64_t)nb) >> 32)]++;
    }
    uint32_t mx = 0;
    double var = 0;
    for (size_t b = 0; b < nb; b++) {
        if (cnt[b] > mx) mx = cnt[b];
        var += ((double)cnt[b] - 6.0) * ((double)cnt[b] - 6.0);
    }
    var /= (double)nb;
    CHECK(mx < 40);
    CHECK(var > 4.0 && var < 8.0); /* Poisson(6): variance 6 */
    free(cnt);
    int flips = 0;
    for (int i = 0; i < 64; i++) {
        char a[8] = "v/000000", b[8];
        memcpy(b, a, 8);
        b[2 + (i % 6)] ^= (char)(1 << (i / 6 % 7));
        flips += __builtin_popcountll(cv_keyhash((uint8_t *)a, 8) ^ cv_keyhash((uint8_t *)b, 8));
    }
    CHECK(flips > 64 * 24 && flips < 64 * 40); /* about 32 bits of 64 change */
    for (size_t len = 0; len < 40; len++) { /* every length reads only its own bytes (SAN) */
        uint8_t *buf = malloc(len ? len : 1);
        memset(buf, 'x', len);
        (void)cv_keyhash(buf, len);
        free(buf);
    }
}

/* Keys and inline bytes handed back by the index may be fed to it again, even when the call
 * thaws the frozen index and so frees the memory they point into (run under SAN=1). */
static void test_aliased_inputs(void) {
    cv_index *idx = cv_index_new();
    cv_index_url_intern(idx, (const uint8_t *)"u", 1);
    CHECK_EQ(cv_index_put_inline(idx, (const uint8_t *)"meta/.zarray", 12,
                                 (const uint8_t *)"{\"chunks\": [4]}", 15), CV_OK);
    CHECK_EQ(cv_index_put(idx, (const uint8_t *)"v/0", 3, 0, 10, 20), CV_OK);
    CHECK_EQ(cv_index_shrink(idx), CV_OK); /* frozen */
    size_t cursor = 0;
    const uint8_t *k;
    size_t kl;
    cv_ref r;
    CHECK_EQ(cv_index_next(idx, &cursor, &k, &kl, &r), CV_OK);
    const uint8_t *d;
    size_t dl;
    CHECK_EQ(cv_index_inline(idx, &r, &d, &dl), CV_OK);
    CHECK_EQ(cv_index_put_inline(idx, k, kl, d, dl), CV_OK); /* same key, its own bytes */
    CHECK_EQ(cv_index_shrink(idx), CV_OK);
    cursor = 0;
    CHECK_EQ(cv_index_next(idx, &cursor, &k, &kl, &r), CV_OK);
    CHECK_EQ(cv_index_inline(idx, &r, &d, &dl), CV_OK);
    CHECK_EQ(cv_index_put_inline(idx, (const uint8_t *)"copy", 4, d, dl), CV_OK);
    CHECK_EQ(cv_index_get(idx, (const uint8_t *)"copy", 4, &r), CV_OK);
    CHECK_EQ(cv_index_inline(idx, &r, &d, &dl), CV_OK);
    CHECK(dl == 15 && memcmp(d, "{\"chunks\": [4]}", 15) == 0);
    CHECK_EQ(cv_index_len(idx), 3);
    cv_index_free(idx);
}

static void test_xxh64(void) {
    /* reference values from the xxhash package (xxh64_intdigest) */
    CHECK_EQ(cv_xxh64((const uint8_t *)"", 0, 0), 0xEF46DB3751D8E999ULL);
    CHECK_EQ(cv_xxh64((const uint8_t *)"abc", 3, 0), 4952883123889572249ULL);
}

/* nb of a frozen index of n keys, read from its native header */
static uint64_t frozen_nb(size_t n) {
    cv_index *idx = cv_index_new();
    cv_index_url_intern(idx, (const uint8_t *)"u", 1);
    char key[32];
    for (size_t i = 0; i < n; i++) {
        int kl = snprintf(key, sizeof key, "probe/%zu", i);
        cv_index_put(idx, (uint8_t *)key, (size_t)kl, 0, 1, 1);
    }
    int64_t sz = cv_index_serialized_size(idx);
    uint8_t *buf = malloc((size_t)sz);
    cv_index_serialize(idx, buf, (size_t)sz);
    uint64_t nb = cv_load64le(buf + 32);
    free(buf);
    cv_index_free(idx);
    return nb;
}

/* Serialize, reopen (borrowed), check every key of keys[0..n) maps to offset i, and return the
 * header's record offset width. */
static uint64_t roundtrip_ow(cv_index *idx, char keys[][32], size_t n) {
    uint8_t *buf;
    cv_index *j = reopen(idx, 0, &buf);
    uint64_t ow = cv_load64le(buf + 72);
    if (j) {
        CHECK_EQ(cv_index_check(j), CV_OK);
        for (size_t i = 0; i < n; i++) {
            cv_ref r;
            CHECK_EQ(cv_index_get(j, (uint8_t *)keys[i], strlen(keys[i]), &r), CV_OK);
            if (r.url != CV_URL_INLINE) CHECK_EQ(r.offset, i);
        }
        cv_index_free(j);
    }
    free(buf);
    return ow;
}

/* Frozen buckets: a bucket of more records than one 8-byte word of fingerprints, keys sharing a
 * fingerprint in one bucket, absent keys with a matching fingerprint; record offsets 1, 2 and 4
 * bytes wide; the same through the batch lookup and after a native round trip. */
static void test_bucket_layout(void) {
    enum { N = 40, CROWD = 12 }; /* 12 records of 16 bytes: offsets fit a byte */
    uint64_t nb = frozen_nb(N);
    static char keys[N][32];
    char miss[4][32];
    size_t crowd = 0, rest = 0, nmiss = 0, twins = 0;
    uint8_t fp0 = 0;
    for (uint64_t t = 0; crowd < CROWD || rest < N - CROWD || nmiss < 4; t++) {
        char k[32];
        snprintf(k, sizeof k, "k/%llu", (unsigned long long)t);
        uint64_t h = cv_keyhash((uint8_t *)k, strlen(k));
        uint64_t b = ((h & 0xFFFFFFFFu) * nb) >> 32;
        uint8_t fp = (uint8_t)(h >> 32);
        if (b == 0 && crowd == 0) fp0 = fp;
        if (b == 0 && crowd < CROWD && (fp == fp0 ? twins < 3 : crowd - twins < CROWD - 3)) {
            twins += fp == fp0;
            memcpy(keys[crowd++], k, sizeof k);
        } else if (b == 0 && fp == fp0 && nmiss < 4) {
            memcpy(miss[nmiss++], k, sizeof k); /* same bucket and fingerprint, never inserted */
        } else if (b != 0 && rest < N - CROWD) {
            memcpy(keys[CROWD + rest++], k, sizeof k);
        }
    }
    CHECK_EQ(twins, 3);
    cv_index *idx = cv_index_new();
    cv_index_url_intern(idx, (const uint8_t *)"u", 1);
    for (size_t i = 0; i < N; i++)
        CHECK_EQ(cv_index_put(idx, (uint8_t *)keys[i], strlen(keys[i]), 0, i, 1), CV_OK);
    CHECK_EQ(cv_index_shrink(idx), CV_OK);
    CHECK_EQ(cv_index_check(idx), CV_OK);
    const uint8_t *kp[N + 4];
    size_t kl[N + 4];
    int64_t ids[N + 4];
    uint64_t offs[N + 4], lens[N + 4];
    for (size_t i = 0; i < N + 4; i++) {
        kp[i] = (const uint8_t *)(i < N ? keys[i] : miss[i - N]);
        kl[i] = strlen((const char *)kp[i]);
        cv_ref r;
        CHECK_EQ(cv_index_get(idx, kp[i], kl[i], &r), i < N ? CV_OK : CV_ENOTFOUND);
        if (i < N) CHECK_EQ(r.offset, i);
    }
    CHECK_EQ(cv_index_get_many(idx, N + 4, kp, kl, ids, offs, lens), N);
    for (size_t i = 0; i < N + 4; i++) {
        CHECK_EQ(ids[i], i < N ? 0 : CV_ID_MISSING);
        CHECK_EQ(offs[i], i < N ? i : 0);
    }
    CHECK_EQ(roundtrip_ow(idx, keys, N), 1);
    /* inline values widen the offsets: 300 bytes each crowd the bucket past 255 bytes, then
     * one of 70000 bytes past 65535 */
    uint8_t *big = calloc(70000, 1);
    for (size_t i = 0; i < 3; i++)
        CHECK_EQ(cv_index_put_inline(idx, (uint8_t *)keys[i], strlen(keys[i]), big, 300), CV_OK);
    CHECK_EQ(roundtrip_ow(idx, keys, N), 2);
    CHECK_EQ(cv_index_put_inline(idx, (uint8_t *)keys[0], strlen(keys[0]), big, 70000), CV_OK);
    CHECK_EQ(roundtrip_ow(idx, keys, N), 4);
    cv_ref r;
    CHECK_EQ(cv_index_get(idx, (uint8_t *)keys[0], strlen(keys[0]), &r), CV_OK);
    CHECK(r.url == CV_URL_INLINE && r.length == 70000);
    free(big);
    cv_index_free(idx);
}

int main(void) {
    test_xxh64();
    test_basic();
    test_url_widening();
    test_batch();
    test_keyhash_spread();
    test_aliased_inputs();
    test_order_model();
    test_open_corrupt_fuzz();
    test_bucket_layout();
    CVT_DONE("test_index");
}
