/* cv_refjson.c: see cv_refjson.h for the contract.
 *
 * Structure: a hand-written recursive-descent reader for the known shape (top-level object,
 * "refs" object, reference lists) and an iterative validating skipper for everything else.
 * Strings are scanned 16 (SSE2) or 8 (SWAR) bytes at a time for '"', '\\', control bytes and
 * non-ASCII bytes; strings without escapes are passed to the index as pointers into src, the
 * others are unescaped into one of two reusable scratch buffers (key, value).
 */
#include "cv_refjson.h"

#if !defined(CV_REFJSON_NO_SIMD) && \
    (defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2))
#include <emmintrin.h>
#define RJ_SSE2 1
#else
#define RJ_SSE2 0
#endif

#define RJ_RESERVE_SAMPLE 1024 /* references read before the index is pre-sized */

enum { SB_KEY = 0, SB_VAL = 1 };

typedef struct rj {
    const uint8_t *src, *end;
    cv_index *idx;
    cv_refjson_result *res;
    uint8_t *buf[2]; /* scratch for unescaped keys and values */
    size_t cap[2];
    uint8_t *ucache; /* last URL interned and its id (consecutive references share URLs) */
    size_t ucap, ulen;
    int64_t uid; /* < 0: cache empty */
    uint64_t *defoff; /* arena offset of each deferred entry's placeholder */
    size_t defcap;
    const uint8_t *ktok; /* raw key token of the reference being read, or NULL */
    size_t ktoklen;
} rj;

/* ---------------------------------------------------------------- errors */

static const char M_TRUNC[] = "unexpected end of input";
static const char M_NOTOBJ[] = "document must be a JSON object";
static const char M_KEY[] = "expected a string key";
static const char M_COLON[] = "expected ':'";
static const char M_OBJSEP[] = "expected ',' or '}'";
static const char M_ARRSEP[] = "expected ',' or ']'";
static const char M_VALUE[] = "expected a JSON value";
static const char M_TRAIL[] = "unexpected data after the JSON document";
static const char M_DEPTH[] = "nesting too deep";
static const char M_CTRL[] = "control character in string";
static const char M_ESC[] = "invalid escape in string";
static const char M_UESC[] = "invalid \\u escape in string";
static const char M_SURR[] = "lone surrogate in \\u escape";
static const char M_UTF8[] = "invalid UTF-8 in string";
static const char M_NUM[] = "invalid number";
static const char M_LIT[] = "invalid literal";
static const char M_VERSION[] = "unsupported reference spec version (must be 1)";
static const char M_REFSOBJ[] = "\"refs\" must be a JSON object";
static const char M_REFTYPE[] = "reference must be a string, a list or an object";
static const char M_ARITY[] = "reference list must have 1 or 3 items";
static const char M_URL[] = "reference url must be a string or null";
static const char M_OFFTYPE[] = "offset must be a non-negative integer";
static const char M_LENTYPE[] = "length must be a non-negative integer";
static const char M_OFFNEG[] = "offset must be non-negative";
static const char M_LENNEG[] = "length must be non-negative";
static const char M_OFFBIG[] = "offset does not fit in 64 bits";
static const char M_LENBIG[] = "length does not fit in 64 bits";
static const char M_SUM[] = "offset + length overflows 64 bits";
static const char M_B64[] = "invalid base64 in inline reference";
static const char M_NOMEM[] = "out of memory";
static const char M_ARGS[] = "invalid arguments";

static int fail(rj *r, int st, const uint8_t *at, const char *msg) {
    cv_refjson_result *res = r->res;
    res->err_pos = (size_t)(at - r->src);
    res->err_msg = msg;
    if (r->ktok) {
        res->err_key.start = (size_t)(r->ktok - r->src);
        res->err_key.len = r->ktoklen;
    } else {
        res->err_key.start = res->err_key.len = 0;
    }
    return st;
}

#define TRUNC(r) fail((r), CV_ETRUNCATED, (r)->end, M_TRUNC)

/* Status of an index call as an error at position at. */
static int fail_index(rj *r, int st, const uint8_t *at) {
    return fail(r, st, at, st == CV_ENOMEM ? M_NOMEM : cv_strerror(st));
}

/* ---------------------------------------------------------------- scanning helpers */

static inline const uint8_t *skip_ws(const uint8_t *p, const uint8_t *end) {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

static inline int is_digit(uint8_t c) { return (unsigned)(c - '0') < 10u; }

/* First byte in [p, end) that is '"', '\\', < 0x20 or >= 0x80, or end. */
static inline const uint8_t *scan_plain(const uint8_t *p, const uint8_t *end) {
#if RJ_SSE2
    const __m128i vq = _mm_set1_epi8('"'), vb = _mm_set1_epi8('\\'), vc = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* signed compare: bytes >= 0x80 are negative, so "< 0x20" catches them too */
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, vq), _mm_cmpeq_epi8(v, vb)),
                                 _mm_cmplt_epi8(v, vc));
        uint32_t mask = (uint32_t)_mm_movemask_epi8(m);
        if (mask) return p + cv_ctz64(mask);
        p += 16;
    }
#else
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (end - p >= 8) {
        uint64_t w = cv_load64le(p);
        uint64_t xq = w ^ (ones * '"'), xb = w ^ (ones * '\\');
        uint64_t m = ((xq - ones) & ~xq) | ((xb - ones) & ~xb) | ((w - ones * 0x20) & ~w) | w;
        if (m & highs) break; /* the byte loop below finds it exactly */
        p += 8;
    }
#endif
    while (p < end) {
        uint8_t c = *p;
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) return p;
        p++;
    }
    return p;
}

static inline int hexval(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Four hex digits at p (the \u already consumed); *cp receives the code unit. */
static int hex4(rj *r, const uint8_t *p, unsigned *cp) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        if (p + i >= r->end) return TRUNC(r);
        int h = hexval(p[i]);
        if (h < 0) return fail(r, CV_EFORMAT, p + i, M_UESC);
        v = (v << 4) | (unsigned)h;
    }
    *cp = v;
    return CV_OK;
}

/* Validate the escape at *pp (a backslash) and advance past it. */
static int esc_check(rj *r, const uint8_t **pp) {
    const uint8_t *p = *pp, *end = r->end;
    if (p + 1 >= end) return TRUNC(r);
    switch (p[1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        *pp = p + 2;
        return CV_OK;
    case 'u': {
        unsigned cp, lo;
        int st = hex4(r, p + 2, &cp);
        if (st) return st;
        const uint8_t *q = p + 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (q >= end) return TRUNC(r);
            if (*q != '\\') return fail(r, CV_EUTF8, p, M_SURR);
            if (q + 1 >= end) return TRUNC(r);
            if (q[1] != 'u') return fail(r, CV_EUTF8, p, M_SURR);
            if ((st = hex4(r, q + 2, &lo))) return st;
            if (lo < 0xDC00 || lo > 0xDFFF) return fail(r, CV_EUTF8, p, M_SURR);
            q += 6;
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return fail(r, CV_EUTF8, p, M_SURR);
        }
        *pp = q;
        return CV_OK;
    }
    default:
        return fail(r, CV_EFORMAT, p, M_ESC);
    }
}

/* Validate the UTF-8 sequence at *pp (lead byte >= 0x80) and advance past it. */
static int utf8_check(rj *r, const uint8_t **pp) {
    const uint8_t *p = *pp;
    uint8_t c = p[0], lo = 0x80, hi = 0xBF;
    int n;
    if (c >= 0xC2 && c <= 0xDF) n = 1;
    else if (c == 0xE0) { n = 2; lo = 0xA0; }
    else if (c == 0xED) { n = 2; hi = 0x9F; }
    else if (c >= 0xE1 && c <= 0xEF) n = 2;
    else if (c == 0xF0) { n = 3; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) n = 3;
    else if (c == 0xF4) { n = 3; hi = 0x8F; }
    else return fail(r, CV_EUTF8, p, M_UTF8);
    for (int i = 1; i <= n; i++) {
        if (p + i >= r->end) return TRUNC(r);
        uint8_t b = p[i];
        if (b < lo || b > hi) return fail(r, CV_EUTF8, p, M_UTF8);
        lo = 0x80;
        hi = 0xBF;
    }
    *pp = p + n + 1;
    return CV_OK;
}

/* Validate a string body starting at p (just after the opening quote).  *close receives the
 * closing quote, *esc whether the body holds escapes. */
static int str_scan(rj *r, const uint8_t *p, const uint8_t **close, int *esc) {
    const uint8_t *end = r->end;
    int e = 0, st;
    for (;;) {
        p = scan_plain(p, end);
        if (p >= end) return TRUNC(r);
        uint8_t c = *p;
        if (c == '"') {
            *close = p;
            *esc = e;
            return CV_OK;
        }
        if (c == '\\') {
            e = 1;
            if ((st = esc_check(r, &p))) return st;
        } else if (c < 0x20) {
            return fail(r, CV_EFORMAT, p, M_CTRL);
        } else if ((st = utf8_check(r, &p))) {
            return st;
        }
    }
}

static inline unsigned hex4_ok(const uint8_t *p) {
    return ((unsigned)hexval(p[0]) << 12) | ((unsigned)hexval(p[1]) << 8) |
           ((unsigned)hexval(p[2]) << 4) | (unsigned)hexval(p[3]);
}

/* Unescape a validated string body [p, e) into out (room for e - p bytes); returns the length. */
static size_t unescape(const uint8_t *p, const uint8_t *e, uint8_t *out) {
    uint8_t *o = out;
    while (p < e) {
        const uint8_t *q = memchr(p, '\\', (size_t)(e - p));
        if (!q) q = e;
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        if (q == e) break;
        p = q;
        switch (p[1]) {
        case 'b': *o++ = '\b'; p += 2; break;
        case 'f': *o++ = '\f'; p += 2; break;
        case 'n': *o++ = '\n'; p += 2; break;
        case 'r': *o++ = '\r'; p += 2; break;
        case 't': *o++ = '\t'; p += 2; break;
        case 'u': {
            uint32_t cp = hex4_ok(p + 2);
            p += 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo = hex4_ok(p + 2);
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp < 0x80) {
                *o++ = (uint8_t)cp;
            } else if (cp < 0x800) {
                *o++ = (uint8_t)(0xC0 | (cp >> 6));
                *o++ = (uint8_t)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                *o++ = (uint8_t)(0xE0 | (cp >> 12));
                *o++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (uint8_t)(0x80 | (cp & 0x3F));
            } else {
                *o++ = (uint8_t)(0xF0 | (cp >> 18));
                *o++ = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
                *o++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (uint8_t)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: /* '"', '\\', '/' */
            *o++ = p[1];
            p += 2;
        }
    }
    return (size_t)(o - out);
}

static int scratch(rj *r, int which, size_t need) {
    if (need <= r->cap[which]) return CV_OK;
    size_t nc = r->cap[which] ? r->cap[which] * 2 : 256;
    if (nc < need) nc = need;
    uint8_t *b = CV_REALLOC(r->buf[which], nc);
    if (!b) return CV_ENOMEM;
    r->buf[which] = b;
    r->cap[which] = nc;
    return CV_OK;
}

/* Read the string token at *pp (its opening quote) and give its unescaped bytes in (*s, *n):
 * a pointer into src when it has no escapes, else into scratch buffer `which`. */
static int str_read(rj *r, const uint8_t **pp, int which, const uint8_t **s, size_t *n) {
    const uint8_t *body = *pp + 1, *close;
    int esc, st;
    if ((st = str_scan(r, body, &close, &esc))) return st;
    if (!esc) {
        *s = body;
        *n = (size_t)(close - body);
    } else {
        if (scratch(r, which, (size_t)(close - body))) return fail(r, CV_ENOMEM, *pp, M_NOMEM);
        *n = unescape(body, close, r->buf[which]);
        *s = r->buf[which];
    }
    *pp = close + 1;
    return CV_OK;
}

/* Validate the number at *pp and advance past it. */
static int num_skip(rj *r, const uint8_t **pp) {
    const uint8_t *p = *pp, *end = r->end;
    if (*p == '-') {
        if (++p >= end) return TRUNC(r);
    }
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && is_digit(*p)) p++;
    } else {
        return fail(r, CV_EFORMAT, p, M_NUM);
    }
    if (p < end && *p == '.') {
        if (++p >= end) return TRUNC(r);
        if (!is_digit(*p)) return fail(r, CV_EFORMAT, p, M_NUM);
        while (p < end && is_digit(*p)) p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        if (++p >= end) return TRUNC(r);
        if (*p == '+' || *p == '-') {
            if (++p >= end) return TRUNC(r);
        }
        if (!is_digit(*p)) return fail(r, CV_EFORMAT, p, M_NUM);
        while (p < end && is_digit(*p)) p++;
    }
    *pp = p;
    return CV_OK;
}

static int lit_skip(rj *r, const uint8_t **pp, const char *word, size_t n) {
    const uint8_t *p = *pp;
    for (size_t i = 0; i < n; i++) {
        if (p + i >= r->end) return TRUNC(r);
        if (p[i] != (uint8_t)word[i]) return fail(r, CV_EFORMAT, p, M_LIT);
    }
    *pp = p + n;
    return CV_OK;
}

/* Validate the JSON value at *pp (after whitespace, p < end) and advance past it.  depth is the
 * number of containers around the value.  Iterative: an explicit bit stack of open containers. */
static int skip_value(rj *r, const uint8_t **pp, int depth) {
    uint8_t isobj[(CV_REFJSON_MAX_DEPTH + 7) / 8];
    const uint8_t *p = *pp, *end = r->end, *close;
    int d = 0, st, esc;
value:
    p = skip_ws(p, end);
    if (p >= end) return TRUNC(r);
    switch (*p) {
    case '{':
        if (depth + d + 1 > CV_REFJSON_MAX_DEPTH) return fail(r, CV_EFORMAT, p, M_DEPTH);
        isobj[d >> 3] |= (uint8_t)(1u << (d & 7));
        d++;
        p = skip_ws(p + 1, end);
        if (p >= end) return TRUNC(r);
        if (*p == '}') {
            p++;
            d--;
            goto after;
        }
        goto key;
    case '[':
        if (depth + d + 1 > CV_REFJSON_MAX_DEPTH) return fail(r, CV_EFORMAT, p, M_DEPTH);
        isobj[d >> 3] &= (uint8_t)~(1u << (d & 7));
        d++;
        p = skip_ws(p + 1, end);
        if (p >= end) return TRUNC(r);
        if (*p == ']') {
            p++;
            d--;
            goto after;
        }
        goto value;
    case '"':
        if ((st = str_scan(r, p + 1, &close, &esc))) return st;
        p = close + 1;
        goto after;
    case 't':
        if ((st = lit_skip(r, &p, "true", 4))) return st;
        goto after;
    case 'f':
        if ((st = lit_skip(r, &p, "false", 5))) return st;
        goto after;
    case 'n':
        if ((st = lit_skip(r, &p, "null", 4))) return st;
        goto after;
    default:
        if (*p == '-' || is_digit(*p)) {
            if ((st = num_skip(r, &p))) return st;
            goto after;
        }
        return fail(r, CV_EFORMAT, p, M_VALUE);
    }
key: /* p < end, at what must be a member's key */
    if (*p != '"') return fail(r, CV_EFORMAT, p, M_KEY);
    if ((st = str_scan(r, p + 1, &close, &esc))) return st;
    p = skip_ws(close + 1, end);
    if (p >= end) return TRUNC(r);
    if (*p != ':') return fail(r, CV_EFORMAT, p, M_COLON);
    p++;
    goto value;
after:
    if (d == 0) {
        *pp = p;
        return CV_OK;
    }
    p = skip_ws(p, end);
    if (p >= end) return TRUNC(r);
    if (isobj[(d - 1) >> 3] & (1u << ((d - 1) & 7))) {
        if (*p == ',') {
            p = skip_ws(p + 1, end);
            if (p >= end) return TRUNC(r);
            goto key;
        }
        if (*p == '}') {
            p++;
            d--;
            goto after;
        }
        return fail(r, CV_EFORMAT, p, M_OBJSEP);
    }
    if (*p == ',') {
        p++;
        goto value;
    }
    if (*p == ']') {
        p++;
        d--;
        goto after;
    }
    return fail(r, CV_EFORMAT, p, M_ARRSEP);
}

/* ---------------------------------------------------------------- reference values */

static const int8_t B64[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, -1, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
    -1, 0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, -1,
    -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

/* Decode standard base64 (padding optional) into out; out may equal in (decoding runs forward
 * and never overtakes the input).  Returns 0, or -1 for invalid input. */
static int b64_decode(const uint8_t *in, size_t n, uint8_t *out, size_t *outn) {
    size_t pad = 0;
    while (pad < 2 && n > 0 && in[n - 1] == '=') {
        n--;
        pad++;
    }
    if (n % 4 == 1 || (pad && (n + pad) % 4 != 0)) return -1;
    size_t i = 0, o = 0;
    for (; i + 4 <= n; i += 4) {
        int a = B64[in[i]], b = B64[in[i + 1]], c = B64[in[i + 2]], d = B64[in[i + 3]];
        if ((a | b | c | d) < 0) return -1;
        uint32_t v = ((uint32_t)a << 18) | ((uint32_t)b << 12) | ((uint32_t)c << 6) | (uint32_t)d;
        out[o] = (uint8_t)(v >> 16);
        out[o + 1] = (uint8_t)(v >> 8);
        out[o + 2] = (uint8_t)v;
        o += 3;
    }
    size_t rem = n - i;
    if (rem >= 2) {
        int a = B64[in[i]], b = B64[in[i + 1]], c = rem == 3 ? B64[in[i + 2]] : 0;
        if ((a | b | c) < 0) return -1;
        uint32_t v = ((uint32_t)a << 18) | ((uint32_t)b << 12) | ((uint32_t)c << 6);
        out[o++] = (uint8_t)(v >> 16);
        if (rem == 3) out[o++] = (uint8_t)(v >> 8);
    }
    *outn = o;
    return 0;
}

/* Offset or length at *pp (p < end).  which: 0 offset, 1 length. */
static int read_u64(rj *r, const uint8_t **pp, int which, uint64_t *out) {
    const uint8_t *s = *pp, *p = s, *end = r->end;
    int neg = 0, st;
    if (*p == '-') {
        neg = 1;
        if (++p >= end) return TRUNC(r);
        if (!is_digit(*p)) return fail(r, CV_EFORMAT, p, M_NUM);
    } else if (!is_digit(*p)) {
        return fail(r, CV_EFORMAT, s, which ? M_LENTYPE : M_OFFTYPE);
    }
    const uint8_t *d0 = p;
    uint64_t v = 0;
    int big = 0;
    if (*p == '0') {
        p++;
    } else {
        while (p < end && is_digit(*p)) p++;
        size_t nd = (size_t)(p - d0);
        if (nd <= 19) {
            for (const uint8_t *q = d0; q < p; q++) v = v * 10 + (uint64_t)(*q - '0');
        } else {
            for (const uint8_t *q = d0; q < p; q++) {
                uint64_t dg = (uint64_t)(*q - '0');
                if (v > (UINT64_MAX - dg) / 10) {
                    big = 1;
                    break;
                }
                v = v * 10 + dg;
            }
        }
    }
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E')) {
        const uint8_t *q = s;
        if ((st = num_skip(r, &q))) return st;
        return fail(r, CV_EFORMAT, s, which ? M_LENTYPE : M_OFFTYPE);
    }
    if (neg && (v || big)) return fail(r, CV_ERANGE, s, which ? M_LENNEG : M_OFFNEG);
    if (big) return fail(r, CV_ERANGE, s, which ? M_LENBIG : M_OFFBIG);
    *out = v;
    *pp = p;
    return CV_OK;
}

static int url_id(rj *r, const uint8_t *u, size_t n, const uint8_t *at, uint32_t *id) {
    if (r->uid >= 0 && n == r->ulen && (n == 0 || memcmp(u, r->ucache, n) == 0)) {
        *id = (uint32_t)r->uid;
        return CV_OK;
    }
    int64_t v = cv_index_url_intern(r->idx, u, n);
    if (v < 0) return fail_index(r, (int)v, at);
    if (n > r->ucap) {
        uint8_t *b = CV_REALLOC(r->ucache, n);
        if (!b) return fail(r, CV_ENOMEM, at, M_NOMEM);
        r->ucache = b;
        r->ucap = n;
    }
    if (n) memcpy(r->ucache, u, n);
    r->ulen = n;
    r->uid = v;
    *id = (uint32_t)v;
    return CV_OK;
}

/* A list reference at *pp ('['). */
static int read_list(rj *r, const uint8_t **pp, const uint8_t *k, size_t kn) {
    const uint8_t *lst = *pp, *p, *end = r->end, *u;
    size_t un;
    uint32_t id;
    uint64_t off, len;
    int st;
    p = skip_ws(lst + 1, end);
    if (p >= end) return TRUNC(r);
    if (*p == '"') {
        const uint8_t *at = p;
        if ((st = str_read(r, &p, SB_VAL, &u, &un))) return st;
        if ((st = url_id(r, u, un, at, &id))) return st;
    } else if (*p == 'n') {
        const uint8_t *at = p;
        if ((st = lit_skip(r, &p, "null", 4))) return st;
        if ((st = url_id(r, (const uint8_t *)"", 0, at, &id))) return st;
    } else if (*p == ']') {
        return fail(r, CV_EFORMAT, lst, M_ARITY);
    } else {
        return fail(r, CV_EFORMAT, p, M_URL);
    }
    p = skip_ws(p, end);
    if (p >= end) return TRUNC(r);
    if (*p == ']') {
        off = 0;
        len = CV_LEN_WHOLE;
        p++;
    } else {
        if (*p != ',') return fail(r, CV_EFORMAT, p, M_ARRSEP);
        p = skip_ws(p + 1, end);
        if (p >= end) return TRUNC(r);
        if ((st = read_u64(r, &p, 0, &off))) return st;
        p = skip_ws(p, end);
        if (p >= end) return TRUNC(r);
        if (*p == ']') return fail(r, CV_EFORMAT, lst, M_ARITY);
        if (*p != ',') return fail(r, CV_EFORMAT, p, M_ARRSEP);
        p = skip_ws(p + 1, end);
        if (p >= end) return TRUNC(r);
        if ((st = read_u64(r, &p, 1, &len))) return st;
        p = skip_ws(p, end);
        if (p >= end) return TRUNC(r);
        if (*p == ',') return fail(r, CV_EFORMAT, lst, M_ARITY);
        if (*p != ']') return fail(r, CV_EFORMAT, p, M_ARRSEP);
        p++;
        if (len == UINT64_MAX) return fail(r, CV_ERANGE, lst, M_LENBIG);
        if (off > UINT64_MAX - len) return fail(r, CV_ERANGE, lst, M_SUM);
    }
    if ((st = cv_index_put(r->idx, k, kn, id, off, len))) return fail_index(r, st, lst);
    *pp = p;
    return CV_OK;
}

static int defer(rj *r, const uint8_t **pp, const uint8_t *k, size_t kn, int depth) {
    const uint8_t *vs = *pp;
    cv_refjson_result *res = r->res;
    int st;
    if ((st = skip_value(r, pp, depth))) return st;
    size_t vlen = (size_t)(*pp - vs);
    if ((st = cv_index_put_inline(r->idx, k, kn, vs, vlen))) return fail_index(r, st, vs);
    cv_ref ref;
    if ((st = cv_index_get(r->idx, k, kn, &ref))) return fail_index(r, st, vs);
    if (res->ndeferred == r->defcap) {
        size_t nc = r->defcap ? r->defcap * 2 : 16;
        cv_span *d = CV_REALLOC(res->deferred, nc * 2 * sizeof(cv_span));
        if (!d) return fail(r, CV_ENOMEM, vs, M_NOMEM);
        res->deferred = d;
        uint64_t *o = CV_REALLOC(r->defoff, nc * sizeof(uint64_t));
        if (!o) return fail(r, CV_ENOMEM, vs, M_NOMEM);
        r->defoff = o;
        r->defcap = nc;
    }
    cv_span *d = res->deferred + 2 * res->ndeferred;
    d[0].start = (size_t)(r->ktok - r->src);
    d[0].len = r->ktoklen;
    d[1].start = (size_t)(vs - r->src);
    d[1].len = vlen;
    r->defoff[res->ndeferred++] = ref.offset;
    return CV_OK;
}

/* The reference value at *pp (p < end) for key (k, kn). */
static int read_ref(rj *r, const uint8_t **pp, const uint8_t *k, size_t kn, int depth) {
    const uint8_t *p = *pp, *s;
    size_t n;
    int st;
    switch (*p) {
    case '"': {
        const uint8_t *tok = p;
        if ((st = str_read(r, &p, SB_VAL, &s, &n))) return st;
        if (n >= 7 && memcmp(s, "base64:", 7) == 0) {
            size_t dn;
            if (s != r->buf[SB_VAL]) { /* in src: decode into the value scratch */
                if (scratch(r, SB_VAL, n - 7)) return fail(r, CV_ENOMEM, tok, M_NOMEM);
            }
            uint8_t *o = r->buf[SB_VAL]; /* or decode in place */
            if (b64_decode(s + 7, n - 7, o, &dn)) return fail(r, CV_EFORMAT, tok, M_B64);
            s = o;
            n = dn;
        }
        if ((st = cv_index_put_inline(r->idx, k, kn, s, n))) return fail_index(r, st, tok);
        *pp = p;
        return CV_OK;
    }
    case '[':
        return read_list(r, pp, k, kn);
    case '{':
        return defer(r, pp, k, kn, depth);
    default:
        return fail(r, CV_EFORMAT, p, M_REFTYPE);
    }
}

/* Pre-size the index from the references read so far (count of them in [start, p)). */
static void presize(rj *r, const uint8_t *start, const uint8_t *p, size_t count, size_t kbytes) {
    size_t used = (size_t)(p - start), per = used / count;
    if (per < 4) per = 4;
    size_t est = (size_t)(r->end - p) / per + 16;
    if (est > CV_INDEX_MAX_ENTRIES / 2) est = CV_INDEX_MAX_ENTRIES / 2;
    (void)cv_index_reserve(r->idx, est, est * (kbytes / count + 1)); /* a hint: failure is fine */
}

/* A references object at *pp ('{'), nested depth - 1 deep (its members are at depth).
 * del != 0: remove its keys from the index instead (undoing an overridden "refs"). */
static int read_refs(rj *r, const uint8_t **pp, int depth, int del) {
    const uint8_t *p = *pp, *end = r->end, *k, *start, *outer = r->ktok;
    size_t kn, count = 0, kbytes = 0, outerlen = r->ktoklen;
    int st;
    p = skip_ws(p + 1, end);
    if (p >= end) return TRUNC(r);
    start = p;
    if (*p == '}') {
        *pp = p + 1;
        return CV_OK;
    }
    for (;;) {
        if (*p != '"') return fail(r, CV_EFORMAT, p, M_KEY);
        const uint8_t *ktok = p;
        if ((st = str_read(r, &p, SB_KEY, &k, &kn))) return st;
        r->ktok = ktok;
        r->ktoklen = (size_t)(p - ktok);
        p = skip_ws(p, end);
        if (p >= end) return TRUNC(r);
        if (*p != ':') return fail(r, CV_EFORMAT, p, M_COLON);
        p = skip_ws(p + 1, end);
        if (p >= end) return TRUNC(r);
        if (del) {
            if ((st = skip_value(r, &p, depth))) return st;
            st = cv_index_del(r->idx, k, kn);
            if (st && st != CV_ENOTFOUND) return fail_index(r, st, ktok);
        } else {
            if ((st = read_ref(r, &p, k, kn, depth))) return st;
            r->res->nrefs++;
            kbytes += kn;
            if (++count == RJ_RESERVE_SAMPLE) presize(r, start, p, count, kbytes);
        }
        r->ktok = outer;
        r->ktoklen = outerlen;
        p = skip_ws(p, end);
        if (p >= end) return TRUNC(r);
        if (*p == ',') {
            p = skip_ws(p + 1, end);
            if (p >= end) return TRUNC(r);
            continue;
        }
        if (*p == '}') break;
        return fail(r, CV_EFORMAT, p, M_OBJSEP);
    }
    *pp = p + 1;
    return CV_OK;
}

/* ---------------------------------------------------------------- top level */

enum { K_OTHER, K_VERSION, K_REFS, K_TEMPLATES, K_GEN };

static int key_kind(const uint8_t *k, size_t n) {
    switch (n) {
    case 3: return memcmp(k, "gen", 3) == 0 ? K_GEN : K_OTHER;
    case 4: return memcmp(k, "refs", 4) == 0 ? K_REFS : K_OTHER;
    case 7: return memcmp(k, "version", 7) == 0 ? K_VERSION : K_OTHER;
    case 9: return memcmp(k, "templates", 9) == 0 ? K_TEMPLATES : K_OTHER;
    default: return K_OTHER;
    }
}

/* The value at p (p < end) is the integer token 1. */
static int is_one(const uint8_t *p, const uint8_t *end) {
    if (*p != '1') return 0;
    if (p + 1 == end) return 1;
    uint8_t c = p[1];
    return !(is_digit(c) || c == '.' || c == 'e' || c == 'E');
}

/* What the validating pass over the top level found (last occurrence of each member). */
typedef struct top_info {
    const uint8_t *version; /* value of the last "version", or NULL */
    const uint8_t *refs;    /* value of the last "refs", or NULL */
    cv_span templates, gen;
} top_info;

/* Read the top-level object at *pp ('{') member by member.
 *   info != NULL: validate only, recording into *info;
 *   info == NULL: one pass over a v1 document: the references of "refs" go into the index. */
static int read_top(rj *r, const uint8_t **pp, top_info *info) {
    const uint8_t *p = *pp, *end = r->end, *k, *refs_prev = NULL, *bad_version = NULL;
    size_t kn;
    int st;
    p = skip_ws(p + 1, end);
    if (p >= end) return TRUNC(r);
    if (*p != '}') {
        for (;;) {
            if (*p != '"') return fail(r, CV_EFORMAT, p, M_KEY);
            const uint8_t *ktok = p;
            if ((st = str_read(r, &p, SB_KEY, &k, &kn))) return st;
            int kind = key_kind(k, kn);
            r->ktok = ktok; /* errors in the value name this member */
            r->ktoklen = (size_t)(p - ktok);
            p = skip_ws(p, end);
            if (p >= end) return TRUNC(r);
            if (*p != ':') return fail(r, CV_EFORMAT, p, M_COLON);
            p = skip_ws(p + 1, end);
            if (p >= end) return TRUNC(r);
            const uint8_t *vs = p;
            if (kind == K_REFS && !info) {
                if (*p != '{') return fail(r, CV_EFORMAT, p, M_REFSOBJ);
                if (refs_prev) { /* a later "refs" replaces an earlier one (json: last wins) */
                    const uint8_t *q = refs_prev;
                    if ((st = read_refs(r, &q, 2, 1))) return st;
                    r->res->ndeferred = 0;
                    r->res->nrefs = 0;
                }
                refs_prev = p;
                if ((st = read_refs(r, &p, 2, 0))) return st;
            } else {
                if ((st = skip_value(r, &p, 1))) return st;
            }
            cv_span span = {(size_t)(vs - r->src), (size_t)(p - vs)};
            switch (kind) {
            case K_VERSION:
                if (info) info->version = vs;
                else bad_version = is_one(vs, end) ? NULL : vs;
                break;
            case K_REFS:
                if (info) info->refs = vs;
                break;
            case K_TEMPLATES:
                if (info) info->templates = span;
                else r->res->templates = span;
                break;
            case K_GEN:
                if (info) info->gen = span;
                else r->res->gen = span;
                break;
            }
            r->ktok = NULL;
            p = skip_ws(p, end);
            if (p >= end) return TRUNC(r);
            if (*p == ',') {
                p = skip_ws(p + 1, end);
                if (p >= end) return TRUNC(r);
                continue;
            }
            if (*p == '}') break;
            return fail(r, CV_EFORMAT, p, M_OBJSEP);
        }
    }
    p = skip_ws(p + 1, end);
    if (p != end) return fail(r, CV_EFORMAT, p, M_TRAIL);
    if (bad_version) return fail(r, CV_EVERSION, bad_version, M_VERSION);
    *pp = p;
    return CV_OK;
}

typedef struct {
    uint64_t off;
    size_t i;
} defkey;

static int defkey_cmp(const void *a, const void *b) {
    const defkey *x = a, *y = b;
    if (x->off != y->off) return x->off < y->off ? -1 : 1;
    return x->i < y->i ? -1 : (x->i > y->i);
}

/* A key deferred twice whose second value overwrote the first in place shares one placeholder:
 * keep only the last entry for each placeholder, in the original order. */
static int deferred_dedupe(rj *r) {
    cv_refjson_result *res = r->res;
    size_t n = res->ndeferred;
    if (n < 2) return CV_OK;
    defkey *ks = CV_MALLOC(n * sizeof(defkey));
    uint8_t *keep = CV_MALLOC(n);
    if (!ks || !keep) {
        CV_FREE(ks);
        CV_FREE(keep);
        return CV_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        ks[i].off = r->defoff[i];
        ks[i].i = i;
        keep[i] = 1;
    }
    qsort(ks, n, sizeof(defkey), defkey_cmp);
    for (size_t a = 0; a + 1 < n; a++)
        if (ks[a].off == ks[a + 1].off) keep[ks[a].i] = 0;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (!keep[i]) continue;
        res->deferred[2 * j] = res->deferred[2 * i];
        res->deferred[2 * j + 1] = res->deferred[2 * i + 1];
        r->defoff[j] = r->defoff[i];
        j++;
    }
    res->ndeferred = j;
    CV_FREE(ks);
    CV_FREE(keep);
    return CV_OK;
}

/* Drop deferred entries whose key was overridden by a later member (their placeholder is gone).
 * Known gap: a later plain string value with exactly the placeholder's length is rewritten in
 * the same place, so it still looks deferred (a duplicated key in the JSON; not seen in practice). */
static int deferred_filter(rj *r) {
    cv_refjson_result *res = r->res;
    size_t j = 0;
    for (size_t i = 0; i < res->ndeferred; i++) {
        cv_span kt = res->deferred[2 * i], vt = res->deferred[2 * i + 1];
        const uint8_t *p = r->src + kt.start, *k;
        size_t kn;
        cv_ref ref;
        int st = str_read(r, &p, SB_KEY, &k, &kn);
        if (st) return st;
        if (cv_index_get(r->idx, k, kn, &ref) == CV_OK && ref.url == CV_URL_INLINE &&
            ref.offset == r->defoff[i] && ref.length == vt.len) {
            res->deferred[2 * j] = kt;
            res->deferred[2 * j + 1] = vt;
            r->defoff[j] = r->defoff[i];
            j++;
        }
    }
    res->ndeferred = j;
    return deferred_dedupe(r);
}

static int parse(rj *r) {
    const uint8_t *p = r->src, *end = r->end, *top;
    int st;
    size_t nb = end - p < 3 ? (size_t)(end - p) : 3;
    if (nb && memcmp(p, "\xEF\xBB\xBF", nb) == 0) {
        if (nb < 3) return TRUNC(r); /* a prefix of the byte-order mark */
        p += 3;
    }
    p = skip_ws(p, end);
    if (p >= end) return TRUNC(r);
    if (*p != '{') return fail(r, CV_EFORMAT, p, M_NOTOBJ);
    top = p;

    /* Common case: the first member is "version": 1, so this is v1 and one pass does it. */
    const uint8_t *q = skip_ws(p + 1, end), *k;
    size_t kn;
    if (q < end && *q == '"') {
        if ((st = str_read(r, &q, SB_KEY, &k, &kn))) return st;
        q = skip_ws(q, end);
        if (key_kind(k, kn) == K_VERSION && q < end && *q == ':') {
            q = skip_ws(q + 1, end);
            if (q < end && is_one(q, end)) {
                r->res->version = 1;
                return read_top(r, &p, NULL);
            }
        }
    }

    /* Otherwise validate the whole document first to find the last "version". */
    top_info info;
    memset(&info, 0, sizeof info);
    if ((st = read_top(r, &p, &info))) return st;
    if (!info.version) {
        r->res->version = 0;
        p = top;
        return read_refs(r, &p, 1, 0);
    }
    if (!is_one(info.version, end)) return fail(r, CV_EVERSION, info.version, M_VERSION);
    r->res->version = 1;
    r->res->templates = info.templates;
    r->res->gen = info.gen;
    if (!info.refs) return CV_OK;
    p = info.refs;
    if (*p != '{') return fail(r, CV_EFORMAT, p, M_REFSOBJ);
    return read_refs(r, &p, 2, 0);
}

int cv_refjson_parse(cv_index *idx, const uint8_t *src, size_t srclen, cv_refjson_result *res) {
    if (!res) return CV_EINVAL;
    memset(res, 0, sizeof *res);
    if (!idx || (!src && srclen)) {
        res->err_msg = M_ARGS;
        return CV_EINVAL;
    }
    if (!src) src = (const uint8_t *)"";
    rj r;
    memset(&r, 0, sizeof r);
    r.src = src;
    r.end = src + srclen;
    r.idx = idx;
    r.res = res;
    r.uid = -1;
    int st = parse(&r);
    if (st == CV_OK && res->ndeferred) st = deferred_filter(&r);
    CV_FREE(r.buf[0]);
    CV_FREE(r.buf[1]);
    CV_FREE(r.ucache);
    CV_FREE(r.defoff);
    if (st != CV_OK) {
        CV_FREE(res->deferred);
        res->deferred = NULL;
        res->ndeferred = 0;
        if (!res->err_msg) res->err_msg = cv_strerror(st);
    } else if (res->ndeferred == 0) {
        CV_FREE(res->deferred);
        res->deferred = NULL;
    }
    return st;
}

void cv_refjson_result_free(cv_refjson_result *res) {
    if (!res) return;
    CV_FREE(res->deferred);
    res->deferred = NULL;
    res->ndeferred = 0;
}
