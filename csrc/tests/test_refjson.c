/* Tests for cv_refjson: kerchunk reference JSON (spec v0 and v1) parsed into a cv_index. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cv_index.h"
#include "cv_refjson.h"
#include "cvtest.h"

/* ---------------------------------------------------------------- helpers */

typedef struct parsed {
    cv_index *idx;
    cv_refjson_result res;
    int st;
    uint8_t *buf; /* exact-size copy of the document, so ASan sees any read past its end */
    size_t len;
} parsed;

static parsed parse_n(const void *doc, size_t len) {
    parsed p;
    memset(&p, 0, sizeof p);
    p.idx = cv_index_new();
    p.buf = malloc(len ? len : 1);
    if (len) memcpy(p.buf, doc, len);
    p.len = len;
    p.st = cv_refjson_parse(p.idx, p.buf, len, &p.res);
    return p;
}

static parsed parse_s(const char *doc) { return parse_n(doc, strlen(doc)); }

static void done(parsed *p) {
    cv_refjson_result_free(&p->res);
    cv_index_free(p->idx);
    free(p->buf);
}

/* The reference of key (k, klen). */
static int get(parsed *p, const char *k, size_t klen, cv_ref *r) {
    return cv_index_get(p->idx, (const uint8_t *)k, klen, r);
}

/* Key k holds inline bytes (d, dlen). */
static int has_inline(parsed *p, const char *k, size_t klen, const char *d, size_t dlen) {
    cv_ref r;
    const uint8_t *data;
    size_t n;
    if (get(p, k, klen, &r) != CV_OK || r.url != CV_URL_INLINE) return 0;
    if (cv_index_inline(p->idx, &r, &data, &n) != CV_OK) return 0;
    return n == dlen && (dlen == 0 || memcmp(data, d, dlen) == 0);
}
#define HAS_INLINE(p, k, d) has_inline((p), (k), strlen(k), (d), strlen(d))

/* Key k references (url, off, len). */
static int has_range(parsed *p, const char *k, const char *url, uint64_t off, uint64_t len) {
    cv_ref r;
    const uint8_t *u;
    size_t un;
    if (get(p, k, strlen(k), &r) != CV_OK || r.url == CV_URL_INLINE) return 0;
    if (cv_index_url_get(p->idx, r.url, &u, &un) != CV_OK) return 0;
    return un == strlen(url) && memcmp(u, url, un) == 0 && r.offset == off && r.length == len;
}

static int span_is(const parsed *p, cv_span s, const char *text) {
    return s.len == strlen(text) && memcmp(p->buf + s.start, text, s.len) == 0;
}

/* ---------------------------------------------------------------- valid documents */

static void test_v0(void) {
    parsed p = parse_s(
        "{\"a\": \"hello\", \"b\": [\"s3://x/y\", 10, 20], \"c\": [\"file:///w\"],\n"
        " \"d\": [null, 1, 2], \"e\": \"base64:aGVsbG8=\", \".zattrs\": {\"x\": [1, 2.5e3, null]},"
        " \"templates\": \"t\", \"refs\": [\"s3://x/y\", 0, 0], \"gen\": {}}");
    CHECK_EQ(p.st, CV_OK);
    CHECK_EQ(p.res.version, 0);
    CHECK(HAS_INLINE(&p, "a", "hello"));
    CHECK(has_range(&p, "b", "s3://x/y", 10, 20));
    CHECK(has_range(&p, "c", "file:///w", 0, CV_LEN_WHOLE));
    CHECK(has_range(&p, "d", "", 1, 2));
    CHECK(HAS_INLINE(&p, "e", "hello"));
    /* in v0 "templates", "refs" and "gen" are ordinary references */
    CHECK(HAS_INLINE(&p, "templates", "t"));
    CHECK(has_range(&p, "refs", "s3://x/y", 0, 0));
    CHECK_EQ(p.res.templates.len, 0);
    CHECK_EQ(p.res.gen.len, 0);
    CHECK_EQ(cv_index_url_count(p.idx), 3);
    CHECK_EQ(p.res.nrefs, 9);
    CHECK_EQ(cv_index_len(p.idx), 9);
    CHECK_EQ(p.res.ndeferred, 2);
    if (p.res.ndeferred == 2) {
        CHECK(span_is(&p, p.res.deferred[0], "\".zattrs\""));
        CHECK(span_is(&p, p.res.deferred[1], "{\"x\": [1, 2.5e3, null]}"));
        CHECK(span_is(&p, p.res.deferred[2], "\"gen\""));
        CHECK(span_is(&p, p.res.deferred[3], "{}"));
    }
    /* placeholder until Python replaces it */
    CHECK(HAS_INLINE(&p, ".zattrs", "{\"x\": [1, 2.5e3, null]}"));
    done(&p);

    p = parse_s("{}");
    CHECK_EQ(p.st, CV_OK);
    CHECK_EQ(p.res.version, 0);
    CHECK_EQ(cv_index_len(p.idx), 0);
    done(&p);

    /* BOM and surrounding whitespace */
    p = parse_s("\xEF\xBB\xBF \r\n\t{ \"a\" : [ \"u\" , 1 , 2 ] } \n\r\t ");
    CHECK_EQ(p.st, CV_OK);
    CHECK(has_range(&p, "a", "u", 1, 2));
    done(&p);
}

static void test_v1(void) {
    parsed p = parse_s(
        "{\"version\": 1, \"templates\": {\"u\": \"s3://b/f.nc\"}, \"gen\": [],\n"
        " \"refs\": {\".zgroup\": \"{\\\"zarr_format\\\":2}\", \"v/0.0\": [\"{{u}}\", 1000, 4096],"
        " \"v/0.1\": [\"{{u}}\", 5096, 4096], \"w/0\": [\"s3://{{x}}/{{ y }}\"],"
        " \"z\": [null], \"o\": {\"a\": {\"b\": []}}},\n"
        " \"other\": [1, 2, {\"a\": null, \"b\": true, \"c\": false, \"d\": -1.5E-7}]}");
    CHECK_EQ(p.st, CV_OK);
    CHECK_EQ(p.res.version, 1);
    CHECK(span_is(&p, p.res.templates, "{\"u\": \"s3://b/f.nc\"}"));
    CHECK(span_is(&p, p.res.gen, "[]"));
    CHECK(HAS_INLINE(&p, ".zgroup", "{\"zarr_format\":2}"));
    CHECK(has_range(&p, "v/0.0", "{{u}}", 1000, 4096));
    CHECK(has_range(&p, "v/0.1", "{{u}}", 5096, 4096));
    CHECK(has_range(&p, "w/0", "s3://{{x}}/{{ y }}", 0, CV_LEN_WHOLE));
    CHECK(has_range(&p, "z", "", 0, CV_LEN_WHOLE));
    CHECK_EQ(cv_index_url_count(p.idx), 3);
    CHECK_EQ(cv_index_len(p.idx), 6);
    CHECK_EQ(p.res.nrefs, 6);
    CHECK_EQ(p.res.ndeferred, 1);
    if (p.res.ndeferred == 1) {
        CHECK(span_is(&p, p.res.deferred[0], "\"o\""));
        CHECK(span_is(&p, p.res.deferred[1], "{\"a\": {\"b\": []}}"));
    }
    cv_ref r;
    CHECK_EQ(get(&p, "version", 7, &r), CV_ENOTFOUND);
    CHECK_EQ(get(&p, "refs", 4, &r), CV_ENOTFOUND);
    CHECK_EQ(get(&p, "other", 5, &r), CV_ENOTFOUND);
    done(&p);

    /* no refs at all */
    p = parse_s("{\"version\":1}");
    CHECK_EQ(p.st, CV_OK);
    CHECK_EQ(p.res.version, 1);
    CHECK_EQ(cv_index_len(p.idx), 0);
    done(&p);
    p = parse_s("{\"version\":1,\"refs\":{}}");
    CHECK_EQ(p.st, CV_OK);
    CHECK_EQ(cv_index_len(p.idx), 0);
    done(&p);
}

static void test_version_order(void) {
    /* "version" after "refs": found by the validating pass */
    parsed p = parse_s("{\"refs\": {\"a\": [\"u\", 1, 2], \"b\": \"x\"}, \"gen\": [1],"
                       " \"templates\": {}, \"version\": 1}");
    CHECK_EQ(p.st, CV_OK);
    CHECK_EQ(p.res.version, 1);
    CHECK(has_range(&p, "a", "u", 1, 2));
    CHECK(HAS_INLINE(&p, "b", "x"));
    CHECK_EQ(cv_index_len(p.idx), 2);
    CHECK(span_is(&p, p.res.gen, "[1]"));
    CHECK(span_is(&p, p.res.templates, "{}"));
    done(&p);

    /* an escaped spelling of "version" is still "version" */
    p = parse_s("{\"refs\": {\"a\": [\"u\"]}, \"versio\\u006e\": 1}");
    CHECK_EQ(p.st, CV_OK);
    CHECK_EQ(p.res.version, 1);
    CHECK(has_range(&p, "a", "u", 0, CV_LEN_WHOLE));
    done(&p);
    p = parse_s("{\"\\u0076ersion\": 1, \"refs\": {\"a\": [\"u\"]}}");
    CHECK_EQ(p.st, CV_OK);
    CHECK_EQ(p.res.version, 1);
    CHECK_EQ(cv_index_len(p.idx), 1);
    done(&p);

    /* last "version" wins, as in json.loads */
    p = parse_s("{\"version\": 2, \"refs\": {\"a\": [\"u\"]}, \"version\": 1}");
    CHECK_EQ(p.st, CV_OK);
    CHECK_EQ(p.res.version, 1);
    done(&p);
    p = parse_s("{\"version\": 1, \"refs\": {\"a\": [\"u\"]}, \"version\": 2, \"version\": 1}");
    CHECK_EQ(p.st, CV_OK);
    done(&p);
    p = parse_s("{\"version\": 1, \"refs\": {\"a\": [\"u\"]}, \"version\": 2}");
    CHECK_EQ(p.st, CV_EVERSION);
    CHECK_EQ(p.res.err_pos, strlen("{\"version\": 1, \"refs\": {\"a\": [\"u\"]}, \"version\": "));
    done(&p);

    const char *bad[] = {"{\"version\": 2}", "{\"version\": 0, \"refs\": {}}",
                         "{\"version\": \"1\"}", "{\"version\": 1.0}", "{\"version\": 1e0}",
                         "{\"version\": true}", "{\"version\": null}", "{\"version\": [1]}",
                         "{\"refs\": {}, \"version\": 10}", "{\"a\": \"b\", \"version\": -1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = parse_s(bad[i]);
        CHECK_EQ(p.st, CV_EVERSION);
        CHECK_EQ(p.res.err_pos, (size_t)(strstr(bad[i], "\"version\": ") - bad[i]) + 11);
        CHECK(p.res.err_msg != NULL);
        CHECK_EQ(p.res.err_key.len, 0);
        done(&p);
    }
    /* syntax errors anywhere win over a bad version */
    p = parse_s("{\"version\": 2, \"x\": [1,]}");
    CHECK_EQ(p.st, CV_EFORMAT);
    done(&p);
}

static void test_duplicates(void) {
    parsed p = parse_s("{\"a\": [\"u\", 1, 2], \"b\": \"x\", \"a\": \"y\", \"b\": [\"v\"]}");
    CHECK_EQ(p.st, CV_OK);
    CHECK(HAS_INLINE(&p, "a", "y"));
    CHECK(has_range(&p, "b", "v", 0, CV_LEN_WHOLE));
    CHECK_EQ(cv_index_len(p.idx), 2);
    CHECK_EQ(p.res.nrefs, 4);
    done(&p);

    /* deferred, then overridden: no longer deferred */
    p = parse_s("{\"a\": {\"x\": 1}, \"a\": \"s\"}");
    CHECK_EQ(p.st, CV_OK);
    CHECK(HAS_INLINE(&p, "a", "s"));
    CHECK_EQ(p.res.ndeferred, 0);
    CHECK(p.res.deferred == NULL);
    done(&p);
    p = parse_s("{\"version\":1,\"refs\":{\"a\": \"s\", \"a\": {\"x\": 1}}}");
    CHECK_EQ(p.st, CV_OK);
    CHECK_EQ(p.res.ndeferred, 1);
    if (p.res.ndeferred == 1) CHECK(span_is(&p, p.res.deferred[1], "{\"x\": 1}"));
    done(&p);
    p = parse_s("{\"a\": {\"x\": 1}, \"b\": {}, \"a\": {\"y\": 2}, \"c\": [\"u\"]}");
    CHECK_EQ(p.st, CV_OK);
    CHECK_EQ(p.res.ndeferred, 2);
    if (p.res.ndeferred == 2) {
        CHECK(span_is(&p, p.res.deferred[0], "\"b\""));
        CHECK(span_is(&p, p.res.deferred[2], "\"a\""));
        CHECK(span_is(&p, p.res.deferred[3], "{\"y\": 2}"));
    }
    done(&p);
    /* escaped and plain spellings of one key are the same key */
    p = parse_s("{\"\\u0061\": {\"x\": 1}, \"a\": [\"u\"]}");
    CHECK_EQ(p.st, CV_OK);
    CHECK_EQ(p.res.ndeferred, 0);
    CHECK_EQ(cv_index_len(p.idx), 1);
    done(&p);

    /* several "refs": the last one wins, in the one-pass path and in the two-pass path */
    const char *docs[] = {
        "{\"version\":1,\"refs\":{\"a\":[\"u\",1,2],\"b\":\"x\",\"d\":{\"q\":1}},"
        "\"refs\":{\"b\":\"y\",\"c\":[\"v\"]}}",
        "{\"refs\":{\"a\":[\"u\",1,2],\"b\":\"x\",\"d\":{\"q\":1}},"
        "\"refs\":{\"b\":\"y\",\"c\":[\"v\"]},\"version\":1}",
    };
    for (int i = 0; i < 2; i++) {
        p = parse_s(docs[i]);
        CHECK_EQ(p.st, CV_OK);
        cv_ref r;
        CHECK_EQ(get(&p, "a", 1, &r), CV_ENOTFOUND);
        CHECK_EQ(get(&p, "d", 1, &r), CV_ENOTFOUND);
        CHECK(HAS_INLINE(&p, "b", "y"));
        CHECK(has_range(&p, "c", "v", 0, CV_LEN_WHOLE));
        CHECK_EQ(cv_index_len(p.idx), 2);
        CHECK_EQ(p.res.nrefs, 2);
        CHECK_EQ(p.res.ndeferred, 0);
        done(&p);
    }
    /* several "templates" / "gen": the last one wins */
    p = parse_s("{\"version\":1,\"templates\":{\"a\":1},\"gen\":[],\"templates\":{\"b\":2},"
                "\"gen\":[1]}");
    CHECK_EQ(p.st, CV_OK);
    CHECK(span_is(&p, p.res.templates, "{\"b\":2}"));
    CHECK(span_is(&p, p.res.gen, "[1]"));
    done(&p);
}

static void test_strings(void) {
    /* escapes in keys and values, \u0000 in a key, surrogate pairs, raw UTF-8 */
    static const char doc[] =
        "{\"a\\u0000b\": \"nul\", \"a\": \"plain\", "
        "\"\\u00e9\\ud83d\\ude00\": \"line\\nnext\\t\\\"q\\\"\\\\\\/\\b\\f\\r\", "
        "\"\xc3\xa9\xf0\x9f\x98\x80\": \"\\u0041\\u00DF\\u20ac\\uD834\\uDD1E\", "
        "\"k\": \"a\\u0000z\", \"long\": \"0123456789abcdefghijklmnopqrstuvwxyz\\n"
        "0123456789abcdefghijklmnopqrstuvwxyz\\u00e9\xc3\xa9 0123456789abcdef\"}";
    parsed p = parse_n(doc, sizeof doc - 1);
    CHECK_EQ(p.st, CV_OK);
    CHECK(has_inline(&p, "a\0b", 3, "nul", 3));
    CHECK(HAS_INLINE(&p, "a", "plain"));
    CHECK(HAS_INLINE(&p, "\xc3\xa9\xf0\x9f\x98\x80", "A\xc3\x9f\xe2\x82\xac\xf0\x9d\x84\x9e"));
    CHECK(has_inline(&p, "k", 1, "a\0z", 3));
    CHECK(HAS_INLINE(&p, "long", "0123456789abcdefghijklmnopqrstuvwxyz\n"
                                 "0123456789abcdefghijklmnopqrstuvwxyz\xc3\xa9\xc3\xa9 "
                                 "0123456789abcdef"));
    CHECK_EQ(cv_index_len(p.idx), 5); /* "\u00e9\ud83d\ude00" and the raw UTF-8 key are equal */
    done(&p);
    p = parse_s("{\"\\u00e9\\ud83d\\ude00\": \"line\\nnext\\t\\\"q\\\"\\\\\\/\\b\\f\\r\"}");
    CHECK_EQ(p.st, CV_OK);
    CHECK(HAS_INLINE(&p, "\xc3\xa9\xf0\x9f\x98\x80", "line\nnext\t\"q\"\\/\b\f\r"));
    done(&p);
    /* escaped url */
    p = parse_s("{\"a\": [\"s3://b/\\u00e9{{u}}\\/x\", 0, 1]}");
    CHECK_EQ(p.st, CV_OK);
    CHECK(has_range(&p, "a", "s3://b/\xc3\xa9{{u}}/x", 0, 1));
    done(&p);
    /* empty key and empty value */
    p = parse_s("{\"\": \"\"}");
    CHECK_EQ(p.st, CV_OK);
    CHECK(has_inline(&p, "", 0, "", 0));
    done(&p);
}

static void test_base64(void) {
    parsed p = parse_s("{\"a\": \"base64:aGVsbG8=\", \"b\": \"base64:aGVsbG8\", \"c\": \"base64:\","
                       " \"d\": \"base64:aGk=\", \"e\": \"base64:aGk\", \"f\": \"base64:aA==\","
                       " \"g\": \"base64:aA\", \"h\": \"base64:aGVsbG8\\u003d\","
                       " \"i\": \"base64:+/+/\", \"j\": \"base64\", \"k\": \"Base64:aGk=\"}");
    CHECK_EQ(p.st, CV_OK);
    CHECK(HAS_INLINE(&p, "a", "hello"));
    CHECK(HAS_INLINE(&p, "b", "hello"));
    CHECK(HAS_INLINE(&p, "c", ""));
    CHECK(HAS_INLINE(&p, "d", "hi"));
    CHECK(HAS_INLINE(&p, "e", "hi"));
    CHECK(HAS_INLINE(&p, "f", "h"));
    CHECK(HAS_INLINE(&p, "g", "h"));
    CHECK(HAS_INLINE(&p, "h", "hello"));
    CHECK(HAS_INLINE(&p, "i", "\xfb\xff\xbf"));
    CHECK(HAS_INLINE(&p, "j", "base64"));
    CHECK(HAS_INLINE(&p, "k", "Base64:aGk="));
    done(&p);
    /* a longer payload, every byte value */
    {
        static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        uint8_t raw[256];
        char doc[512];
        size_t n = 0;
        for (int i = 0; i < 256; i++) raw[i] = (uint8_t)i;
        n += (size_t)sprintf(doc, "{\"x\": \"base64:");
        for (int i = 0; i < 256; i += 3) {
            uint32_t v = (uint32_t)raw[i] << 16;
            int m = 256 - i < 3 ? 256 - i : 3;
            if (m > 1) v |= (uint32_t)raw[i + 1] << 8;
            if (m > 2) v |= raw[i + 2];
            doc[n++] = al[(v >> 18) & 63];
            doc[n++] = al[(v >> 12) & 63];
            doc[n++] = m > 1 ? al[(v >> 6) & 63] : '=';
            doc[n++] = m > 2 ? al[v & 63] : '=';
        }
        n += (size_t)sprintf(doc + n, "\"}");
        p = parse_n(doc, n);
        CHECK_EQ(p.st, CV_OK);
        CHECK(has_inline(&p, "x", 1, (const char *)raw, 256));
        done(&p);
    }
    const char *bad[] = {"{\"a\": \"base64:a\"}",        "{\"a\": \"base64:aGVs*G8=\"}",
                         "{\"a\": \"base64:aG=\"}",      "{\"a\": \"base64:aGk==\"}",
                         "{\"a\": \"base64:a===\"}",     "{\"a\": \"base64:aG==aG==\"}",
                         "{\"a\": \"base64:aG k=\"}",    "{\"a\": \"base64:aGk\\n\"}",
                         "{\"a\": \"base64:aGVsbG8-_\"}", "{\"a\": \"base64:====\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = parse_s(bad[i]);
        CHECK_EQ(p.st, CV_EFORMAT);
        CHECK_EQ(p.res.err_pos, 6);
        CHECK_EQ(p.res.err_key.start, 1);
        CHECK_EQ(p.res.err_key.len, 3);
        done(&p);
    }
}

static void test_numbers(void) {
    parsed p = parse_s("{\"a\": [\"u\", 0, 0], \"b\": [\"u\", -0, 7], \"c\": [\"u\", "
                       "18446744073709551615, 0], \"d\": [\"u\", 0, 18446744073709551614], "
                       "\"e\": [\"u\", 9223372036854775807, 9223372036854775807], "
                       "\"f\": [\"u\", 12345678901234567890, 1]}");
    CHECK_EQ(p.st, CV_OK);
    CHECK(has_range(&p, "a", "u", 0, 0));
    CHECK(has_range(&p, "b", "u", 0, 7));
    CHECK(has_range(&p, "c", "u", UINT64_MAX, 0));
    CHECK(has_range(&p, "d", "u", 0, UINT64_MAX - 1));
    CHECK(has_range(&p, "e", "u", INT64_MAX, INT64_MAX));
    CHECK(has_range(&p, "f", "u", 12345678901234567890ull, 1));
    done(&p);

    struct {
        const char *val;
        int st;
    } cases[] = {
        {"[\"u\", -1, 2]", CV_ERANGE},
        {"[\"u\", 1, -2]", CV_ERANGE},
        {"[\"u\", -18446744073709551616, 2]", CV_ERANGE},
        {"[\"u\", 18446744073709551616, 2]", CV_ERANGE},
        {"[\"u\", 99999999999999999999999, 2]", CV_ERANGE},
        {"[\"u\", 1, 18446744073709551616]", CV_ERANGE},
        {"[\"u\", 0, 18446744073709551615]", CV_ERANGE},
        {"[\"u\", 18446744073709551615, 1]", CV_ERANGE},
        {"[\"u\", 9223372036854775808, 9223372036854775808]", CV_ERANGE},
        {"[\"u\", 1.5, 2]", CV_EFORMAT},
        {"[\"u\", 1.0, 2]", CV_EFORMAT},
        {"[\"u\", 1e3, 2]", CV_EFORMAT},
        {"[\"u\", 1E+3, 2]", CV_EFORMAT},
        {"[\"u\", 1, 2e0]", CV_EFORMAT},
        {"[\"u\", -1.5, 2]", CV_EFORMAT},
        {"[\"u\", \"1\", 2]", CV_EFORMAT},
        {"[\"u\", 1, null]", CV_EFORMAT},
        {"[\"u\", true, 2]", CV_EFORMAT},
        {"[\"u\", [1], 2]", CV_EFORMAT},
        {"[\"u\", 01, 2]", CV_EFORMAT},
        {"[\"u\", 1, 02]", CV_EFORMAT},
        {"[\"u\", -, 2]", CV_EFORMAT},
        {"[\"u\", +1, 2]", CV_EFORMAT},
        {"[\"u\", 1., 2]", CV_EFORMAT},
        {"[\"u\", .5, 2]", CV_EFORMAT},
        {"[\"u\", 1, 2, 3]", CV_EFORMAT},
        {"[\"u\", 1]", CV_EFORMAT},
        {"[\"u\", 1, ]", CV_EFORMAT},
        {"[\"u\", ]", CV_EFORMAT},
        {"[\"u\" 1, 2]", CV_EFORMAT},
        {"[\"u\", 1 2]", CV_EFORMAT},
        {"[]", CV_EFORMAT},
        {"[1, 2, 3]", CV_EFORMAT},
        {"[[\"u\"]]", CV_EFORMAT},
        {"[{\"u\": 1}]", CV_EFORMAT},
        {"[true]", CV_EFORMAT},
        {"[nul]", CV_EFORMAT},
        {"1", CV_EFORMAT},
        {"-1", CV_EFORMAT},
        {"true", CV_EFORMAT},
        {"false", CV_EFORMAT},
        {"null", CV_EFORMAT},
    };
    char doc[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int v = 0; v < 2; v++) {
            int n = snprintf(doc, sizeof doc, v ? "{\"version\": 1, \"refs\": {\"k\\n\": %s}}"
                                                : "{\"k\\n\": %s}",
                             cases[i].val);
            p = parse_n(doc, (size_t)n);
            CHECK_EQ(p.st, cases[i].st);
            if (p.st != cases[i].st) fprintf(stderr, "  case %s -> %d\n", doc, p.st);
            CHECK(p.res.err_msg != NULL);
            CHECK(p.res.err_pos >= (size_t)(strchr(doc + 2, ':') - doc));
            CHECK(p.res.err_pos < (size_t)n);
            /* the error names the key token */
            CHECK(span_is(&p, p.res.err_key, "\"k\\n\""));
            CHECK(p.res.deferred == NULL && p.res.ndeferred == 0);
            done(&p);
        }
    }
    /* error positions */
    p = parse_s("{\"a\":[\"u\",-1,2]}");
    CHECK_EQ(p.st, CV_ERANGE);
    CHECK_EQ(p.res.err_pos, 10);
    CHECK_EQ(p.res.err_key.start, 1);
    CHECK_EQ(p.res.err_key.len, 3);
    CHECK(strstr(p.res.err_msg, "offset") != NULL);
    done(&p);
    p = parse_s("{\"a\":[\"u\",1,2.5]}");
    CHECK_EQ(p.st, CV_EFORMAT);
    CHECK_EQ(p.res.err_pos, 12);
    CHECK(strstr(p.res.err_msg, "length") != NULL);
    done(&p);
}

static void test_utf8_errors(void) {
    struct {
        const char *doc;
        int st;
    } cases[] = {
        {"{\"\xc0\x80\": \"x\"}", CV_EUTF8},          /* overlong NUL */
        {"{\"\xc1\xbf\": \"x\"}", CV_EUTF8},          /* overlong */
        {"{\"\xe0\x80\xaf\": \"x\"}", CV_EUTF8},      /* overlong 3-byte */
        {"{\"\xf0\x80\x80\xaf\": \"x\"}", CV_EUTF8},  /* overlong 4-byte */
        {"{\"\xed\xa0\x80\": \"x\"}", CV_EUTF8},      /* encoded surrogate */
        {"{\"\xed\xbf\xbf\": \"x\"}", CV_EUTF8},      /* encoded surrogate */
        {"{\"\xf4\x90\x80\x80\": \"x\"}", CV_EUTF8},  /* > U+10FFFF */
        {"{\"\xf5\x80\x80\x80\": \"x\"}", CV_EUTF8},
        {"{\"\xff\": \"x\"}", CV_EUTF8},
        {"{\"\x80\": \"x\"}", CV_EUTF8},              /* lone continuation */
        {"{\"\xc3\": \"x\"}", CV_EUTF8},              /* missing continuation */
        {"{\"\xe2\x82\": \"x\"}", CV_EUTF8},
        {"{\"a\": \"\xc3\x28\"}", CV_EUTF8},          /* in a value */
        {"{\"a\": [\"\xfe\"]}", CV_EUTF8},            /* in a url */
        {"{\"version\": 1, \"x\": [\"\xff\"]}", CV_EUTF8}, /* in an ignored member */
        {"{\"\\ud800\": \"x\"}", CV_EUTF8},           /* lone surrogates */
        {"{\"\\udc00\": \"x\"}", CV_EUTF8},
        {"{\"\\udbff\\u0041\": \"x\"}", CV_EUTF8},
        {"{\"\\ud800\\ud800\": \"x\"}", CV_EUTF8},
        {"{\"\\ud800x\": \"x\"}", CV_EUTF8},
        {"{\"\\ud800\\n\": \"x\"}", CV_EUTF8},
        {"{\"a\": \"\\udfff\"}", CV_EUTF8},
        {"{\"a\": {\"b\": \"\\ud800\"}}", CV_EUTF8},
        {"{\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\xed\x9f\xbf\xee\x80\x80\": \"x\"}", CV_OK},
        {"{\"\\udbff\\udfff\": \"x\"}", CV_OK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        parsed p = parse_s(cases[i].doc);
        CHECK_EQ(p.st, cases[i].st);
        if (p.st != cases[i].st) fprintf(stderr, "  case %zu -> %d\n", i, p.st);
        done(&p);
    }
    parsed p = parse_s("{\"ok\": \"x\", \"a\xff\": \"x\"}");
    CHECK_EQ(p.st, CV_EUTF8);
    CHECK_EQ(p.res.err_pos, 14);
    done(&p);
}

static void test_syntax_errors(void) {
    struct {
        const char *doc;
        int st;
    } cases[] = {
        {"", CV_ETRUNCATED},
        {" \n\t ", CV_ETRUNCATED},
        {"\xEF\xBB\xBF", CV_ETRUNCATED},
        {"\xEF\xBB", CV_ETRUNCATED},
        {"\xEF\xBB{}", CV_EFORMAT},
        {"{", CV_ETRUNCATED},
        {"[]", CV_EFORMAT},
        {"\"x\"", CV_EFORMAT},
        {"1", CV_EFORMAT},
        {"null", CV_EFORMAT},
        {"{\"a\":\"b\",}", CV_EFORMAT},
        {"{,}", CV_EFORMAT},
        {"{\"a\":\"b\"} x", CV_EFORMAT},
        {"{\"a\":\"b\"}{}", CV_EFORMAT},
        {"{\"a\":\"b\"}}", CV_EFORMAT},
        {"{/*c*/\"a\":\"b\"}", CV_EFORMAT},
        {"{\"a\":\"b\"//c\n}", CV_EFORMAT},
        {"{'a':\"b\"}", CV_EFORMAT},
        {"{\"a\":'b'}", CV_EFORMAT},
        {"{a:\"b\"}", CV_EFORMAT},
        {"{\"a\" \"b\"}", CV_EFORMAT},
        {"{\"a\":\"b\" \"c\":\"d\"}", CV_EFORMAT},
        {"{\"a\"::\"b\"}", CV_EFORMAT},
        {"{\"a\x01\":\"b\"}", CV_EFORMAT},
        {"{\"a\":\"b\tc\"}", CV_EFORMAT},
        {"{\"a\":\"b\x1f\"}", CV_EFORMAT},
        {"{\"\\x\":\"b\"}", CV_EFORMAT},
        {"{\"\\U0041\":\"b\"}", CV_EFORMAT},
        {"{\"\\u12G4\":\"b\"}", CV_EFORMAT},
        {"{\"\\u12\":\"b\"}", CV_EFORMAT},
        {"{\"a\":\"b\"\x0b}", CV_EFORMAT},  /* vertical tab is not JSON whitespace */
        {"\xc2\xa0{\"a\":\"b\"}", CV_EFORMAT},
        {"{\"version\":1,\"x\":NaN}", CV_EFORMAT},
        {"{\"version\":1,\"x\":Infinity}", CV_EFORMAT},
        {"{\"version\":1,\"x\":-Infinity}", CV_EFORMAT},
        {"{\"version\":1,\"x\":[1,]}", CV_EFORMAT},
        {"{\"version\":1,\"x\":[,1]}", CV_EFORMAT},
        {"{\"version\":1,\"x\":{\"a\":1,}}", CV_EFORMAT},
        {"{\"version\":1,\"x\":{\"a\"}}", CV_EFORMAT},
        {"{\"version\":1,\"x\":{1:2}}", CV_EFORMAT},
        {"{\"version\":1,\"x\":01}", CV_EFORMAT},
        {"{\"version\":1,\"x\":1.}", CV_EFORMAT},
        {"{\"version\":1,\"x\":.1}", CV_EFORMAT},
        {"{\"version\":1,\"x\":1e}", CV_EFORMAT},
        {"{\"version\":1,\"x\":1e+}", CV_EFORMAT},
        {"{\"version\":1,\"x\":-}", CV_EFORMAT},
        {"{\"version\":1,\"x\":+1}", CV_EFORMAT},
        {"{\"version\":1,\"x\":0x10}", CV_EFORMAT},
        {"{\"version\":1,\"x\":tru}", CV_EFORMAT},
        {"{\"version\":1,\"x\":truex}", CV_EFORMAT},
        {"{\"version\":1,\"x\":True}", CV_EFORMAT},
        {"{\"version\":1,\"x\":nul}", CV_EFORMAT},
        {"{\"version\":1,\"x\":[1 2]}", CV_EFORMAT},
        {"{\"version\":1,\"x\":[1:2]}", CV_EFORMAT},
        {"{\"version\":1,\"x\":{\"a\":1]}", CV_EFORMAT},
        {"{\"version\":1,\"x\":[1}}", CV_EFORMAT},
        {"{\"version\":1,\"refs\":[]}", CV_EFORMAT},
        {"{\"version\":1,\"refs\":\"x\"}", CV_EFORMAT},
        {"{\"version\":1,\"refs\":null}", CV_EFORMAT},
        {"{\"refs\":null, \"version\":1}", CV_EFORMAT},
        {"{\"version\":1,\"refs\":{\"a\":1}}", CV_EFORMAT},
        {"{\"version\":1,\"refs\":{\"a\":[\"u\"],}}", CV_EFORMAT},
        {"{\"version\":1,\"refs\":{\"a\":[\"u\"]},}", CV_EFORMAT},
        {"{\"version\":1,\"refs\":{\"a\":[\"u\"]}}}", CV_EFORMAT},
        {"{\"version\":1,\"x\":[1,2,3,{\"a\":[true,false,null,-0.0e-0,\"s\"]}]}", CV_OK},
        {"{\"version\":1,\"x\":-0.0E+00}", CV_OK},
        {"{\"a\":[\"u\"]}   \r\n", CV_OK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        parsed p = parse_s(cases[i].doc);
        CHECK_EQ(p.st, cases[i].st);
        if (p.st != cases[i].st) fprintf(stderr, "  case %zu %s -> %d\n", i, cases[i].doc, p.st);
        if (p.st < 0) {
            CHECK(p.res.err_msg != NULL);
            CHECK(p.res.err_pos <= p.len);
            CHECK(p.res.deferred == NULL);
        }
        done(&p);
    }
    parsed p = parse_s("{\"a\":\"b\"} x");
    CHECK_EQ(p.res.err_pos, 10);
    CHECK_EQ(p.res.err_key.len, 0);
    done(&p);
    p = parse_s("{\"version\":1,\"refs\":{\"k\":{\"a\":[1,]}}}");
    CHECK_EQ(p.st, CV_EFORMAT);
    CHECK_EQ(p.res.err_pos, 33);
    CHECK_EQ(p.res.err_key.start, 21);
    CHECK_EQ(p.res.err_key.len, 3);
    done(&p);

    /* NULL arguments */
    cv_refjson_result res;
    cv_index *idx = cv_index_new();
    CHECK_EQ(cv_refjson_parse(NULL, (const uint8_t *)"{}", 2, &res), CV_EINVAL);
    CHECK_EQ(cv_refjson_parse(idx, NULL, 2, &res), CV_EINVAL);
    CHECK_EQ(cv_refjson_parse(idx, (const uint8_t *)"{}", 2, NULL), CV_EINVAL);
    CHECK_EQ(cv_refjson_parse(idx, NULL, 0, &res), CV_ETRUNCATED);
    cv_refjson_result_free(&res);
    cv_refjson_result_free(NULL);
    cv_index_free(idx);
}

static void test_depth(void) {
    enum { N = 5000 };
    char *doc = malloc(8 * N + 64);
    if (!doc) {
        CHECK(doc != NULL);
        return;
    }
    int depths[] = {CV_REFJSON_MAX_DEPTH - 2, CV_REFJSON_MAX_DEPTH - 1, CV_REFJSON_MAX_DEPTH, N};
    for (int mode = 0; mode < 4; mode++) {
        for (int j = 0; j < 4; j++) {
            int d = depths[j], deepest;
            size_t n = 0;
            if (mode == 1) { /* v0: a deferred object value, d objects deep */
                n = (size_t)sprintf(doc, "{\"x\":");
                for (int i = 0; i < d; i++)
                    n += (size_t)sprintf(doc + n, i + 1 < d ? "{\"a\":" : "{");
                for (int i = 0; i < d; i++) doc[n++] = '}';
                deepest = 1 + d;
            } else if (mode == 2) { /* v1: inside "refs", a deferred object holding arrays */
                n = (size_t)sprintf(doc, "{\"version\":1,\"refs\":{\"k\":{\"a\":");
                for (int i = 1; i < d; i++) doc[n++] = '[';
                for (int i = 1; i < d; i++) doc[n++] = ']';
                doc[n++] = '}';
                doc[n++] = '}';
                deepest = 2 + d;
            } else { /* arrays in an ignored member, one-pass (0) and validating pass (3) */
                n = (size_t)sprintf(doc, mode == 0 ? "{\"version\":1,\"x\":"
                                                   : "{\"x\":1,\"version\":1,\"y\":");
                for (int i = 0; i < d; i++) doc[n++] = '[';
                for (int i = 0; i < d; i++) doc[n++] = ']';
                deepest = 1 + d;
            }
            doc[n++] = '}';
            int want = deepest <= CV_REFJSON_MAX_DEPTH ? CV_OK : CV_EFORMAT;
            parsed p = parse_n(doc, n);
            CHECK_EQ(p.st, want);
            if (p.st != want) fprintf(stderr, "  depth mode %d d %d -> %d\n", mode, d, p.st);
            if (p.st == CV_EFORMAT) CHECK(strstr(p.res.err_msg, "deep") != NULL);
            done(&p);
        }
    }
    free(doc);
}

/* Every proper prefix of a valid document is CV_ETRUNCATED at srclen; nothing is read past it. */
static void test_truncation(void) {
    static const char *docs[] = {
        "{\"version\": 1, \"templates\": {\"u\": \"s3://b/f\", \"w\": [1, -2.5e-3, true, false,"
        " null]}, \"gen\": [{\"key\": \"k/{{i}}\", \"url\": \"{{u}}\", \"dimensions\": {\"i\":"
        " {\"stop\": 3}}}], \"refs\": {\".zgroup\": \"{\\\"zarr_format\\\": 2}\", \"v/0\": "
        "[\"{{u}}\", 1000, 4096], \"v/1\": [null, 0, 18446744073709551614], \"w\": [\"f\"], "
        "\"b\": \"base64:aGVsbG8=\", \"\\u00e9\xc3\xa9\\ud83d\\ude00\xf0\x9f\x98\x80\": "
        "\"\\u0000x\\n\", \"o\": {\"a\": [{}, [], \"\\\"\"]}}, \"z\": -0}",
        ("{\"a\": \"hello\", \"b\": [\"s3://x/y\", 10, 20], \"c\": [\"file\"], \"d\": [null, 1, 2],"
         " \"e\": \"base64:aGk\", \".zattrs\": {\"x\": [1, 2.5E+3, null]}, \"\xe2\x82\xac\": \"\"}"),
        "{\"refs\": {\"a\": [\"u\", 1, 2], \"b\": \"x\"}, \"templates\": {}, \"version\": 1}",
        "\xEF\xBB\xBF{\"versio\\u006e\": 1,\"refs\":{\"a\":[\"u\",0,1]},\"refs\":{\"b\":[\"v\"]}}",
    };
    for (size_t d = 0; d < sizeof docs / sizeof docs[0]; d++) {
        size_t len = strlen(docs[d]);
        parsed p = parse_n(docs[d], len);
        CHECK_EQ(p.st, CV_OK);
        if (p.st)
            fprintf(stderr, "  doc %zu: %d at %zu: %s\n", d, p.st, p.res.err_pos, p.res.err_msg);
        done(&p);
        int bad = 0;
        for (size_t n = 0; n < len; n++) {
            p = parse_n(docs[d], n);
            if (p.st != CV_ETRUNCATED || p.res.err_pos != n || p.res.deferred) {
                if (bad++ < 5)
                    fprintf(stderr, "  doc %zu prefix %zu: %d at %zu: %s\n", d, n, p.st,
                            p.res.err_pos, p.res.err_msg);
            }
            done(&p);
        }
        CHECK_EQ(bad, 0);
    }
}

/* Random byte mutations of valid documents: must never crash, read out of bounds or leak
 * (ASan), and must either succeed or report an error with a message and a position. */
static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void test_fuzz(void) {
    static const char *seeds[] = {
        "{\"version\": 1, \"templates\": {\"u\": \"s3://b/f\"}, \"refs\": {\".zgroup\": "
        "\"{\\\"zarr_format\\\": 2}\", \"v/0\": [\"{{u}}\", 1000, 4096], \"v/1\": [null, 0, 1], "
        "\"w\": [\"f\"], \"b\": \"base64:aGVsbG8=\", \"\\u00e9\\ud83d\\ude00\": \"\\u0000x\", "
        "\"o\": {\"a\": [{}, [1.5e3], true]}}}",
        ("{\"a\": \"hello\", \"b\": [\"s3://x/y\", 10, 20], \"c\": [\"file\"], \"o\": {\"x\": []},"
         " \"version\": 1, \"refs\": {\"k\": \"base64:aGk\"}}"),
        "{\"a\": \"hello\", \"b\": [\"s3://x/y\", 10, 20], \"\xe2\x82\xac\": [null], \"o\": {}}",
    };
    static const char tokens[] = "{}[]\",:\\0123456789-+.eEtrufalsn u\x80\xc3\xed\xf4\xff";
    uint64_t s = 0x9E3779B97F4A7C15ull;
    int ok = 0, err = 0, bad = 0;
    uint8_t buf[512];
    for (int it = 0; it < 30000; it++) {
        const char *seed = seeds[it % 3];
        size_t n = strlen(seed);
        memcpy(buf, seed, n);
        int muts = 1 + (int)(rng_next(&s) % 4);
        for (int m = 0; m < muts; m++) {
            size_t pos = n ? (size_t)(rng_next(&s) % n) : 0;
            uint64_t kind = rng_next(&s) % 5;
            uint8_t c = (rng_next(&s) & 1) ? (uint8_t)tokens[rng_next(&s) % (sizeof tokens - 1)]
                                           : (uint8_t)rng_next(&s);
            if (kind == 0 && n) buf[pos] = c;                        /* replace */
            else if (kind == 1 && n) {                               /* delete */
                memmove(buf + pos, buf + pos + 1, n - pos - 1);
                n--;
            } else if (kind == 2 && n + 1 < sizeof buf) {            /* insert */
                memmove(buf + pos + 1, buf + pos, n - pos);
                buf[pos] = c;
                n++;
            } else if (kind == 3) {                                  /* truncate */
                n = pos;
            } else if (n) {                                          /* duplicate a span */
                size_t a = (size_t)(rng_next(&s) % n), l = (size_t)(rng_next(&s) % 16);
                if (a + l > n) l = n - a;
                if (n + l < sizeof buf) {
                    memmove(buf + pos + l, buf + pos, n - pos);
                    memmove(buf + pos, buf + (a >= pos ? a + l : a), l);
                    n += l;
                }
            }
        }
        parsed p = parse_n(buf, n);
        if (p.st == CV_OK) {
            ok++;
            for (size_t i = 0; i < 2 * p.res.ndeferred; i++)
                if (p.res.deferred[i].start + p.res.deferred[i].len > n) bad++;
        } else {
            err++;
            if (!p.res.err_msg || p.res.err_pos > n || p.res.deferred ||
                p.res.err_key.start + p.res.err_key.len > n)
                bad++;
            if (p.st != CV_EFORMAT && p.st != CV_ETRUNCATED && p.st != CV_EUTF8 &&
                p.st != CV_ERANGE && p.st != CV_EVERSION)
                bad++;
        }
        done(&p);
    }
    CHECK_EQ(bad, 0);
    CHECK(ok > 100);
    CHECK(err > 100);
    printf("fuzz: %d parsed, %d rejected\n", ok, err);
}

/* ---------------------------------------------------------------- speed smoke check */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_speed(void) {
    enum { N = 1000000 };
    size_t cap = (size_t)N * 48 + 256, n = 0;
    char *doc = malloc(cap);
    if (!doc) {
        CHECK(doc != NULL);
        return;
    }
    n += (size_t)sprintf(doc, "{\"version\": 1, \"templates\": {\"u\": \"s3://bucket/data.nc\"},"
                              " \"refs\": {\".zgroup\": \"{\\\"zarr_format\\\": 2}\"");
    for (int i = 0; i < N; i++)
        n += (size_t)sprintf(doc + n, ", \"v/%d\": [\"{{u}}\", %d, 4096]", i,
                             1000 + 4096 * (i % 100000));
    n += (size_t)sprintf(doc + n, "}}");
    for (int v = 0; v < 2; v++) {
        cv_index *idx = cv_index_new();
        cv_refjson_result res;
        double t0 = now();
        int st = cv_refjson_parse(idx, (const uint8_t *)doc, n, &res);
        double t1 = now();
        CHECK_EQ(st, CV_OK);
        CHECK_EQ(cv_index_len(idx), (size_t)N + 1);
        CHECK_EQ(res.nrefs, (size_t)N + 1);
        cv_ref r;
        CHECK_EQ(cv_index_get(idx, (const uint8_t *)"v/999999", 8, &r), CV_OK);
        CHECK_EQ(r.offset, 1000 + 4096 * (uint64_t)(999999 % 100000));
        CHECK_EQ(r.length, 4096);
        printf("speed: %s: %d refs, %.1f MB in %.3f s (%.0f MB/s)\n",
               v ? "v0 (validating pass + parse)" : "v1", N + 1, n / 1e6, t1 - t0,
               n / 1e6 / (t1 - t0));
        cv_refjson_result_free(&res);
        cv_index_free(idx);
        if (v == 0) {
            /* the same references as a v0 document (no "version": two passes) */
            const char *refs = strstr(doc, "\"refs\": {") + 8;
            size_t rl = (size_t)(doc + n - refs) - 1;
            memmove(doc, refs, rl);
            n = rl;
        }
    }
    free(doc);
}

int main(void) {
    test_v0();
    test_v1();
    test_version_order();
    test_duplicates();
    test_strings();
    test_base64();
    test_numbers();
    test_utf8_errors();
    test_syntax_errors();
    test_depth();
    test_truncation();
    test_fuzz();
    test_speed();
    CVT_DONE("test_refjson");
}
