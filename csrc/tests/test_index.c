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
        for (size_t i = 0; i < cv_index_nentries(idx); i++) {
            const uint8_t *k1, *k2;
            size_t l1, l2;
            cv_ref r1, r2;
            int s1 = cv_index_entry(idx, i, &k1, &l1, &r1);
            int s2 = cv_index_entry(j, i, &k2, &l2, &r2);
            CHECK_EQ(s1, s2);
            if (s1 == CV_OK) {
                CHECK(l1 == l2 && memcmp(k1, k2, l1) == 0);
                CHECK(r1.url == r2.url && r1.offset == r2.offset && r1.length == r2.length);
            }
        }
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
    uint32_t ou[3];
    uint64_t oo[3], ol[3];
    CHECK_EQ(cv_index_get_many(idx, 3, keys, kl, ou, oo, ol), 2);
    CHECK(ou[0] == 0 && oo[0] == 1 && ol[0] == 4);
    CHECK(ou[1] == 0 && oo[1] == 2 && ol[1] == 5);
    CHECK(ou[2] == CV_URL_MISSING);
    cv_index_free(idx);
}

static void test_xxh64(void) {
    /* reference values from the xxhash package (xxh64_intdigest) */
    CHECK_EQ(cv_xxh64((const uint8_t *)"", 0, 0), 0xEF46DB3751D8E999ULL);
    CHECK_EQ(cv_xxh64((const uint8_t *)"abc", 3, 0), 4952883123889572249ULL);
}

int main(void) {
    test_xxh64();
    test_basic();
    test_url_widening();
    test_batch();
    CVT_DONE("test_index");
}
