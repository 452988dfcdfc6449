/* cv_index.c: see cv_index.h for the contract and docs/format.md for the serialized layout.
 *
 * Records.  One arena holds every record, starting at byte 8 (bytes 0-7 are reserved so that no
 * record sits at offset 0-7, which the slot encoding uses for "empty" and "deleted"):
 *
 *     fp  flags  klen8  vlen8  [varint klen]  [varint vlen]  key bytes  value (vlen bytes)
 *
 * four one-byte fields, then the key and value lengths as varints only where they do not fit a
 * byte (klen8 / vlen8 = 255).  fp is bits 32-39 of the key's hash, so a bucket scan skips most
 * other keys without comparing them.
 *
 * flags: bits 0-1 the kind (RANGE: url, offset, length varints; WHOLE: url varint; INLINE:
 * varint data length then the data; FWD: varint arena offset of the record that replaced this
 * one, 0 when the key was deleted) and bit 2 MOVED (the record replaced an earlier one and is
 * reached through that one's forward pointer, so iteration does not visit it directly).  Values
 * are padded with zero bytes to at least MIN_VALUE bytes so a forward pointer always fits.
 *
 * Slots.  u64: 0 empty, 1 deleted (tombstone), else (tag << 48) | record offset, where the tag is
 * the top 16 bits of the key's XXH64 and the home slot is fastrange(low 32 bits, nslots).  Every
 * record whose kind is not FWD is held by exactly one slot.
 *
 * Two modes.  While an index is being modified ("dynamic") its records lie in insertion order
 * and the slot table finds them: a lookup touches a slot, then a record.  cv_index_shrink (and
 * serialization) "freezes" it: records are regrouped by hash bucket (about BUCKET per bucket,
 * insertion order within a bucket), a directory of bucket start offsets replaces the slots and an
 * order array keeps insertion order for iteration.  A non-empty bucket starts with a header: the
 * record count, one fingerprint byte per record and each record's offset in the bucket.  A
 * frozen lookup reads two directory entries, then the bucket, whose cache lines are all
 * requested at once (one memory round trip); it compares the bucket's fingerprints eight at a
 * time in a 64-bit word and parses only the records whose fingerprint matches (one, nearly
 * always).  The next modification thaws the index back.
 *
 * Every read of the arena is bounds-checked, so an opened file can never make a lookup read out
 * of bounds, whatever its contents.
 */
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE /* madvise */
#endif
#include "cv_index.h"

#include "cv_hash.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

#define HEADER_SIZE 128
#define FORMAT_VERSION 3
#define REC_START 8
#define MIN_VALUE 7 /* a 48-bit forward pointer as a varint */
#define SLOT_EMPTY 0u
#define SLOT_TOMB 1u
#define OFF_MASK ((UINT64_C(1) << 48) - 1)
#define MAX_SLOTS UINT64_C(0xFFFFFFFF)

enum { K_RANGE = 0, K_WHOLE = 1, K_INLINE = 2, K_FWD = 3 };
#define F_KIND 3u
#define F_MOVED 4u
#define BUCKET 3 /* mean keys per bucket of a frozen index */

static const uint8_t MAGIC[8] = {0x89, 'C', 'V', 'I', 'D', 'X', '\r', '\n'};

struct cv_index {
    uint64_t *slots;
    size_t nslots;
    size_t used;  /* slots not empty (live + tombstones) */
    size_t tombs; /* tombstone slots */
    size_t live;  /* live keys */
    uint8_t *rec; /* record arena */
    size_t rec_len, rec_cap;
    size_t garbage; /* arena bytes in FWD records */
    uint64_t *url_off; /* n_urls + 1 offsets into url_bytes */
    size_t n_urls, url_off_cap;
    uint8_t *url_bytes;
    size_t url_bytes_len, url_bytes_cap;
    uint32_t *url_hash; /* power-of-two open table of url id + 1 (0 = empty); built on demand */
    size_t url_hash_n;
    int borrowed; /* rec, dir, order, url_off, url_bytes point into a caller's buffer */
    uint64_t rec_at; /* file offset of the record arena (0 when not opened from a file) */
    /* frozen mode (slots == NULL): */
    int frozen;
    size_t nb;     /* buckets */
    int w;         /* bytes per directory / order entry: 4 or 8 */
    int ow;        /* bytes per record offset in a bucket header: 1, 2, 4 or 8 */
    uint8_t *dir;  /* nb + 1 arena offsets: bucket b is [dir[b], dir[b+1]) */
    uint8_t *order; /* live arena offsets in insertion order */
};

/* ---------------------------------------------------------------- small helpers */

static inline uint64_t key_hash(const uint8_t *key, size_t klen) { return cv_keyhash(key, klen); }

/* Key equality, with the common short keys compared as two overlapping words. */
static inline int key_eq(const uint8_t *a, const uint8_t *b, size_t n) {
    if (n >= 8 && n <= 16)
        return cv_load64le(a) == cv_load64le(b) && cv_load64le(a + n - 8) == cv_load64le(b + n - 8);
    if (n >= 4 && n < 8)
        return cv_load32le(a) == cv_load32le(b) && cv_load32le(a + n - 4) == cv_load32le(b + n - 4);
    return n == 0 || memcmp(a, b, n) == 0;
}

static inline size_t home_of(uint64_t h, size_t nslots) {
    return (size_t)(((h & 0xFFFFFFFFu) * (uint64_t)nslots) >> 32);
}

static inline uint64_t tag_of(uint64_t h) { return h >> 48; }

static inline uint8_t fp_of(uint64_t h) { return (uint8_t)(h >> 32); }

static size_t varint_put(uint8_t *p, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static inline size_t varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Read a varint in [p, end).  Returns the bytes consumed, or 0 on malformed input. */
static inline size_t varint_get(const uint8_t *p, const uint8_t *end, uint64_t *out) {
    if (CV_LIKELY(p < end && p[0] < 0x80)) {
        *out = p[0];
        return 1;
    }
    uint64_t v = 0;
    size_t i = 0;
    int shift = 0;
    while (p + i < end && i < 10) {
        uint8_t b = p[i++];
        if (shift == 63 && b > 1) return 0;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return i;
        }
        shift += 7;
    }
    return 0;
}

/* Ask the kernel for transparent huge pages under a large table: random lookups then miss the
 * TLB far less.  Only a hint; nothing depends on it. */
static void hint_huge(void *p, size_t n) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)1 << 21;
    if (n < 2 * huge) return;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~(huge - 1);
    if (b > a) (void)madvise((void *)a, b - a, MADV_HUGEPAGE);
#else
    (void)p;
    (void)n;
#endif
}

/* ---------------------------------------------------------------- records */

typedef struct {
    unsigned fp;
    const uint8_t *key;
    size_t klen;
    unsigned flags;
    size_t val;  /* arena offset of the value */
    size_t vlen; /* value bytes */
    size_t end;  /* arena offset just past the record */
} recview;

/* Parse the record at arena offset off, which must end by rec_len.  Returns 0 when it does not
 * fit.  The 4-byte header holds fp, flags, and the key and value lengths when below 255 (255:
 * the length follows as a varint). */
static inline int rec_parse(const uint8_t *rec, size_t rec_len, size_t off, recview *r) {
    if (off < REC_START || off >= rec_len || rec_len - off < 4) return 0;
    const uint8_t *p = rec + off, *end = rec + rec_len, *q = p + 4;
    uint64_t klen = p[2], vlen = p[3];
    r->fp = p[0];
    r->flags = p[1] & 7u;
    if (CV_UNLIKELY(klen == 255)) {
        size_t n = varint_get(q, end, &klen);
        if (!n || klen < 255) return 0;
        q += n;
    }
    if (CV_UNLIKELY(vlen == 255)) {
        size_t n = varint_get(q, end, &vlen);
        if (!n || vlen < 255) return 0;
        q += n;
    }
    if (klen > (uint64_t)(end - q)) return 0;
    r->key = q;
    r->klen = (size_t)klen;
    q += klen;
    if (vlen > (uint64_t)(end - q)) return 0;
    r->val = (size_t)(q - rec);
    r->vlen = (size_t)vlen;
    r->end = r->val + r->vlen;
    return 1;
}

/* Decode a record's value into *ref (kinds RANGE, WHOLE, INLINE); URL ids must be < n_urls. */
static inline int rec_value_n(const cv_index *idx, const recview *r, cv_ref *ref, size_t n_urls) {
    const uint8_t *p = idx->rec + r->val, *end = p + r->vlen;
    uint64_t u, a, b;
    size_t n;
    switch (r->flags & F_KIND) {
    case K_RANGE:
        if (!(n = varint_get(p, end, &u))) return CV_ECORRUPT;
        p += n;
        if (!(n = varint_get(p, end, &a))) return CV_ECORRUPT;
        p += n;
        if (!(n = varint_get(p, end, &b))) return CV_ECORRUPT;
        if (u >= n_urls || b == CV_LEN_WHOLE || a > UINT64_MAX - b) return CV_ECORRUPT;
        ref->url = (uint32_t)u;
        ref->offset = a;
        ref->length = b;
        return CV_OK;
    case K_WHOLE:
        if (!varint_get(p, end, &u) || u >= n_urls) return CV_ECORRUPT;
        ref->url = (uint32_t)u;
        ref->offset = 0;
        ref->length = CV_LEN_WHOLE;
        return CV_OK;
    case K_INLINE:
        if (!(n = varint_get(p, end, &a)) || a > (uint64_t)(end - p - (ptrdiff_t)n))
            return CV_ECORRUPT;
        ref->url = CV_URL_INLINE;
        ref->offset = (uint64_t)(p + n - idx->rec);
        ref->length = a;
        return CV_OK;
    default:
        return CV_ECORRUPT;
    }
}

static inline int rec_value(const cv_index *idx, const recview *r, cv_ref *ref) {
    return rec_value_n(idx, r, ref, idx->n_urls);
}

/* Encode a RANGE / WHOLE value into buf (at least 32 bytes); returns its length. */
static size_t encode_ref(uint8_t *buf, unsigned kind, uint32_t url, uint64_t offset,
                         uint64_t length) {
    size_t n = varint_put(buf, url);
    if (kind == K_RANGE) {
        n += varint_put(buf + n, offset);
        n += varint_put(buf + n, length);
    }
    return n;
}

static inline size_t padded(size_t vlen) { return vlen < MIN_VALUE ? MIN_VALUE : vlen; }

/* ---------------------------------------------------------------- ownership and growth */

static void *dup_bytes(const void *src, size_t n) {
    void *p = CV_MALLOC(n ? n : 1);
    if (p && n) memcpy(p, src, n);
    return p;
}

/* Entry i of an array of w-byte (1, 2, 4 or 8) little-endian unsigned integers: directory and
 * order entries (w 4 or 8), record offsets in a bucket header (idx->ow). */
static inline uint64_t ent_get(const uint8_t *a, int w, size_t i) {
    switch (w) {
    case 1:
        return a[i];
    case 2:
        return (uint64_t)a[2 * i] | ((uint64_t)a[2 * i + 1] << 8);
    case 4:
        return cv_load32le(a + 4 * i);
    default:
        return cv_load64le(a + 8 * i);
    }
}

static inline void ent_put(uint8_t *a, int w, size_t i, uint64_t v) {
    if (w == 4) {
        cv_store32le(a + 4 * i, (uint32_t)v);
    } else if (w == 8) {
        cv_store64le(a + 8 * i, v);
    } else {
        for (int k = 0; k < w; k++) a[(size_t)w * i + (size_t)k] = (uint8_t)(v >> (8 * k));
    }
}

/* Copy every borrowed array into owned memory (first modification of an opened index, which is
 * always frozen). */
static int own(cv_index *idx) {
    if (!idx->borrowed) return CV_OK;
    size_t w = (size_t)idx->w;
    uint8_t *dir = dup_bytes(idx->dir, (idx->nb + 1) * w);
    uint8_t *order = dup_bytes(idx->order, idx->live * w);
    uint8_t *rec = CV_MALLOC(idx->rec_len);
    if (rec) {
        hint_huge(rec, idx->rec_len); /* before the pages are first touched */
        memcpy(rec, idx->rec, idx->rec_len);
    }
    uint64_t *url_off = dup_bytes(idx->url_off, (idx->n_urls + 1) * 8);
    uint8_t *url_bytes = dup_bytes(idx->url_bytes, idx->url_bytes_len);
    if (!dir || !order || !rec || !url_off || !url_bytes) {
        CV_FREE(dir);
        CV_FREE(order);
        CV_FREE(rec);
        CV_FREE(url_off);
        CV_FREE(url_bytes);
        return CV_ENOMEM;
    }
    idx->dir = dir;
    idx->order = order;
    idx->rec = rec;
    idx->url_off = url_off;
    idx->url_bytes = url_bytes;
    idx->rec_cap = idx->rec_len;
    idx->url_off_cap = idx->n_urls + 1;
    idx->url_bytes_cap = idx->url_bytes_len;
    idx->borrowed = 0;
    return CV_OK;
}

static int grow_bytes(uint8_t **buf, size_t *cap, size_t need) {
    if (need <= *cap) return CV_OK;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) {
        if (nc > SIZE_MAX / 2) return CV_ERANGE;
        nc = nc < ((size_t)1 << 24) ? nc * 2 : nc + nc / 2;
    }
    uint8_t *p = CV_REALLOC(*buf, nc);
    if (!p) return CV_ENOMEM;
    *buf = p;
    *cap = nc;
    return CV_OK;
}

static int grow_rec(cv_index *idx, size_t more) {
    if (more > ((size_t)OFF_MASK) - idx->rec_len) return CV_ERANGE;
    size_t old = idx->rec_cap;
    int st = grow_bytes(&idx->rec, &idx->rec_cap, idx->rec_len + more);
    if (st == CV_OK && idx->rec_cap != old) hint_huge(idx->rec, idx->rec_cap);
    return st;
}

/* Slots needed for n keys at a load factor of at most 4/5. */
static size_t slots_for(size_t n) { return n < 13 ? 16 : n + n / 4 + 1; }

static inline void slot_insert(uint64_t *slots, size_t nslots, uint64_t h, size_t off) {
    size_t pos = home_of(h, nslots);
    while (slots[pos] > SLOT_TOMB) {
        if (++pos == nslots) pos = 0;
    }
    slots[pos] = (tag_of(h) << 48) | (uint64_t)off;
}

/* Rebuild the slot table with nslots slots from a sequential walk of the arena. */
static int rehash(cv_index *idx, size_t nslots) {
    if (nslots > MAX_SLOTS || nslots <= idx->live) return CV_ERANGE;
    uint64_t *slots = CV_MALLOC(nslots * 8);
    if (!slots) return CV_ENOMEM;
    memset(slots, 0, nslots * 8);
    hint_huge(slots, nslots * 8);
    size_t off = REC_START, n = 0;
    while (off < idx->rec_len) {
        recview r;
        if (!rec_parse(idx->rec, idx->rec_len, off, &r)) {
            CV_FREE(slots);
            return CV_ECORRUPT;
        }
        if ((r.flags & F_KIND) != K_FWD) {
            if (++n > idx->live) {
                CV_FREE(slots);
                return CV_ECORRUPT;
            }
            slot_insert(slots, nslots, key_hash(r.key, r.klen), off);
        }
        off = r.end;
    }
    if (n != idx->live) {
        CV_FREE(slots);
        return CV_ECORRUPT;
    }
    CV_FREE(idx->slots);
    idx->slots = slots;
    idx->nslots = nslots;
    idx->used = n;
    idx->tombs = 0;
    return CV_OK;
}

/* Make room in the slot table for `more` new keys. */
static int ensure_slots(cv_index *idx, size_t more) {
    size_t need = idx->used + more;
    if (idx->nslots && need * 5 <= idx->nslots * 4) return CV_OK;
    size_t want = slots_for(idx->live + more);
    if (want < idx->nslots && idx->tombs == 0) want = idx->nslots;
    /* grow geometrically: sized exactly, a table filled one key at a time would rehash on
     * almost every insert (quadratic); shrink() sizes it exactly once the inserts are done */
    if (want < 2 * (idx->live + more)) want = 2 * (idx->live + more);
    if (want > MAX_SLOTS) want = (size_t)MAX_SLOTS;
    if ((idx->live + more) * 5 > want * 4) return CV_ERANGE;
    return rehash(idx, want);
}

/* ---------------------------------------------------------------- lifecycle */

cv_index *cv_index_new(void) {
    cv_index *idx = CV_MALLOC(sizeof(cv_index));
    if (!idx) return NULL;
    memset(idx, 0, sizeof(*idx));
    idx->url_off = CV_MALLOC(8 * 4);
    idx->rec = CV_MALLOC(64);
    if (!idx->url_off || !idx->rec) {
        CV_FREE(idx->url_off);
        CV_FREE(idx->rec);
        CV_FREE(idx);
        return NULL;
    }
    idx->url_off[0] = 0;
    idx->url_off_cap = 4;
    memset(idx->rec, 0, REC_START);
    idx->rec_len = REC_START;
    idx->rec_cap = 64;
    return idx;
}

void cv_index_free(cv_index *idx) {
    if (!idx) return;
    if (!idx->borrowed) {
        CV_FREE(idx->slots);
        CV_FREE(idx->rec);
        CV_FREE(idx->url_off);
        CV_FREE(idx->url_bytes);
        CV_FREE(idx->dir);
        CV_FREE(idx->order);
    }
    CV_FREE(idx->url_hash);
    CV_FREE(idx);
}

size_t cv_index_len(const cv_index *idx) { return idx->live; }

size_t cv_index_memory(const cv_index *idx) {
    size_t m = sizeof(*idx) + idx->url_hash_n * 4;
    if (!idx->borrowed)
        m += idx->nslots * 8 + idx->rec_cap + idx->url_off_cap * 8 + idx->url_bytes_cap +
             (idx->frozen ? (idx->nb + 1 + idx->live) * (size_t)idx->w : 0);
    return m;
}

static int thaw(cv_index *idx);
static int freeze(cv_index *idx);

int cv_index_reserve(cv_index *idx, size_t nkeys, size_t keybytes) {
    int st = own(idx);
    if (st) return st;
    if (idx->frozen && (st = thaw(idx))) return st;
    if (nkeys > CV_INDEX_MAX_ENTRIES - idx->live) return CV_ERANGE;
    if (keybytes > SIZE_MAX / 2 || nkeys > SIZE_MAX / 64) return CV_ERANGE;
    /* a typical record: 1-2 header bytes, the key, 1 vlen byte and an 8-byte value */
    if ((st = grow_rec(idx, keybytes + nkeys * 11))) return st;
    return ensure_slots(idx, nkeys);
}

static int compact(cv_index *idx);

int cv_index_shrink(cv_index *idx) {
    int st;
    if (idx->borrowed || idx->frozen) return CV_OK; /* already exact */
    if (idx->garbage && (st = compact(idx))) return st;
    return freeze(idx);
}

/* ---------------------------------------------------------------- lookup */

/* Arena offset of key's record, or 0 when absent; *slotpos (if given) gets its slot. */
static inline size_t find_h(const cv_index *idx, const uint8_t *key, size_t klen, uint64_t h,
                            size_t *slotpos) {
    size_t ns = idx->nslots;
    if (CV_UNLIKELY(ns == 0)) return 0;
    uint64_t tag = tag_of(h);
    size_t pos = home_of(h, ns);
    for (size_t probes = 0; probes < ns; probes++) {
        uint64_t s = idx->slots[pos];
        if (s == SLOT_EMPTY) return 0;
        if ((s >> 48) == tag && s != SLOT_TOMB) {
            recview r;
            size_t off = (size_t)(s & OFF_MASK);
            if (rec_parse(idx->rec, idx->rec_len, off, &r) && r.klen == klen &&
                key_eq(r.key, key, klen)) {
                if (slotpos) *slotpos = pos;
                return off;
            }
        }
        if (++pos == ns) pos = 0;
    }
    return 0;
}

static inline size_t bucket_of(uint64_t h, size_t nb) {
    return (size_t)(((h & 0xFFFFFFFFu) * (uint64_t)nb) >> 32);
}

/* Bounds of bucket b of a frozen index; 0 when the directory is corrupt. */
static inline int bucket_span(const cv_index *idx, size_t b, size_t *start, size_t *end) {
    uint64_t a = ent_get(idx->dir, idx->w, b), z = ent_get(idx->dir, idx->w, b + 1);
    if (a > z || z > idx->rec_len) return 0;
    *start = (size_t)a;
    *end = (size_t)z;
    return 1;
}

static inline void prefetch_span(const uint8_t *rec, size_t start, size_t end) {
    /* each line once: a second prefetch of a line still in flight costs far more than a loop
     * (measured: a bucket's first and last byte prefetched made lookups three times slower) */
    for (size_t a = start & ~(size_t)63; a < end; a += 64) CV_PREFETCH(rec + a);
}

/* The header of a non-empty bucket [a, z) of a frozen index: a varint record count c, c key
 * fingerprints, c record offsets (ow bytes each, from the end of the header), then the records.
 * 0 when it does not fit the bucket. */
typedef struct {
    size_t c;
    const uint8_t *fps, *offs;
    size_t rs; /* arena offset of the first record */
} bhead;

static inline int bucket_head(const cv_index *idx, size_t a, size_t z, bhead *bh) {
    uint64_t c;
    size_t n = varint_get(idx->rec + a, idx->rec + z, &c);
    if (!n || c == 0 || c > (uint64_t)(z - a)) return 0;
    size_t hl = n + (size_t)c * (1 + (size_t)idx->ow);
    if (hl > z - a) return 0;
    bh->c = (size_t)c;
    bh->fps = idx->rec + a + n;
    bh->offs = bh->fps + c;
    bh->rs = a + hl;
    return 1;
}

/* Frozen lookup: find the key in bucket [a, z).  The fingerprints are compared eight at a time
 * in one 64-bit word (a byte equal to fp becomes a set top bit, exactly); only records whose
 * fingerprint matches are visited, straight through their offsets.  Returns the record offset
 * (parsed into *r) or 0. */
static inline size_t scan_bucket(const cv_index *idx, size_t a, size_t z, const uint8_t *key,
                                 size_t klen, uint64_t h, recview *r) {
    const uint64_t lo7 = UINT64_C(0x7F7F7F7F7F7F7F7F);
    bhead bh;
    if (a >= z || !bucket_head(idx, a, z, &bh)) return 0;
    uint64_t want = (uint64_t)fp_of(h) * UINT64_C(0x0101010101010101);
    size_t room = (size_t)(idx->rec + idx->rec_len - bh.fps); /* readable fingerprint bytes */
    for (size_t i = 0; i < bh.c; i += 8) {
        size_t m = bh.c - i < 8 ? bh.c - i : 8;
        uint64_t x = 0;
        if (CV_LIKELY(room - i >= 8)) {
            x = cv_load64le(bh.fps + i);
        } else {
            for (size_t k = 0; k < m; k++) x |= (uint64_t)bh.fps[i + k] << (8 * k);
        }
        x ^= want;
        uint64_t hit = ~(((x & lo7) + lo7) | x | lo7);
        if (m < 8) hit &= ((uint64_t)1 << (8 * m)) - 1;
        while (hit) {
            size_t j = i + (cv_ctz64(hit) >> 3);
            hit &= hit - 1;
            uint64_t ro = ent_get(bh.offs, idx->ow, j);
            if (ro >= z - bh.rs) return 0;
            size_t at = bh.rs + (size_t)ro;
            if (!rec_parse(idx->rec, z, at, r)) return 0;
            if (r->klen == klen && key_eq(r->key, key, klen)) return at;
        }
    }
    return 0;
}

static inline size_t frozen_find(const cv_index *idx, const uint8_t *key, size_t klen,
                                 uint64_t h, recview *r) {
    size_t start, end;
    if (!bucket_span(idx, bucket_of(h, idx->nb), &start, &end)) return 0;
    prefetch_span(idx->rec, start, end);
    return scan_bucket(idx, start, end, key, klen, h, r);
}

/* Record offset of key in either mode (0 when absent), parsed into *r. */
static inline size_t locate(const cv_index *idx, const uint8_t *key, size_t klen, uint64_t h,
                            recview *r) {
    if (idx->frozen) return frozen_find(idx, key, klen, h, r);
    size_t off = find_h(idx, key, klen, h, NULL);
    if (off && !rec_parse(idx->rec, idx->rec_len, off, r)) return 0;
    return off;
}

int64_t cv_index_find(const cv_index *idx, const uint8_t *key, size_t klen) {
    recview r;
    size_t off = locate(idx, key, klen, key_hash(key, klen), &r);
    return off ? (int64_t)off : CV_ENOTFOUND;
}

int cv_index_get(const cv_index *idx, const uint8_t *key, size_t klen, cv_ref *ref) {
    recview r;
    size_t off = locate(idx, key, klen, key_hash(key, klen), &r);
    if (!off) return CV_ENOTFOUND;
    return rec_value(idx, &r, ref);
}

/* One found reference into the batch outputs (or a miss); returns 1 when found, 0 when missing
 * and -1 when the record is corrupt. */
static inline int put_result(const cv_index *idx, size_t off, const recview *r, size_t k,
                             int64_t *url_ids, uint64_t *offsets, uint64_t *lengths) {
    cv_ref ref;
    if (off && rec_value(idx, r, &ref) == CV_OK) {
        url_ids[k] = ref.url == CV_URL_INLINE ? CV_ID_INLINE : (int64_t)ref.url;
        offsets[k] = ref.offset;
        lengths[k] = ref.length;
        return 1;
    }
    url_ids[k] = CV_ID_MISSING;
    offsets[k] = 0;
    lengths[k] = 0;
    return off ? -1 : 0;
}

/* Batch lookup in a frozen index, as a pipeline over groups of G keys: group g is hashed and
 * its directory entries prefetched while group g - 1 has its buckets' lines prefetched and
 * group g - 2, whose buckets are in cache by now, is looked up.  Each stage is a loop of fixed
 * length, so the branches are few and predictable. */
static int64_t get_many_frozen(const cv_index *idx, size_t n, const uint8_t *const *keys,
                               const size_t *klens, int64_t *url_ids, uint64_t *offsets,
                               uint64_t *lengths) {
    enum { G = 8 };
    uint64_t hs[3][G];
    size_t sa[3][G], sz[3][G];
    size_t nb = idx->nb, w = (size_t)idx->w;
    int64_t found = 0;
    int corrupt = 0;
    for (size_t g = 0; g < n + 2 * G; g += G) {
        size_t t = (g / G) % 3;
        if (g < n) { /* stage 1 */
            size_t m = n - g < G ? n - g : G;
            for (size_t i = 0; i < m; i++) {
                uint64_t h = key_hash(keys[g + i], klens[g + i]);
                hs[t][i] = h;
                CV_PREFETCH(idx->dir + bucket_of(h, nb) * w);
            }
        }
        if (g >= G && g - G < n) { /* stage 2 */
            size_t g1 = g - G, t1 = (t + 2) % 3, m = n - g1 < G ? n - g1 : G;
            for (size_t i = 0; i < m; i++) {
                size_t a = 0, z = 0;
                if (bucket_span(idx, bucket_of(hs[t1][i], nb), &a, &z))
                    prefetch_span(idx->rec, a, z);
                sa[t1][i] = a;
                sz[t1][i] = z;
            }
        }
        if (g >= 2 * G) { /* stage 3 */
            size_t g2 = g - 2 * G, t2 = (t + 1) % 3, m = n - g2 < G ? n - g2 : G;
            for (size_t i = 0; i < m; i++) {
                recview r;
                size_t k = g2 + i;
                size_t off = scan_bucket(idx, sa[t2][i], sz[t2][i], keys[k], klens[k],
                                         hs[t2][i], &r);
                int got = put_result(idx, off, &r, k, url_ids, offsets, lengths);
                found += got > 0;
                corrupt |= got < 0;
            }
        }
    }
    return corrupt ? CV_ECORRUPT : found;
}

int64_t cv_index_get_many(const cv_index *idx, size_t n, const uint8_t *const *keys,
                          const size_t *klens, int64_t *url_ids, uint64_t *offsets,
                          uint64_t *lengths) {
    /* Dynamic: a software pipeline keeps many independent cache misses in flight.  Key i is
     * hashed and its home slot prefetched; key i - D has the record of its first tag match
     * prefetched; key i - 2D is looked up, its record now in cache. */
    enum { D = 16, R = 64 };
    uint64_t hs[R];
    int64_t found = 0;
    int corrupt = 0;
    size_t ns = idx->nslots;
    if (idx->frozen ? idx->nb == 0 : ns == 0) {
        for (size_t i = 0; i < n; i++) put_result(idx, 0, NULL, i, url_ids, offsets, lengths);
        return 0;
    }
    if (idx->frozen) return get_many_frozen(idx, n, keys, klens, url_ids, offsets, lengths);
    for (size_t i = 0; i < n + 2 * D; i++) {
        if (i < n) {
            uint64_t h = key_hash(keys[i], klens[i]);
            hs[i % R] = h;
            CV_PREFETCH(idx->slots + home_of(h, ns));
        }
        if (i >= D && i - D < n) {
            uint64_t h = hs[(i - D) % R], tag = tag_of(h);
            size_t pos = home_of(h, ns);
            for (int probes = 0; probes < 8; probes++) {
                uint64_t s = idx->slots[pos];
                if (s == SLOT_EMPTY) break;
                if ((s >> 48) == tag && s != SLOT_TOMB) {
                    size_t off = (size_t)(s & OFF_MASK);
                    CV_PREFETCH(idx->rec + off);
                    CV_PREFETCH(idx->rec + off + 40);
                    break;
                }
                if (++pos == ns) pos = 0;
            }
        }
        if (i >= 2 * D) {
            size_t k = i - 2 * D;
            recview r;
            size_t off = locate(idx, keys[k], klens[k], hs[k % R], &r);
            int got = put_result(idx, off, &r, k, url_ids, offsets, lengths);
            found += got > 0;
            corrupt |= got < 0;
        }
    }
    return corrupt ? CV_ECORRUPT : found;
}

int64_t cv_index_get_many_shared(const cv_index *idx, size_t n, const uint8_t *const *keys,
                                 const size_t *klens, int64_t *url_ids, uint64_t *offsets,
                                 uint64_t *lengths, size_t *next, size_t part) {
    int64_t found = 0;
    int corrupt = 0;
    if (part == 0) part = 1;
    for (;;) {
        size_t lo = cv_claim(next, part);
        if (lo >= n) break;
        size_t m = n - lo < part ? n - lo : part;
        int64_t got = cv_index_get_many(idx, m, keys + lo, klens + lo, url_ids + lo, offsets + lo,
                                        lengths + lo);
        if (got < 0) corrupt = 1;
        else found += got;
    }
    return corrupt ? CV_ECORRUPT : found;
}

int cv_index_inline(const cv_index *idx, const cv_ref *ref, const uint8_t **data, size_t *len) {
    if (ref->url != CV_URL_INLINE) return CV_EINVAL;
    if (ref->offset > idx->rec_len || ref->length > idx->rec_len - ref->offset) return CV_ECORRUPT;
    *data = idx->rec + ref->offset;
    *len = (size_t)ref->length;
    return CV_OK;
}

/* ---------------------------------------------------------------- iteration */

/* Next live entry from *cursor: *found gets the arena offset of the record holding its value
 * (after following forward pointers) and *r its parse. */
static int next_rec(const cv_index *idx, size_t *cursor, size_t *found, recview *r) {
    if (idx->frozen) { /* cursor counts entries of the order array */
        if (*cursor >= idx->live) return CV_ENOTFOUND;
        uint64_t off = ent_get(idx->order, idx->w, *cursor);
        if (off >= idx->rec_len || !rec_parse(idx->rec, idx->rec_len, (size_t)off, r) ||
            (r->flags & F_KIND) == K_FWD)
            return CV_ECORRUPT;
        *found = (size_t)off;
        ++*cursor;
        return CV_OK;
    }
    size_t off = *cursor < REC_START ? REC_START : *cursor;
    while (off < idx->rec_len) {
        if (!rec_parse(idx->rec, idx->rec_len, off, r)) return CV_ECORRUPT;
        size_t next = r->end;
        if (!(r->flags & F_MOVED)) {
            /* follow forward pointers; each points strictly later, so this ends */
            size_t at = off;
            while ((r->flags & F_KIND) == K_FWD) {
                uint64_t t;
                if (!varint_get(idx->rec + r->val, idx->rec + r->end, &t)) return CV_ECORRUPT;
                if (t == 0) break;
                if (t <= at || !rec_parse(idx->rec, idx->rec_len, (size_t)t, r))
                    return CV_ECORRUPT;
                at = (size_t)t;
            }
            if ((r->flags & F_KIND) != K_FWD) {
                *found = at;
                *cursor = next;
                return CV_OK;
            }
        }
        off = next;
    }
    *cursor = off;
    return CV_ENOTFOUND;
}

int cv_index_next(const cv_index *idx, size_t *cursor, const uint8_t **key, size_t *klen,
                  cv_ref *ref) {
    recview r;
    size_t at;
    int st = next_rec(idx, cursor, &at, &r);
    if (st) return st;
    if ((st = rec_value(idx, &r, ref))) return st;
    *key = r.key;
    *klen = r.klen;
    return CV_OK;
}

/* Rewrite the arena with only live records, in iteration order, and rebuild the slots. */
static int compact(cv_index *idx) {
    size_t cap = idx->rec_len - idx->garbage + REC_START;
    uint8_t *nr = CV_MALLOC(cap);
    if (!nr) return CV_ENOMEM;
    hint_huge(nr, cap);
    memset(nr, 0, REC_START);
    size_t len = REC_START, cursor = 0, at;
    recview r;
    int st;
    while ((st = next_rec(idx, &cursor, &at, &r)) == CV_OK) {
        size_t sz = r.end - at;
        if (sz > cap - len) {
            CV_FREE(nr);
            return CV_ECORRUPT;
        }
        /* same record with MOVED cleared (flags are its second byte) */
        memcpy(nr + len, idx->rec + at, sz);
        nr[len + 1] = (uint8_t)(nr[len + 1] & ~F_MOVED);
        len += sz;
    }
    if (st != CV_ENOTFOUND) {
        CV_FREE(nr);
        return st;
    }
    if (!idx->borrowed) CV_FREE(idx->rec);
    idx->rec = nr;
    idx->rec_len = len;
    idx->rec_cap = cap;
    idx->garbage = 0;
    return rehash(idx, slots_for(idx->live));
}

/* ---------------------------------------------------------------- freeze / thaw */

/* Regroup the records of a dynamic index without garbage by hash bucket, each non-empty bucket
 * behind its header (see bucket_head). */
static int freeze(cv_index *idx) {
    /* per bucket, in one 24-byte entry (pass 2 touches one line per record for them): its
     * records' bytes, then where its fingerprints start; where its next record goes; its record
     * count; the records placed so far */
    typedef struct {
        uint64_t at, cur;
        uint32_t cnt, put;
    } bfill;
    size_t n = idx->live;
    if (idx->garbage) return CV_EINVAL;
    size_t nb = n / BUCKET + 1;
    bfill *bf = CV_MALLOC((nb + 1) * sizeof(bfill));
    uint32_t *bk = CV_MALLOC((n ? n : 1) * sizeof(uint32_t));
    uint8_t *fpa = CV_MALLOC(n ? n : 1); /* fingerprint of every record */
    uint8_t *dir = NULL, *order = NULL, *nr = NULL;
    int st = CV_OK;
    if (!bf || !bk || !fpa) {
        st = CV_ENOMEM;
        goto done;
    }
    memset(bf, 0, (nb + 1) * sizeof(bfill));
    /* pass 1: bucket of every record, records and bytes per bucket */
    size_t off = REC_START, i = 0;
    while (off < idx->rec_len) {
        recview r;
        if (!rec_parse(idx->rec, idx->rec_len, off, &r) || (r.flags & F_KIND) == K_FWD || i >= n) {
            st = CV_ECORRUPT;
            goto done;
        }
        uint64_t h = key_hash(r.key, r.klen);
        size_t b = bucket_of(h, nb);
        fpa[i] = fp_of(h);
        bk[i++] = (uint32_t)b;
        bf[b].cnt++;
        bf[b].at += r.end - off;
        off = r.end;
    }
    if (i != n) {
        st = CV_ECORRUPT;
        goto done;
    }
    /* offset width: the largest offset inside a bucket is below its records' bytes */
    uint64_t most = 0;
    for (size_t b = 0; b < nb; b++) most = bf[b].at > most ? bf[b].at : most;
    int ow = most <= 0x100 ? 1 : most <= 0x10000 ? 2 : most <= UINT64_C(0x100000000) ? 4 : 8;
    /* bucket starts: header (count, fingerprints, offsets) then records */
    size_t total = REC_START;
    for (size_t b = 0; b < nb; b++) {
        size_t bytes = (size_t)bf[b].at;
        bf[b].at = total;
        if (bf[b].cnt)
            total += varint_size(bf[b].cnt) + (size_t)bf[b].cnt * (1 + (size_t)ow) + bytes;
    }
    bf[nb].at = total;
    int w = total <= 0xFFFFFFFFu ? 4 : 8;
    dir = CV_MALLOC((nb + 1) * (size_t)w);
    order = CV_MALLOC((n ? n : 1) * (size_t)w);
    nr = CV_MALLOC(total);
    if (!dir || !order || !nr) {
        st = CV_ENOMEM;
        goto done;
    }
    hint_huge(nr, total); /* before the pages are first touched */
    memset(nr, 0, REC_START);
    for (size_t b = 0; b <= nb; b++) {
        ent_put(dir, w, b, bf[b].at);
        if (b < nb && bf[b].cnt) {
            size_t hn = varint_put(nr + bf[b].at, bf[b].cnt);
            bf[b].at += hn; /* now: the fingerprints */
            bf[b].cur = bf[b].at + (size_t)bf[b].cnt * (1 + (size_t)ow); /* the records */
        }
    }
    /* pass 2: each record into its bucket (insertion order within a bucket), MOVED cleared,
     * with its fingerprint and offset in the header; remember insertion order.  The writes land
     * in random buckets: the bucket's entry is asked for 32 records ahead, the place of its
     * next record and its header 16 ahead */
    off = REC_START;
    for (i = 0; i < n; i++) {
        recview r;
        if (i + 32 < n) CV_PREFETCH(bf + bk[i + 32]);
        if (i + 16 < n) {
            const bfill *f = bf + bk[i + 16];
            CV_PREFETCH(nr + f->cur);
            CV_PREFETCH(nr + f->at);
        }
        if (!rec_parse(idx->rec, idx->rec_len, off, &r)) { /* checked in pass 1: cannot fail */
            st = CV_ECORRUPT;
            goto done;
        }
        bfill *f = bf + bk[i];
        size_t sz = r.end - off, at = (size_t)f->cur, j = f->put++;
        size_t fps = (size_t)f->at, rs = fps + (size_t)f->cnt * (1 + (size_t)ow);
        memcpy(nr + at, idx->rec + off, sz);
        nr[at] = fpa[i];
        nr[at + 1] = (uint8_t)(nr[at + 1] & ~F_MOVED);
        nr[fps + j] = fpa[i];
        ent_put(nr + fps + f->cnt, ow, j, at - rs);
        ent_put(order, w, i, at);
        f->cur += sz;
        off = r.end;
    }
    CV_FREE(idx->rec);
    CV_FREE(idx->slots);
    idx->rec = nr;
    idx->rec_len = idx->rec_cap = total;
    idx->slots = NULL;
    idx->nslots = idx->used = idx->tombs = 0;
    idx->dir = dir;
    idx->order = order;
    idx->nb = nb;
    idx->w = w;
    idx->ow = ow;
    idx->frozen = 1;
    nr = dir = order = NULL;
done:
    CV_FREE(bf);
    CV_FREE(bk);
    CV_FREE(fpa);
    CV_FREE(dir);
    CV_FREE(order);
    CV_FREE(nr);
    return st;
}

/* Back to insertion order and a slot table (before a modification). */
static int thaw(cv_index *idx) {
    size_t n = idx->live, cap = idx->rec_len + 64;
    uint8_t *nr = CV_MALLOC(cap);
    if (!nr) return CV_ENOMEM;
    hint_huge(nr, cap);
    memset(nr, 0, REC_START);
    size_t len = REC_START;
    for (size_t i = 0; i < n; i++) {
        recview r;
        uint64_t off = ent_get(idx->order, idx->w, i);
        if (off >= idx->rec_len || !rec_parse(idx->rec, idx->rec_len, (size_t)off, &r) ||
            (r.flags & F_KIND) == K_FWD || r.end - off > cap - len) {
            CV_FREE(nr);
            return CV_ECORRUPT;
        }
        memcpy(nr + len, idx->rec + off, r.end - off);
        len += r.end - (size_t)off;
    }
    uint8_t *old = idx->rec;
    size_t old_len = idx->rec_len, old_cap = idx->rec_cap;
    idx->rec = nr;
    idx->rec_len = len;
    idx->rec_cap = cap;
    idx->frozen = 0;
    int st = rehash(idx, slots_for(n < 1024 ? 2048 : n * 2));
    if (st) {
        idx->rec = old;
        idx->rec_len = old_len;
        idx->rec_cap = old_cap;
        idx->frozen = 1;
        CV_FREE(nr);
        return st;
    }
    CV_FREE(old);
    CV_FREE(idx->dir);
    CV_FREE(idx->order);
    idx->dir = idx->order = NULL;
    idx->nb = 0;
    return CV_OK;
}

/* ---------------------------------------------------------------- insert */

/* Append a record; returns its arena offset (> 0) or a CV_E* code. */
static int64_t append_rec(cv_index *idx, const uint8_t *key, size_t klen, uint64_t h,
                          unsigned flags, const uint8_t *v1, size_t n1, const uint8_t *v2,
                          size_t n2) {
    if (klen > SIZE_MAX / 4 || n2 > SIZE_MAX / 4) return CV_ERANGE;
    size_t vlen = padded(n1 + n2);
    size_t need = 4 + 20 + klen + vlen;
    int st = grow_rec(idx, need);
    if (st) return st;
    size_t off = idx->rec_len;
    uint8_t *p = idx->rec + off;
    p[0] = fp_of(h);
    p[1] = (uint8_t)flags;
    p[2] = (uint8_t)(klen < 255 ? klen : 255);
    p[3] = (uint8_t)(vlen < 255 ? vlen : 255);
    size_t n = 4;
    if (klen >= 255) n += varint_put(p + n, klen);
    if (vlen >= 255) n += varint_put(p + n, vlen);
    if (klen) memcpy(p + n, key, klen);
    n += klen;
    if (n1) memcpy(p + n, v1, n1);
    if (n2) memcpy(p + n + n1, v2, n2);
    if (vlen > n1 + n2) memset(p + n + n1 + n2, 0, vlen - n1 - n2);
    idx->rec_len += n + vlen;
    return (int64_t)off;
}

/* Set the kind / MOVED bits of the record at off (its second byte). */
static inline void set_flags(cv_index *idx, size_t off, unsigned flags) {
    idx->rec[off + 1] = (uint8_t)((idx->rec[off + 1] & ~7u) | flags);
}

/* Turn the record r at off into a forward pointer to target (0: deleted).  Returns 0 if the
 * pointer does not fit its value (records written elsewhere may be unpadded). */
static int make_fwd(cv_index *idx, size_t off, const recview *r, uint64_t target) {
    if (varint_size(target) > r->vlen) return 0;
    memset(idx->rec + r->val, 0, r->vlen);
    varint_put(idx->rec + r->val, target);
    set_flags(idx, off, K_FWD | (r->flags & F_MOVED));
    idx->garbage += r->end - off;
    return 1;
}

static int upsert(cv_index *idx, const uint8_t *key, size_t klen, unsigned kind,
                  const uint8_t *v1, size_t n1, const uint8_t *v2, size_t n2) {
    int st;
    const uint8_t *lo = idx->rec, *hi = idx->rec + idx->rec_len;
    int key_in = klen && key >= lo && key < hi, val_in = n2 && v2 >= lo && v2 < hi;
    if (key_in || val_in) {
        /* a key or inline value taken from this index: thawing, compacting or appending can
         * move the arena under it, so copy both out first */
        uint8_t *tmp = CV_MALLOC(klen + n2 + 1);
        if (!tmp) return CV_ENOMEM;
        if (klen) memcpy(tmp, key, klen);
        if (n2) memcpy(tmp + klen, v2, n2);
        st = upsert(idx, tmp, klen, kind, v1, n1, tmp + klen, n2);
        CV_FREE(tmp);
        return st;
    }
    if ((st = own(idx))) return st;
    if (idx->frozen && (st = thaw(idx))) return st;
    if (idx->garbage > 65536 && idx->garbage > idx->rec_len / 2) {
        if ((st = compact(idx))) return st;
    }
    uint64_t h = key_hash(key, klen);
    size_t pos = 0;
    size_t off = find_h(idx, key, klen, h, &pos);
    if (off) {
        recview r;
        if (!rec_parse(idx->rec, idx->rec_len, off, &r)) return CV_ECORRUPT;
        if (n1 + n2 <= r.vlen) { /* in place */
            uint8_t *p = idx->rec + r.val;
            if (n1) memcpy(p, v1, n1);
            if (n2) memmove(p + n1, v2, n2);
            memset(p + n1 + n2, 0, r.vlen - n1 - n2);
            set_flags(idx, off, kind | (r.flags & F_MOVED));
            return CV_OK;
        }
        int64_t no = append_rec(idx, key, klen, h, kind | F_MOVED, v1, n1, v2, n2);
        if (no < 0) return (int)no;
        if (!rec_parse(idx->rec, idx->rec_len, off, &r)) return CV_ECORRUPT; /* arena moved */
        if (!make_fwd(idx, off, &r, (uint64_t)no)) {
            /* cannot forward: drop the old record and let the new one take the end position */
            make_fwd(idx, off, &r, 0);
            set_flags(idx, (size_t)no, kind);
        }
        idx->slots[pos] = (tag_of(h) << 48) | (uint64_t)no;
        return CV_OK;
    }
    if (idx->live >= CV_INDEX_MAX_ENTRIES) return CV_ERANGE;
    if ((st = ensure_slots(idx, 1))) return st;
    int64_t no = append_rec(idx, key, klen, h, kind, v1, n1, v2, n2);
    if (no < 0) return (int)no;
    size_t p = home_of(h, idx->nslots);
    while (idx->slots[p] > SLOT_TOMB) {
        if (++p == idx->nslots) p = 0;
    }
    if (idx->slots[p] == SLOT_TOMB) idx->tombs--;
    else idx->used++;
    idx->slots[p] = (tag_of(h) << 48) | (uint64_t)no;
    idx->live++;
    return CV_OK;
}

int cv_index_put(cv_index *idx, const uint8_t *key, size_t klen, uint32_t url, uint64_t offset,
                 uint64_t length) {
    if (url >= idx->n_urls) return CV_EINVAL;
    if (length != CV_LEN_WHOLE && offset > UINT64_MAX - length) return CV_ERANGE;
    uint8_t buf[32];
    unsigned kind = length == CV_LEN_WHOLE ? K_WHOLE : K_RANGE;
    size_t n = encode_ref(buf, kind, url, offset, length);
    return upsert(idx, key, klen, kind, buf, n, NULL, 0);
}

int cv_index_put_inline(cv_index *idx, const uint8_t *key, size_t klen, const uint8_t *data,
                        size_t dlen) {
    uint8_t buf[10];
    if (dlen > ((size_t)OFF_MASK)) return CV_ERANGE;
    size_t n = varint_put(buf, dlen);
    return upsert(idx, key, klen, K_INLINE, buf, n, data, dlen);
}

int cv_index_put_many(cv_index *idx, size_t n, const uint8_t *const *keys, const size_t *klens,
                      const uint32_t *url_ids, const uint64_t *offsets, const uint64_t *lengths) {
    size_t kb = 0;
    for (size_t i = 0; i < n; i++) {
        if (url_ids[i] >= idx->n_urls) return CV_EINVAL;
        if (lengths[i] != CV_LEN_WHOLE && offsets[i] > UINT64_MAX - lengths[i]) return CV_ERANGE;
        if (klens[i] > SIZE_MAX / 4 - kb) return CV_ERANGE;
        kb += klens[i];
    }
    int st = cv_index_reserve(idx, n, kb);
    if (st) return st;
    for (size_t i = 0; i < n; i++) {
        if ((st = cv_index_put(idx, keys[i], klens[i], url_ids[i], offsets[i], lengths[i])))
            return st;
    }
    return CV_OK;
}

/* Writes the chunk coordinates after the plen prefix bytes already in key; returns the key
 * length.  key must hold plen + rank * 21 bytes (+1 for rank 0); coordinates are >= 0. */
static size_t grid_key(uint8_t *key, size_t plen, uint8_t sep, size_t rank,
                       const int64_t *coords) {
    size_t k = plen;
    if (rank == 0) key[k++] = '0';
    for (size_t d = 0; d < rank; d++) {
        if (d) key[k++] = sep;
        uint8_t tmp[21];
        size_t t = 0;
        uint64_t u = (uint64_t)coords[d];
        do {
            tmp[t++] = (uint8_t)('0' + u % 10);
            u /= 10;
        } while (u);
        while (t) key[k++] = tmp[--t];
    }
    return k;
}

int cv_index_get_grid(const cv_index *idx, const uint8_t *prefix, size_t plen, uint8_t sep,
                      size_t rank, const int64_t *grid, size_t n, uint32_t *url_ids,
                      uint64_t *offsets, uint64_t *lengths, uint8_t *found) {
    enum { MAXP = 4096, MAXR = 64 };
    uint8_t key[MAXP + MAXR * 21 + 1];
    int64_t at[MAXR];
    if (plen > MAXP || rank > MAXR) return CV_EINVAL;
    size_t total = 1;
    for (size_t d = 0; d < rank; d++) {
        if (grid[d] < 0) return CV_EINVAL;
        if (grid[d] && total > SIZE_MAX / (uint64_t)grid[d]) return CV_ERANGE;
        total *= (size_t)grid[d];
        at[d] = 0;
    }
    if (total != n) return CV_EINVAL;
    if (plen) memcpy(key, prefix, plen);
    for (size_t i = 0; i < n; i++) {
        size_t k = grid_key(key, plen, sep, rank, at);
        cv_ref r;
        int st = cv_index_get(idx, key, k, &r);
        if (st == CV_OK) {
            url_ids[i] = r.url;
            offsets[i] = r.offset;
            lengths[i] = r.length;
            found[i] = 1;
        } else if (st == CV_ENOTFOUND) {
            url_ids[i] = 0;
            offsets[i] = lengths[i] = 0;
            found[i] = 0;
        } else {
            return st;
        }
        for (size_t d = rank; d-- > 0;) { /* next coordinate, C order */
            if (++at[d] < grid[d]) break;
            at[d] = 0;
        }
    }
    return CV_OK;
}

int cv_index_put_grid(cv_index *idx, const uint8_t *prefix, size_t plen, uint8_t sep, size_t n,
                      size_t rank, const int64_t *coords, const uint32_t *url_ids,
                      const uint64_t *offsets, const uint64_t *lengths) {
    enum { MAXP = 4096, MAXR = 64 };
    uint8_t key[MAXP + MAXR * 21];
    if (plen > MAXP || rank > MAXR) return CV_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (url_ids[i] >= idx->n_urls) return CV_EINVAL;
        if (lengths[i] != CV_LEN_WHOLE && offsets[i] > UINT64_MAX - lengths[i]) return CV_ERANGE;
    }
    int st;
    if (n > SIZE_MAX / (plen + 8 + 1)) return CV_ERANGE;
    if ((st = cv_index_reserve(idx, n, n * (plen + 8)))) return st;
    if (plen) memcpy(key, prefix, plen);
    for (size_t i = 0; i < n; i++) {
        for (size_t d = 0; d < rank; d++)
            if (coords[i * rank + d] < 0) return CV_EINVAL;
        size_t k = grid_key(key, plen, sep, rank, coords + i * rank);
        if ((st = cv_index_put(idx, key, k, url_ids[i], offsets[i], lengths[i]))) return st;
    }
    return CV_OK;
}

int cv_index_del(cv_index *idx, const uint8_t *key, size_t klen) {
    int st;
    if (cv_index_find(idx, key, klen) < 0) return CV_ENOTFOUND;
    if ((st = own(idx))) return st;
    if (idx->frozen && (st = thaw(idx))) return st;
    size_t pos = 0;
    size_t off = find_h(idx, key, klen, key_hash(key, klen), &pos);
    recview r;
    if (!off || !rec_parse(idx->rec, idx->rec_len, off, &r)) return CV_ECORRUPT;
    if (!make_fwd(idx, off, &r, 0)) return CV_ECORRUPT; /* every value holds at least one byte */
    idx->slots[pos] = SLOT_TOMB;
    idx->tombs++;
    idx->live--;
    return CV_OK;
}

/* ---------------------------------------------------------------- URLs */

static uint64_t url_hash_of(const uint8_t *u, size_t len) { return cv_xxh64(u, len, 0x5eed); }

static int url_hash_build(cv_index *idx, size_t want) {
    size_t n = 16;
    while (n < want * 2) n *= 2;
    uint32_t *t = CV_MALLOC(n * 4);
    if (!t) return CV_ENOMEM;
    memset(t, 0, n * 4);
    for (size_t i = 0; i < idx->n_urls; i++) {
        const uint8_t *u = idx->url_bytes + idx->url_off[i];
        size_t l = (size_t)(idx->url_off[i + 1] - idx->url_off[i]);
        size_t pos = (size_t)url_hash_of(u, l) & (n - 1);
        while (t[pos]) pos = (pos + 1) & (n - 1);
        t[pos] = (uint32_t)(i + 1);
    }
    CV_FREE(idx->url_hash);
    idx->url_hash = t;
    idx->url_hash_n = n;
    return CV_OK;
}

size_t cv_index_url_count(const cv_index *idx) { return idx->n_urls; }

int cv_index_url_get(const cv_index *idx, uint32_t id, const uint8_t **url, size_t *len) {
    if (id >= idx->n_urls) return CV_ENOTFOUND;
    uint64_t a = idx->url_off[id], b = idx->url_off[id + 1];
    if (a > b || b > idx->url_bytes_len) return CV_ECORRUPT;
    *url = idx->url_bytes + a;
    *len = (size_t)(b - a);
    return CV_OK;
}

int64_t cv_index_url_intern(cv_index *idx, const uint8_t *u, size_t len) {
    int st;
    if ((st = own(idx))) return st;
    if (idx->url_hash_n == 0 || (idx->n_urls + 1) * 2 > idx->url_hash_n) {
        if ((st = url_hash_build(idx, idx->n_urls + 1))) return st;
    }
    size_t mask = idx->url_hash_n - 1;
    size_t pos = (size_t)url_hash_of(u, len) & mask;
    while (idx->url_hash[pos]) {
        uint32_t id = idx->url_hash[pos] - 1;
        const uint8_t *v = idx->url_bytes + idx->url_off[id];
        size_t vl = (size_t)(idx->url_off[id + 1] - idx->url_off[id]);
        if (vl == len && (len == 0 || memcmp(v, u, len) == 0)) return id;
        pos = (pos + 1) & mask;
    }
    if (idx->n_urls >= CV_URL_MAX) return CV_ERANGE;
    uint32_t id = (uint32_t)idx->n_urls;
    if ((st = grow_bytes(&idx->url_bytes, &idx->url_bytes_cap, idx->url_bytes_len + len))) return st;
    if (idx->n_urls + 2 > idx->url_off_cap) {
        size_t nc = idx->url_off_cap * 2;
        uint64_t *o = CV_REALLOC(idx->url_off, nc * 8);
        if (!o) return CV_ENOMEM;
        idx->url_off = o;
        idx->url_off_cap = nc;
    }
    if (len) memcpy(idx->url_bytes + idx->url_bytes_len, u, len);
    idx->url_bytes_len += len;
    idx->n_urls++;
    idx->url_off[idx->n_urls] = idx->url_bytes_len;
    idx->url_hash[pos] = id + 1;
    return id;
}

int cv_index_urls_replace(cv_index *idx, size_t n, const uint8_t *const *urls, const size_t *lens) {
    int st;
    if (n != idx->n_urls) return CV_EINVAL;
    if ((st = own(idx))) return st;
    uint32_t *map = CV_MALLOC((n ? n : 1) * 4);
    if (!map) return CV_ENOMEM;
    /* build a fresh URL table, then remap the records */
    uint64_t *old_off = idx->url_off;
    uint8_t *old_bytes = idx->url_bytes;
    size_t old_cap = idx->url_off_cap, old_bcap = idx->url_bytes_cap, old_blen = idx->url_bytes_len;
    idx->url_off = CV_MALLOC(8 * 4);
    if (!idx->url_off) {
        idx->url_off = old_off;
        CV_FREE(map);
        return CV_ENOMEM;
    }
    idx->url_off[0] = 0;
    idx->url_off_cap = 4;
    idx->url_bytes = NULL;
    idx->url_bytes_cap = idx->url_bytes_len = 0;
    idx->n_urls = 0;
    CV_FREE(idx->url_hash);
    idx->url_hash = NULL;
    idx->url_hash_n = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t id = cv_index_url_intern(idx, urls[i], lens[i]);
        if (id < 0) {
            /* restore the old table */
            CV_FREE(idx->url_off);
            CV_FREE(idx->url_bytes);
            CV_FREE(idx->url_hash);
            idx->url_hash = NULL;
            idx->url_hash_n = 0;
            idx->url_off = old_off;
            idx->url_bytes = old_bytes;
            idx->url_off_cap = old_cap;
            idx->url_bytes_cap = old_bcap;
            idx->url_bytes_len = old_blen;
            idx->n_urls = n;
            CV_FREE(map);
            return (int)id;
        }
        map[i] = (uint32_t)id;
    }
    CV_FREE(old_off);
    CV_FREE(old_bytes);
    int same = 1;
    for (size_t i = 0; i < n; i++) same &= map[i] == i;
    st = CV_OK;
    if (!same) {
        /* every live record, in either mode (a frozen arena also holds bucket headers); merged
         * ids are never larger than the old ones (first occurrence wins), so every re-encoded
         * value fits where the old one was */
        size_t cursor = 0, at;
        recview r;
        while ((st = next_rec(idx, &cursor, &at, &r)) == CV_OK) {
            cv_ref ref;
            unsigned kind = r.flags & F_KIND;
            if (kind == K_RANGE || kind == K_WHOLE) {
                if (rec_value_n(idx, &r, &ref, n) != CV_OK) {
                    st = CV_ECORRUPT;
                    break;
                }
                uint8_t buf[32];
                size_t len = encode_ref(buf, kind, map[ref.url], ref.offset, ref.length);
                if (len > r.vlen) {
                    st = CV_ECORRUPT;
                    break;
                }
                memcpy(idx->rec + r.val, buf, len);
                memset(idx->rec + r.val + len, 0, r.vlen - len);
            }
        }
        if (st == CV_ENOTFOUND) st = CV_OK;
    }
    CV_FREE(map);
    return st;
}

/* ---------------------------------------------------------------- native format */

static inline size_t pad8(size_t n) { return (n + 7) & ~(size_t)7; }

typedef struct {
    size_t live, n_urls, nb, w, rec_len, url_bytes_len;
    size_t sec[5]; /* section offsets: url offsets, directory, order, records, url text */
    size_t total;
} layout;

/* Compute section offsets; returns 0 when a count is out of range. */
static int layout_compute(layout *L) {
    const size_t lim = (size_t)1 << 47; /* no section exceeds 128 TiB: keeps sums overflow-free */
    if (L->n_urls > CV_URL_MAX || L->live > CV_INDEX_MAX_ENTRIES || L->nb == 0 ||
        L->nb > L->live + 1 || L->rec_len > lim || L->rec_len < REC_START ||
        L->url_bytes_len > lim || (L->w != 4 && L->w != 8))
        return 0;
    size_t sizes[5] = {(L->n_urls + 1) * 8, (L->nb + 1) * L->w, L->live * L->w, L->rec_len,
                       L->url_bytes_len};
    size_t pos = HEADER_SIZE;
    for (int s = 0; s < 5; s++) {
        L->sec[s] = pos;
        pos += pad8(sizes[s]);
    }
    L->total = pos;
    return 1;
}

int64_t cv_index_serialized_size(cv_index *idx) {
    int st = cv_index_shrink(idx);
    if (st) return st;
    layout L = {idx->live, idx->n_urls, idx->nb, (size_t)idx->w, idx->rec_len,
                idx->url_bytes_len, {0}, 0};
    if (!layout_compute(&L)) return CV_ERANGE;
    return (int64_t)L.total;
}

int64_t cv_index_serialize(cv_index *idx, uint8_t *dst, size_t dstcap) {
    if (!cv_host_is_le()) return CV_EUNSUPPORTED;
    int st = cv_index_shrink(idx);
    if (st) return st;
    layout L = {idx->live, idx->n_urls, idx->nb, (size_t)idx->w, idx->rec_len,
                idx->url_bytes_len, {0}, 0};
    if (!layout_compute(&L)) return CV_ERANGE;
    if (dstcap < L.total) return CV_ERANGE;
    memset(dst, 0, HEADER_SIZE);
    memcpy(dst, MAGIC, 8);
    cv_store32le(dst + 8, FORMAT_VERSION);
    cv_store32le(dst + 12, HEADER_SIZE);
    cv_store64le(dst + 16, idx->live);
    cv_store64le(dst + 24, idx->n_urls);
    cv_store64le(dst + 32, idx->nb);
    cv_store64le(dst + 40, (uint64_t)idx->w);
    cv_store64le(dst + 48, idx->rec_len);
    cv_store64le(dst + 56, idx->url_bytes_len);
    cv_store64le(dst + 64, L.total);
    cv_store64le(dst + 72, (uint64_t)idx->ow);
    const void *src[5] = {idx->url_off, idx->dir, idx->order, idx->rec, idx->url_bytes};
    size_t sizes[5] = {(idx->n_urls + 1) * 8, (idx->nb + 1) * (size_t)idx->w,
                       idx->live * (size_t)idx->w, idx->rec_len, idx->url_bytes_len};
    for (int s = 0; s < 5; s++) {
        size_t end = s < 4 ? L.sec[s + 1] : L.total;
        if (sizes[s]) memcpy(dst + L.sec[s], src[s], sizes[s]);
        memset(dst + L.sec[s] + sizes[s], 0, end - L.sec[s] - sizes[s]);
    }
    cv_store64le(dst + 112, cv_xxh64(dst + HEADER_SIZE, L.total - HEADER_SIZE, 0));
    cv_store64le(dst + 120, cv_xxh64(dst, 120, 0));
    return (int64_t)L.total;
}

int cv_index_check(const cv_index *idx) { return cv_index_check_at(idx, NULL); }

/* the field at fault and its byte offset (relative to the arena, made a file offset by rec_at) */
static int check_fail(const cv_index *idx, cv_where *w, const char *field, uint64_t rec_off) {
    if (w) {
        w->field = field;
        w->at = idx->rec_at + rec_off;
    }
    return CV_EFORMAT;
}

int cv_index_check_at(const cv_index *idx, cv_where *w) {
    size_t live = 0, off = REC_START;
    if (idx->frozen) {
        /* buckets tile the arena; a non-empty one is a header and records that tile the rest,
         * at the header's offsets; every record sits in the bucket its key hashes to, under its
         * key's fingerprint; the order array names each record exactly once (checked with a
         * bitmap of record starts) */
        size_t nbits = idx->rec_len;
        uint8_t *seen = CV_MALLOC(nbits / 8 + 1);
        if (!seen) return CV_ENOMEM;
        memset(seen, 0, nbits / 8 + 1);
        int st = CV_OK;
        if (ent_get(idx->dir, idx->w, 0) != REC_START ||
            ent_get(idx->dir, idx->w, idx->nb) != idx->rec_len)
            st = check_fail(idx, w, "bucket directory (first or last entry)", 0);
        for (size_t b = 0; st == CV_OK && b < idx->nb; b++) {
            size_t a, z;
            bhead bh;
            if (!bucket_span(idx, b, &a, &z) || a != off) {
                st = check_fail(idx, w, "bucket directory entry (bucket start)", off);
                break;
            }
            if (a == z) continue;
            if (!bucket_head(idx, a, z, &bh)) {
                st = check_fail(idx, w, "bucket header", a);
                break;
            }
            off = bh.rs;
            for (size_t j = 0; j < bh.c; j++) {
                recview r;
                cv_ref ref;
                if (ent_get(bh.offs, idx->ow, j) != off - bh.rs ||
                    !rec_parse(idx->rec, z, off, &r) || (r.flags & F_KIND) == K_FWD ||
                    (r.flags & F_MOVED) || rec_value(idx, &r, &ref) != CV_OK) {
                    st = check_fail(idx, w, "record (length, flags or value)", off);
                    break;
                }
                uint64_t h = key_hash(r.key, r.klen);
                if (bucket_of(h, idx->nb) != b || r.fp != fp_of(h) || bh.fps[j] != fp_of(h)) {
                    st = check_fail(idx, w, "record key (not in the bucket its hash names)", off);
                    break;
                }
                seen[off >> 3] |= (uint8_t)(1u << (off & 7));
                live++;
                off = r.end;
            }
            if (st == CV_OK && off != z) st = check_fail(idx, w, "bucket end", off);
        }
        if (st == CV_OK && (off != idx->rec_len || live != idx->live))
            st = check_fail(idx, w, "record count (header live) or arena end", off);
        for (size_t i = 0; st == CV_OK && i < idx->live; i++) {
            uint64_t o = ent_get(idx->order, idx->w, i);
            if (o >= idx->rec_len || !(seen[o >> 3] & (1u << (o & 7))))
                st = check_fail(idx, w, "order entry (names no record, or one twice)", o);
            else seen[o >> 3] &= (uint8_t)~(1u << (o & 7)); /* each at most once */
        }
        CV_FREE(seen);
        return st;
    }
    /* dynamic: every record parses, values decode, forward pointers point later; each slot names
     * a record that is not a forward pointer and whose key hashes to the slot's tag */
    size_t targets = 0, garbage = 0;
    while (off < idx->rec_len) {
        recview r;
        cv_ref ref;
        if (!rec_parse(idx->rec, idx->rec_len, off, &r)) return check_fail(idx, w, "record", off);
        if ((r.flags & F_KIND) == K_FWD) {
            uint64_t t;
            if (!varint_get(idx->rec + r.val, idx->rec + r.end, &t)) return CV_EFORMAT;
            if (t != 0 && (t <= off || t >= idx->rec_len)) return CV_EFORMAT;
            garbage += r.end - off;
        } else {
            if (rec_value(idx, &r, &ref) != CV_OK) return CV_EFORMAT;
            targets++;
        }
        off = r.end;
    }
    if (targets != idx->live || garbage != idx->garbage) return CV_EFORMAT;
    size_t used = 0, tombs = 0;
    for (size_t s = 0; s < idx->nslots; s++) {
        uint64_t v = idx->slots[s];
        if (v == SLOT_EMPTY) continue;
        used++;
        if (v == SLOT_TOMB) {
            tombs++;
            continue;
        }
        recview r;
        if (!rec_parse(idx->rec, idx->rec_len, (size_t)(v & OFF_MASK), &r) ||
            (r.flags & F_KIND) == K_FWD || tag_of(key_hash(r.key, r.klen)) != (v >> 48))
            return CV_EFORMAT;
        live++;
    }
    if (live != idx->live || used != idx->used || tombs != idx->tombs) return CV_EFORMAT;
    if (idx->live && used >= idx->nslots) return CV_EFORMAT;
    return CV_OK;
}

static cv_index *open_fail_at(cv_index *idx, int st, int *status, cv_where *w, const char *field,
                              uint64_t at) {
    if (idx) cv_index_free(idx);
    if (status) *status = st;
    if (w) {
        w->field = field;
        w->at = at;
    }
    return NULL;
}

cv_index *cv_index_open_buffer(const uint8_t *buf, size_t len, int copy, int verify, int *status) {
    return cv_index_open_buffer_at(buf, len, copy, verify, status, NULL);
}

/* the header's fields, by byte offset */
static const char *const HEADER_FIELDS[7] = {"live (reference count)", "n_urls", "nb (buckets)",
                                             "w (entry width)", "rec_len", "url_len", "total"};

cv_index *cv_index_open_buffer_at(const uint8_t *buf, size_t len, int copy, int verify, int *status,
                                  cv_where *w) {
#define open_fail(idx, st, status) open_fail_at(idx, st, status, w, field, at)
    const char *field = "header";
    uint64_t at = 0;
    if (status) *status = CV_OK;
    if (!cv_host_is_le()) return open_fail(NULL, CV_EUNSUPPORTED, status);
    field = "magic";
    if (len < 8 || memcmp(buf, MAGIC, 8) != 0) return open_fail(NULL, CV_EFORMAT, status);
    field = "header (128 bytes)";
    if (len < HEADER_SIZE) return open_fail(NULL, CV_ETRUNCATED, status);
    field = "header checksum";
    at = 120;
    if (cv_load64le(buf + 120) != cv_xxh64(buf, 120, 0)) return open_fail(NULL, CV_ECHECKSUM, status);
    field = "version";
    at = 8;
    uint32_t version = cv_load32le(buf + 8);
    if (version != FORMAT_VERSION && version != 2) return open_fail(NULL, CV_EVERSION, status);
    field = "header_size";
    at = 12;
    if (cv_load32le(buf + 12) != HEADER_SIZE) return open_fail(NULL, CV_EFORMAT, status);
    uint64_t h[7];
    for (int i = 0; i < 7; i++) h[i] = cv_load64le(buf + 16 + 8 * i);
    /* h: live, n_urls, nb, w, rec_len, url_len, total */
    const uint64_t lim = (uint64_t)1 << 47;
    for (int i = 0; i < 7; i++) {
        field = HEADER_FIELDS[i];
        at = 16 + 8 * (uint64_t)i;
        if (h[i] > lim) return open_fail(NULL, CV_EFORMAT, status);
    }
    field = "live, n_urls, nb, w, rec_len or url_len (out of range together)";
    at = 16;
    layout L = {(size_t)h[0], (size_t)h[1], (size_t)h[2], (size_t)h[3], (size_t)h[4],
                (size_t)h[5], {0}, 0};
    if (!layout_compute(&L)) return open_fail(NULL, CV_EFORMAT, status);
    field = "total (not the size the other fields give)";
    at = 64;
    if (h[6] != L.total) return open_fail(NULL, CV_EFORMAT, status);
    field = "file length (total)";
    at = (uint64_t)len;
    if (len < L.total) return open_fail(NULL, CV_ETRUNCATED, status);
    if (len > L.total) return open_fail(NULL, CV_EFORMAT, status);
    field = "rec_len (too long for 4-byte entries)";
    at = 48;
    if (L.w == 4 && L.rec_len > 0xFFFFFFFFu) return open_fail(NULL, CV_EFORMAT, status);
    uint64_t ow = cv_load64le(buf + 72);
    field = "ow (record offset width)";
    at = 72;
    if (version == FORMAT_VERSION && ow != 1 && ow != 2 && ow != 4 && ow != 8)
        return open_fail(NULL, CV_EFORMAT, status);
    field = "body checksum";
    at = 112;
    if (verify && cv_load64le(buf + 112) != cv_xxh64(buf + HEADER_SIZE, L.total - HEADER_SIZE, 0))
        return open_fail(NULL, CV_ECHECKSUM, status);

    field = "memory";
    at = 0;
    cv_index *idx = CV_MALLOC(sizeof(cv_index));
    if (!idx) return open_fail(NULL, CV_ENOMEM, status);
    memset(idx, 0, sizeof(*idx));
    idx->borrowed = 1;
    idx->frozen = 1;
    idx->live = L.live;
    idx->n_urls = L.n_urls;
    idx->nb = L.nb;
    idx->w = (int)L.w;
    idx->ow = (int)ow;
    idx->rec_len = L.rec_len;
    idx->url_bytes_len = L.url_bytes_len;
    idx->url_off = (uint64_t *)(buf + L.sec[0]);
    idx->dir = (uint8_t *)(buf + L.sec[1]);
    idx->order = (uint8_t *)(buf + L.sec[2]);
    idx->rec = (uint8_t *)(buf + L.sec[3]);
    idx->rec_at = L.sec[3];
    idx->url_bytes = (uint8_t *)(buf + L.sec[4]);
    /* the URL offsets are read in place, so the buffer must be 8-byte aligned; otherwise copy */
    if (copy || ((uintptr_t)buf & 7u)) {
        int st = own(idx);
        if (st) {
            idx->borrowed = 0; /* own() left nothing allocated */
            idx->url_off = NULL;
            idx->dir = idx->order = idx->rec = idx->url_bytes = NULL;
            return open_fail(idx, st, status);
        }
    }
    /* URL offsets are checked now (few); the directory, order and records on every access, and
     * all of them by cv_index_check */
    field = "URL offsets (first or last)";
    at = L.sec[0];
    if (idx->url_off[0] != 0 || idx->url_off[L.n_urls] != L.url_bytes_len)
        return open_fail(idx, CV_EFORMAT, status);
    field = "URL offset (decreasing)";
    for (size_t i = 0; i < L.n_urls; i++) {
        at = L.sec[0] + 8 * (uint64_t)(i + 1);
        if (idx->url_off[i] > idx->url_off[i + 1]) return open_fail(idx, CV_EFORMAT, status);
    }
    field = "records (version 2 layout)";
    at = L.sec[3];
    if (version == 2) {
        /* version 2 (earlier development builds): the same records in buckets without
         * headers.  Back to insertion order through its order array, then regrouped */
        int st = own(idx);
        if (!st) st = thaw(idx);
        if (!st) st = freeze(idx);
        if (st) return open_fail(idx, st == CV_ENOMEM ? st : CV_EFORMAT, status);
    }
    return idx;
#undef open_fail
}
