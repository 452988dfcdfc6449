/* cv_index.c: see cv_index.h for the contract and docs/format.md for the serialized layout. */
#include "cv_index.h"

#include "cv_hash.h"

#define ANCHOR_SHIFT 3
#define ANCHOR_EVERY (1u << ANCHOR_SHIFT)
#define LEN_BIG 0xFFFFFFFFu
#define URL_DELETED 0xFFFFFFFDu /* internal: entry was deleted */
#define HEADER_SIZE 128
#define FORMAT_VERSION 1
static const uint8_t MAGIC[8] = {0x89, 'C', 'V', 'I', 'D', 'X', '\r', '\n'};

struct cv_index {
    size_t n;    /* entries, live + deleted */
    size_t live; /* live entries */
    size_t cap;  /* capacity of the entry arrays */
    uint64_t *off;
    uint32_t *len32;
    uint8_t *url; /* url ids, url_w bytes each */
    int url_w;
    uint64_t *anchor; /* arena offset of entry 8k */
    uint8_t *keys;
    size_t keys_len, keys_cap;
    uint8_t *ctrl; /* 0 = empty, else 0x80 | 7 hash bits */
    uint32_t *slot;
    size_t nslots;
    uint64_t *big; /* sorted (entry, length) pairs for lengths >= LEN_BIG */
    size_t nbig, big_cap;
    uint8_t *data; /* inline bytes */
    size_t data_len, data_cap;
    uint64_t *url_off; /* n_urls + 1 offsets into url_bytes */
    size_t n_urls, url_off_cap;
    uint8_t *url_bytes;
    size_t url_bytes_len, url_bytes_cap;
    uint32_t *url_hash; /* power-of-two open table of url id + 1 (0 = empty); built on demand */
    size_t url_hash_n;
    int borrowed; /* arrays point into a caller's buffer */
};

const char *cv_strerror(int status) {
    switch (status) {
    case CV_OK: return "ok";
    case CV_ENOMEM: return "out of memory";
    case CV_EINVAL: return "invalid argument";
    case CV_ENOTFOUND: return "not found";
    case CV_ERANGE: return "value out of range";
    case CV_EFORMAT: return "malformed input";
    case CV_ECHECKSUM: return "checksum mismatch";
    case CV_EVERSION: return "unsupported format version";
    case CV_ETRUNCATED: return "input is truncated";
    case CV_EREADONLY: return "object is read-only";
    case CV_EUTF8: return "invalid UTF-8";
    case CV_EUNSUPPORTED: return "unsupported";
    case CV_ECORRUPT: return "corrupt data";
    case CV_ESIZE: return "size mismatch";
    default: return "unknown error";
    }
}

/* ---------------------------------------------------------------- small helpers */

static inline uint64_t key_hash(const uint8_t *key, size_t klen) { return cv_xxh64(key, klen, 0); }

static inline size_t slot_of(uint64_t h, size_t nslots) {
    return (size_t)(((h >> 32) * (uint64_t)nslots) >> 32);
}

static inline uint8_t tag_of(uint64_t h) { return (uint8_t)(0x80u | (h & 0x7Fu)); }

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

/* Read a varint at p (end bounds the buffer).  Returns bytes consumed or 0 on malformed input. */
static inline size_t varint_get(const uint8_t *p, const uint8_t *end, uint64_t *out) {
    uint64_t v = 0;
    size_t i = 0;
    int shift = 0;
    while (p + i < end && i < 10) {
        uint8_t b = p[i++];
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return i;
        }
        shift += 7;
    }
    return 0;
}

static inline uint32_t url_max_id(int w) {
    /* ids must stay below the two sentinels of the storage width */
    return w == 1 ? 0xFDu : (w == 2 ? 0xFFFDu : URL_DELETED);
}

static inline uint32_t url_load(const cv_index *idx, size_t i) {
    switch (idx->url_w) {
    case 1: {
        uint8_t v = idx->url[i];
        return v == 0xFF ? CV_URL_INLINE : (v == 0xFE ? URL_DELETED : v);
    }
    case 2: {
        uint16_t v;
        memcpy(&v, idx->url + 2 * i, 2);
        return v == 0xFFFF ? CV_URL_INLINE : (v == 0xFFFE ? URL_DELETED : v);
    }
    default: {
        uint32_t v;
        memcpy(&v, idx->url + 4 * i, 4);
        return v;
    }
    }
}

static inline void url_store(cv_index *idx, size_t i, uint32_t id) {
    switch (idx->url_w) {
    case 1: {
        uint8_t v = id == CV_URL_INLINE ? 0xFF : (id == URL_DELETED ? 0xFE : (uint8_t)id);
        idx->url[i] = v;
        break;
    }
    case 2: {
        uint16_t v = id == CV_URL_INLINE ? 0xFFFF : (id == URL_DELETED ? 0xFFFE : (uint16_t)id);
        memcpy(idx->url + 2 * i, &v, 2);
        break;
    }
    default:
        memcpy(idx->url + 4 * i, &id, 4);
    }
}

static void *dup_bytes(const void *src, size_t n, size_t cap) {
    void *p = CV_MALLOC(cap ? cap : 1);
    if (p && n) memcpy(p, src, n);
    return p;
}

/* Copy every borrowed array into owned memory (first modification of an opened index). */
static int own(cv_index *idx) {
    if (!idx->borrowed) return CV_OK;
    size_t n = idx->n, na = (n + ANCHOR_EVERY - 1) / ANCHOR_EVERY;
    uint64_t *off = dup_bytes(idx->off, n * 8, n * 8);
    uint32_t *len32 = dup_bytes(idx->len32, n * 4, n * 4);
    uint8_t *url = dup_bytes(idx->url, n * (size_t)idx->url_w, n * (size_t)idx->url_w);
    uint64_t *anchor = dup_bytes(idx->anchor, na * 8, na * 8);
    uint8_t *keys = dup_bytes(idx->keys, idx->keys_len, idx->keys_len);
    uint8_t *ctrl = dup_bytes(idx->ctrl, idx->nslots, idx->nslots);
    uint32_t *slot = dup_bytes(idx->slot, idx->nslots * 4, idx->nslots * 4);
    uint64_t *big = dup_bytes(idx->big, idx->nbig * 16, idx->nbig * 16);
    uint8_t *data = dup_bytes(idx->data, idx->data_len, idx->data_len);
    uint64_t *url_off = dup_bytes(idx->url_off, (idx->n_urls + 1) * 8, (idx->n_urls + 1) * 8);
    uint8_t *url_bytes = dup_bytes(idx->url_bytes, idx->url_bytes_len, idx->url_bytes_len);
    if (!off || !len32 || !url || !anchor || !keys || !ctrl || !slot || !big || !data || !url_off ||
        !url_bytes) {
        CV_FREE(off); CV_FREE(len32); CV_FREE(url); CV_FREE(anchor); CV_FREE(keys);
        CV_FREE(ctrl); CV_FREE(slot); CV_FREE(big); CV_FREE(data); CV_FREE(url_off);
        CV_FREE(url_bytes);
        return CV_ENOMEM;
    }
    idx->off = off; idx->len32 = len32; idx->url = url; idx->anchor = anchor; idx->keys = keys;
    idx->ctrl = ctrl; idx->slot = slot; idx->big = big; idx->data = data; idx->url_off = url_off;
    idx->url_bytes = url_bytes;
    idx->cap = n;
    idx->keys_cap = idx->keys_len;
    idx->big_cap = idx->nbig;
    idx->data_cap = idx->data_len;
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
        nc *= 2;
    }
    uint8_t *p = CV_REALLOC(*buf, nc);
    if (!p) return CV_ENOMEM;
    *buf = p;
    *cap = nc;
    return CV_OK;
}

/* ---------------------------------------------------------------- lifecycle */

cv_index *cv_index_new(void) {
    cv_index *idx = CV_MALLOC(sizeof(cv_index));
    if (!idx) return NULL;
    memset(idx, 0, sizeof(*idx));
    idx->url_w = 1;
    idx->url_off = CV_MALLOC(8 * 4);
    if (!idx->url_off) {
        CV_FREE(idx);
        return NULL;
    }
    idx->url_off[0] = 0;
    idx->url_off_cap = 4;
    return idx;
}

static void free_arrays(cv_index *idx) {
    CV_FREE(idx->off); CV_FREE(idx->len32); CV_FREE(idx->url); CV_FREE(idx->anchor);
    CV_FREE(idx->keys); CV_FREE(idx->ctrl); CV_FREE(idx->slot); CV_FREE(idx->big);
    CV_FREE(idx->data); CV_FREE(idx->url_off); CV_FREE(idx->url_bytes);
}

void cv_index_free(cv_index *idx) {
    if (!idx) return;
    if (!idx->borrowed) free_arrays(idx);
    CV_FREE(idx->url_hash);
    CV_FREE(idx);
}

size_t cv_index_len(const cv_index *idx) { return idx->live; }
size_t cv_index_nentries(const cv_index *idx) { return idx->n; }

size_t cv_index_memory(const cv_index *idx) {
    size_t m = sizeof(*idx);
    if (!idx->borrowed) {
        m += idx->cap * (8 + 4 + (size_t)idx->url_w) + ((idx->cap + 7) / 8) * 8;
        m += idx->keys_cap + idx->nslots * 5 + idx->big_cap * 16 + idx->data_cap;
        m += idx->url_off_cap * 8 + idx->url_bytes_cap;
    }
    m += idx->url_hash_n * 4;
    return m;
}

/* ---------------------------------------------------------------- keys */

/* Pointer to entry i's key record; returns 0 when the arena is corrupt. */
static inline int key_at(const cv_index *idx, size_t i, const uint8_t **key, size_t *klen) {
    const uint8_t *end = idx->keys + idx->keys_len;
    uint64_t a = idx->anchor[i >> ANCHOR_SHIFT];
    if (a >= idx->keys_len) return 0;
    const uint8_t *p = idx->keys + a;
    size_t skip = i & (ANCHOR_EVERY - 1);
    for (;;) {
        uint64_t l;
        size_t h = varint_get(p, end, &l);
        if (!h || l > (uint64_t)(end - p - (ptrdiff_t)h)) return 0;
        if (skip == 0) {
            *key = p + h;
            *klen = (size_t)l;
            return 1;
        }
        p += h + l;
        skip--;
    }
}

static int64_t find_h(const cv_index *idx, const uint8_t *key, size_t klen, uint64_t h) {
    size_t ns = idx->nslots;
    if (ns == 0) return CV_ENOTFOUND;
    uint8_t tag = tag_of(h);
    size_t pos = slot_of(h, ns);
    for (size_t probes = 0; probes < ns; probes++) {
        uint8_t c = idx->ctrl[pos];
        if (c == 0) return CV_ENOTFOUND;
        if (c == tag) {
            uint32_t e = idx->slot[pos];
            const uint8_t *k;
            size_t kl;
            if (e < idx->n && key_at(idx, e, &k, &kl) && kl == klen &&
                (klen == 0 || memcmp(k, key, klen) == 0))
                return (int64_t)e;
        }
        if (++pos == ns) pos = 0;
    }
    return CV_ENOTFOUND;
}

int64_t cv_index_find(const cv_index *idx, const uint8_t *key, size_t klen) {
    int64_t e = find_h(idx, key, klen, key_hash(key, klen));
    if (e >= 0 && url_load(idx, (size_t)e) == URL_DELETED) return CV_ENOTFOUND;
    return e;
}

/* Rebuild the slot table with nslots slots. */
static int rehash(cv_index *idx, size_t nslots) {
    if (nslots > 0xFFFFFFFFu) return CV_ERANGE;
    uint8_t *ctrl = CV_MALLOC(nslots ? nslots : 1);
    uint32_t *slot = CV_MALLOC((nslots ? nslots : 1) * 4);
    if (!ctrl || !slot) {
        CV_FREE(ctrl);
        CV_FREE(slot);
        return CV_ENOMEM;
    }
    memset(ctrl, 0, nslots);
    /* walk the arena once, sequentially */
    const uint8_t *p = idx->keys, *end = idx->keys + idx->keys_len;
    for (size_t i = 0; i < idx->n; i++) {
        uint64_t l;
        size_t hb = varint_get(p, end, &l);
        if (!hb || l > (uint64_t)(end - p - (ptrdiff_t)hb)) {
            CV_FREE(ctrl);
            CV_FREE(slot);
            return CV_ECORRUPT;
        }
        uint64_t h = key_hash(p + hb, (size_t)l);
        size_t pos = slot_of(h, nslots);
        while (ctrl[pos]) {
            if (++pos == nslots) pos = 0;
        }
        ctrl[pos] = tag_of(h);
        slot[pos] = (uint32_t)i;
        p += hb + l;
    }
    CV_FREE(idx->ctrl);
    CV_FREE(idx->slot);
    idx->ctrl = ctrl;
    idx->slot = slot;
    idx->nslots = nslots;
    return CV_OK;
}

static int grow_entries(cv_index *idx, size_t need) {
    if (need <= idx->cap) return CV_OK;
    if (need > CV_INDEX_MAX_ENTRIES) return CV_ERANGE;
    size_t nc = idx->cap ? idx->cap : 16;
    while (nc < need) nc = nc < 1024 ? nc * 2 : nc + nc / 2;
    if (nc > CV_INDEX_MAX_ENTRIES) nc = CV_INDEX_MAX_ENTRIES;
    size_t na = (nc + ANCHOR_EVERY - 1) / ANCHOR_EVERY;
    uint64_t *off = CV_REALLOC(idx->off, nc * 8);
    if (!off) return CV_ENOMEM;
    idx->off = off;
    uint32_t *len32 = CV_REALLOC(idx->len32, nc * 4);
    if (!len32) return CV_ENOMEM;
    idx->len32 = len32;
    uint8_t *url = CV_REALLOC(idx->url, nc * (size_t)idx->url_w);
    if (!url) return CV_ENOMEM;
    idx->url = url;
    uint64_t *anchor = CV_REALLOC(idx->anchor, na * 8);
    if (!anchor) return CV_ENOMEM;
    idx->anchor = anchor;
    idx->cap = nc;
    return CV_OK;
}

/* Slots needed for n entries at a load factor of at most 3/4. */
static size_t slots_for(size_t n) { return n < 12 ? 16 : n + n / 3 + 1; }

int cv_index_reserve(cv_index *idx, size_t nkeys, size_t keybytes) {
    int st = own(idx);
    if (st) return st;
    if (nkeys > CV_INDEX_MAX_ENTRIES - idx->n) return CV_ERANGE;
    size_t total = idx->n + nkeys;
    if ((st = grow_entries(idx, total))) return st;
    if (keybytes > SIZE_MAX - idx->keys_len - 10 * nkeys) return CV_ERANGE;
    size_t kneed = idx->keys_len + keybytes + 2 * nkeys;
    if (kneed > idx->keys_cap) {
        uint8_t *k = CV_REALLOC(idx->keys, kneed);
        if (!k) return CV_ENOMEM;
        idx->keys = k;
        idx->keys_cap = kneed;
    }
    if (total * 4 > idx->nslots * 3) return rehash(idx, slots_for(total));
    return CV_OK;
}

static int shrink_array(void **p, size_t bytes) {
    void *q = CV_REALLOC(*p, bytes ? bytes : 1);
    if (!q) return CV_ENOMEM;
    *p = q;
    return CV_OK;
}

int cv_index_shrink(cv_index *idx) {
    int st;
    if (idx->borrowed) return CV_OK; /* an opened index is already exact */
    size_t n = idx->n, na = (n + ANCHOR_EVERY - 1) / ANCHOR_EVERY;
    if (idx->cap > n) {
        if ((st = shrink_array((void **)&idx->off, n * 8))) return st;
        if ((st = shrink_array((void **)&idx->len32, n * 4))) return st;
        if ((st = shrink_array((void **)&idx->url, n * (size_t)idx->url_w))) return st;
        if ((st = shrink_array((void **)&idx->anchor, na * 8))) return st;
        idx->cap = n;
    }
    if (idx->keys_cap > idx->keys_len) {
        if ((st = shrink_array((void **)&idx->keys, idx->keys_len))) return st;
        idx->keys_cap = idx->keys_len;
    }
    if (idx->data_cap > idx->data_len) {
        if ((st = shrink_array((void **)&idx->data, idx->data_len))) return st;
        idx->data_cap = idx->data_len;
    }
    size_t want = slots_for(n);
    if (idx->nslots > want + want / 8) return rehash(idx, want);
    return CV_OK;
}

/* ---------------------------------------------------------------- lengths */

static size_t big_search(const cv_index *idx, uint64_t entry, int *found) {
    size_t lo = 0, hi = idx->nbig;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (idx->big[2 * mid] < entry) lo = mid + 1;
        else hi = mid;
    }
    *found = lo < idx->nbig && idx->big[2 * lo] == entry;
    return lo;
}

static inline int len_load(const cv_index *idx, size_t i, uint64_t *out) {
    uint32_t l = idx->len32[i];
    if (CV_LIKELY(l != LEN_BIG)) {
        *out = l;
        return CV_OK;
    }
    int found;
    size_t pos = big_search(idx, i, &found);
    if (!found) return CV_ECORRUPT;
    *out = idx->big[2 * pos + 1];
    return CV_OK;
}

static int len_store(cv_index *idx, size_t i, uint64_t length) {
    int found;
    size_t pos = big_search(idx, i, &found);
    if (length < LEN_BIG) {
        idx->len32[i] = (uint32_t)length;
        if (found) {
            memmove(idx->big + 2 * pos, idx->big + 2 * pos + 2, (idx->nbig - pos - 1) * 16);
            idx->nbig--;
        }
        return CV_OK;
    }
    idx->len32[i] = LEN_BIG;
    if (found) {
        idx->big[2 * pos + 1] = length;
        return CV_OK;
    }
    if (idx->nbig == idx->big_cap) {
        size_t nc = idx->big_cap ? idx->big_cap * 2 : 4;
        uint64_t *b = CV_REALLOC(idx->big, nc * 16);
        if (!b) return CV_ENOMEM;
        idx->big = b;
        idx->big_cap = nc;
    }
    memmove(idx->big + 2 * pos + 2, idx->big + 2 * pos, (idx->nbig - pos) * 16);
    idx->big[2 * pos] = i;
    idx->big[2 * pos + 1] = length;
    idx->nbig++;
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

static int widen_urls(cv_index *idx, int w) {
    uint8_t *nu = CV_MALLOC((idx->cap ? idx->cap : 1) * (size_t)w);
    if (!nu) return CV_ENOMEM;
    uint8_t *old = idx->url;
    int ow = idx->url_w;
    for (size_t i = 0; i < idx->n; i++) {
        uint32_t v = url_load(idx, i);
        idx->url = nu;
        idx->url_w = w;
        url_store(idx, i, v);
        idx->url = old;
        idx->url_w = ow;
    }
    CV_FREE(old);
    idx->url = nu;
    idx->url_w = w;
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
    if (id >= url_max_id(idx->url_w)) {
        if ((st = widen_urls(idx, idx->url_w == 1 ? 2 : 4))) return st;
    }
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
    /* build a fresh URL table, then remap the entries */
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
    if (!same) {
        for (size_t i = 0; i < idx->n; i++) {
            uint32_t v = url_load(idx, i);
            if (v < n) url_store(idx, i, map[v]);
        }
    }
    CV_FREE(map);
    return CV_OK;
}

/* ---------------------------------------------------------------- insert */

/* Find or add the entry for key; *e receives its entry number. */
static int upsert(cv_index *idx, const uint8_t *key, size_t klen, size_t *e) {
    int st;
    uint64_t h = key_hash(key, klen);
    int64_t found = find_h(idx, key, klen, h);
    if (found >= 0) {
        if (url_load(idx, (size_t)found) == URL_DELETED) idx->live++;
        *e = (size_t)found;
        return CV_OK;
    }
    if (idx->n >= CV_INDEX_MAX_ENTRIES) return CV_ERANGE;
    if ((idx->n + 1) * 4 > idx->nslots * 3) {
        size_t want = slots_for(idx->n < 1024 ? 2048 : (idx->n * 2));
        if ((st = rehash(idx, want))) return st;
    }
    if ((st = grow_entries(idx, idx->n + 1))) return st;
    if (klen > SIZE_MAX - 10 - idx->keys_len) return CV_ERANGE;
    if ((st = grow_bytes(&idx->keys, &idx->keys_cap, idx->keys_len + 10 + klen))) return st;
    size_t i = idx->n;
    if ((i & (ANCHOR_EVERY - 1)) == 0) idx->anchor[i >> ANCHOR_SHIFT] = idx->keys_len;
    idx->keys_len += varint_put(idx->keys + idx->keys_len, klen);
    if (klen) memcpy(idx->keys + idx->keys_len, key, klen);
    idx->keys_len += klen;
    size_t pos = slot_of(h, idx->nslots);
    while (idx->ctrl[pos]) {
        if (++pos == idx->nslots) pos = 0;
    }
    idx->ctrl[pos] = tag_of(h);
    idx->slot[pos] = (uint32_t)i;
    idx->len32[i] = 0;
    idx->off[i] = 0;
    idx->n++;
    idx->live++;
    *e = i;
    return CV_OK;
}

int cv_index_put(cv_index *idx, const uint8_t *key, size_t klen, uint32_t url, uint64_t offset,
                 uint64_t length) {
    int st;
    if (url >= idx->n_urls) return CV_EINVAL;
    if (length != CV_LEN_WHOLE && offset > UINT64_MAX - length) return CV_ERANGE;
    if ((st = own(idx))) return st;
    size_t e;
    if ((st = upsert(idx, key, klen, &e))) return st;
    idx->off[e] = offset;
    url_store(idx, e, url);
    return len_store(idx, e, length);
}

int cv_index_put_inline(cv_index *idx, const uint8_t *key, size_t klen, const uint8_t *data,
                        size_t dlen) {
    int st;
    if ((st = own(idx))) return st;
    if (dlen > SIZE_MAX - idx->data_len) return CV_ERANGE;
    if ((st = grow_bytes(&idx->data, &idx->data_cap, idx->data_len + dlen))) return st;
    size_t e;
    if ((st = upsert(idx, key, klen, &e))) return st;
    if (dlen) memcpy(idx->data + idx->data_len, data, dlen);
    idx->off[e] = idx->data_len;
    idx->data_len += dlen;
    url_store(idx, e, CV_URL_INLINE);
    return len_store(idx, e, dlen);
}

int cv_index_put_many(cv_index *idx, size_t n, const uint8_t *const *keys, const size_t *klens,
                      const uint32_t *url_ids, const uint64_t *offsets, const uint64_t *lengths) {
    size_t kb = 0;
    for (size_t i = 0; i < n; i++) {
        if (url_ids[i] >= idx->n_urls) return CV_EINVAL;
        if (lengths[i] != CV_LEN_WHOLE && offsets[i] > UINT64_MAX - lengths[i]) return CV_ERANGE;
        if (klens[i] > SIZE_MAX - kb) return CV_ERANGE;
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

int cv_index_del(cv_index *idx, const uint8_t *key, size_t klen) {
    int st;
    int64_t e = cv_index_find(idx, key, klen);
    if (e < 0) return (int)e;
    if ((st = own(idx))) return st;
    url_store(idx, (size_t)e, URL_DELETED);
    idx->off[e] = 0;
    idx->live--;
    return len_store(idx, (size_t)e, 0);
}

/* ---------------------------------------------------------------- lookup */

static inline int fill_ref(const cv_index *idx, size_t e, cv_ref *ref) {
    uint32_t u = url_load(idx, e);
    if (u == URL_DELETED) return CV_ENOTFOUND;
    ref->url = u;
    ref->offset = idx->off[e];
    return len_load(idx, e, &ref->length);
}

int cv_index_get(const cv_index *idx, const uint8_t *key, size_t klen, cv_ref *ref) {
    int64_t e = find_h(idx, key, klen, key_hash(key, klen));
    if (e < 0) return (int)e;
    return fill_ref(idx, (size_t)e, ref);
}

/* First entry whose tag matches at the probe start (a guess used only for prefetching). */
static inline int64_t guess_entry(const cv_index *idx, uint64_t h) {
    size_t ns = idx->nslots;
    size_t pos = slot_of(h, ns);
    uint8_t tag = tag_of(h);
    for (int probes = 0; probes < 4; probes++) {
        uint8_t c = idx->ctrl[pos];
        if (c == 0) return -1;
        if (c == tag) return idx->slot[pos] < idx->n ? (int64_t)idx->slot[pos] : -1;
        if (++pos == ns) pos = 0;
    }
    return -1;
}

int64_t cv_index_get_many(const cv_index *idx, size_t n, const uint8_t *const *keys,
                          const size_t *klens, uint32_t *url_ids, uint64_t *offsets,
                          uint64_t *lengths) {
    /* A software pipeline keeps many independent cache misses in flight: key i is hashed and
     * its slot prefetched, key i - D has its entry guessed and the entry's arrays prefetched,
     * key i - 2D has its key text prefetched, and key i - 3D is looked up (now from cache). */
    enum { D = 8, R = 32 };
    uint64_t hs[R];
    int64_t guess[R];
    int64_t found = 0;
    if (idx->nslots == 0 || idx->n == 0) {
        for (size_t i = 0; i < n; i++) {
            url_ids[i] = CV_URL_MISSING;
            offsets[i] = lengths[i] = 0;
        }
        return 0;
    }
    for (size_t i = 0; i < n + 3 * D; i++) {
        if (i < n) {
            uint64_t h = key_hash(keys[i], klens[i]);
            size_t pos = slot_of(h, idx->nslots);
            hs[i % R] = h;
            CV_PREFETCH(idx->ctrl + pos);
            CV_PREFETCH(idx->slot + pos);
        }
        if (i >= D && i - D < n) {
            size_t j = i - D;
            int64_t e = guess_entry(idx, hs[j % R]);
            guess[j % R] = e;
            if (e >= 0) {
                CV_PREFETCH(idx->anchor + (e >> ANCHOR_SHIFT));
                CV_PREFETCH(idx->off + e);
                CV_PREFETCH(idx->len32 + e);
                CV_PREFETCH(idx->url + (size_t)e * (size_t)idx->url_w);
            }
        }
        if (i >= 2 * D && i - 2 * D < n) {
            int64_t e = guess[(i - 2 * D) % R];
            if (e >= 0) {
                uint64_t a = idx->anchor[e >> ANCHOR_SHIFT];
                if (a < idx->keys_len) CV_PREFETCH(idx->keys + a);
            }
        }
        if (i >= 3 * D) {
            size_t k = i - 3 * D;
            int64_t e = find_h(idx, keys[k], klens[k], hs[k % R]);
            cv_ref r;
            if (e >= 0 && fill_ref(idx, (size_t)e, &r) == CV_OK) {
                url_ids[k] = r.url;
                offsets[k] = r.offset;
                lengths[k] = r.length;
                found++;
            } else {
                url_ids[k] = CV_URL_MISSING;
                offsets[k] = 0;
                lengths[k] = 0;
            }
        }
    }
    return found;
}

int cv_index_inline(const cv_index *idx, const cv_ref *ref, const uint8_t **data, size_t *len) {
    if (ref->url != CV_URL_INLINE) return CV_EINVAL;
    if (ref->offset > idx->data_len || ref->length > idx->data_len - ref->offset) return CV_ECORRUPT;
    *data = idx->data + ref->offset;
    *len = (size_t)ref->length;
    return CV_OK;
}

int cv_index_entry(const cv_index *idx, size_t i, const uint8_t **key, size_t *klen, cv_ref *ref) {
    if (i >= idx->n) return CV_EINVAL;
    int st = fill_ref(idx, i, ref);
    if (st) return st;
    if (!key_at(idx, i, key, klen)) return CV_ECORRUPT;
    return CV_OK;
}

/* ---------------------------------------------------------------- native format */

static inline size_t pad8(size_t n) { return (n + 7) & ~(size_t)7; }

typedef struct {
    size_t n, n_urls, nslots, nbig, url_w, keys_len, data_len, url_bytes_len;
    size_t sec[11]; /* section offsets */
    size_t total;
} layout;

/* Compute section offsets; returns 0 on overflow. */
static int layout_compute(layout *L) {
    const size_t lim = (size_t)1 << 47; /* no section exceeds 128 TiB: keeps sums overflow-free */
    if (L->n > CV_INDEX_MAX_ENTRIES || L->n_urls > CV_URL_MAX || L->nslots > 0xFFFFFFFFu ||
        L->nbig > L->n || L->keys_len > lim || L->data_len > lim || L->url_bytes_len > lim)
        return 0;
    size_t sizes[11] = {
        L->n * 8,                                        /* offsets */
        L->n * 4,                                        /* lengths */
        L->n * L->url_w,                                 /* url ids */
        ((L->n + ANCHOR_EVERY - 1) / ANCHOR_EVERY) * 8,  /* anchors */
        L->nbig * 16,                                    /* big lengths */
        (L->n_urls + 1) * 8,                             /* url offsets */
        L->nslots,                                       /* ctrl */
        L->nslots * 4,                                   /* slots */
        L->keys_len,                                     /* key arena */
        L->url_bytes_len,                                /* url bytes */
        L->data_len,                                     /* inline data */
    };
    size_t pos = HEADER_SIZE;
    for (int s = 0; s < 11; s++) {
        L->sec[s] = pos;
        pos += pad8(sizes[s]);
    }
    L->total = pos;
    return 1;
}

int64_t cv_index_serialized_size(const cv_index *idx) {
    layout L = {idx->n, idx->n_urls, idx->nslots, idx->nbig, (size_t)idx->url_w, idx->keys_len,
                idx->data_len, idx->url_bytes_len, {0}, 0};
    if (!layout_compute(&L)) return CV_ERANGE;
    return (int64_t)L.total;
}

int64_t cv_index_serialize(const cv_index *idx, uint8_t *dst, size_t dstcap) {
    if (!cv_host_is_le()) return CV_EUNSUPPORTED;
    layout L = {idx->n, idx->n_urls, idx->nslots, idx->nbig, (size_t)idx->url_w, idx->keys_len,
                idx->data_len, idx->url_bytes_len, {0}, 0};
    if (!layout_compute(&L)) return CV_ERANGE;
    if (dstcap < L.total) return CV_ERANGE;
    memset(dst, 0, L.total);
    memcpy(dst, MAGIC, 8);
    cv_store32le(dst + 8, FORMAT_VERSION);
    cv_store32le(dst + 12, HEADER_SIZE);
    cv_store64le(dst + 16, idx->n);
    cv_store64le(dst + 24, idx->live);
    cv_store64le(dst + 32, idx->n_urls);
    cv_store64le(dst + 40, idx->nslots);
    cv_store64le(dst + 48, idx->nbig);
    cv_store32le(dst + 56, (uint32_t)idx->url_w);
    cv_store32le(dst + 60, ANCHOR_SHIFT);
    cv_store64le(dst + 64, idx->keys_len);
    cv_store64le(dst + 72, idx->data_len);
    cv_store64le(dst + 80, idx->url_bytes_len);
    cv_store64le(dst + 88, L.total);
    const void *src[11] = {idx->off, idx->len32, idx->url, idx->anchor, idx->big, idx->url_off,
                           idx->ctrl, idx->slot, idx->keys, idx->url_bytes, idx->data};
    size_t n = idx->n;
    size_t sizes[11] = {n * 8, n * 4, n * (size_t)idx->url_w,
                        ((n + ANCHOR_EVERY - 1) / ANCHOR_EVERY) * 8, idx->nbig * 16,
                        (idx->n_urls + 1) * 8, idx->nslots, idx->nslots * 4, idx->keys_len,
                        idx->url_bytes_len, idx->data_len};
    for (int s = 0; s < 11; s++)
        if (sizes[s]) memcpy(dst + L.sec[s], src[s], sizes[s]);
    cv_store64le(dst + 112, cv_xxh64(dst + HEADER_SIZE, L.total - HEADER_SIZE, 0));
    cv_store64le(dst + 120, cv_xxh64(dst, 120, 0));
    return (int64_t)L.total;
}

static cv_index *open_fail(cv_index *idx, int st, int *status) {
    if (idx) cv_index_free(idx);
    if (status) *status = st;
    return NULL;
}

cv_index *cv_index_open_buffer(const uint8_t *buf, size_t len, int copy, int verify, int *status) {
    if (status) *status = CV_OK;
    if (!cv_host_is_le()) return open_fail(NULL, CV_EUNSUPPORTED, status);
    if (len < 8 || memcmp(buf, MAGIC, 8) != 0) return open_fail(NULL, CV_EFORMAT, status);
    if (len < HEADER_SIZE) return open_fail(NULL, CV_ETRUNCATED, status);
    if (cv_load64le(buf + 120) != cv_xxh64(buf, 120, 0)) return open_fail(NULL, CV_ECHECKSUM, status);
    if (cv_load32le(buf + 8) != FORMAT_VERSION) return open_fail(NULL, CV_EVERSION, status);
    if (cv_load32le(buf + 12) != HEADER_SIZE || cv_load32le(buf + 60) != ANCHOR_SHIFT)
        return open_fail(NULL, CV_EFORMAT, status);
    uint64_t h[12];
    for (int i = 0; i < 12; i++) h[i] = cv_load64le(buf + 16 + 8 * i);
    /* h: n, live, n_urls, nslots, nbig, (w|shift), keys_len, data_len, url_bytes_len, total */
    uint32_t w = cv_load32le(buf + 56);
    if (w != 1 && w != 2 && w != 4) return open_fail(NULL, CV_EFORMAT, status);
    const uint64_t lim = (uint64_t)1 << 47;
    for (int i = 0; i < 10; i++)
        if (i != 5 && h[i] > lim) return open_fail(NULL, CV_EFORMAT, status);
    layout L = {(size_t)h[0], (size_t)h[2], (size_t)h[3], (size_t)h[4], w, (size_t)h[6],
                (size_t)h[7], (size_t)h[8], {0}, 0};
    if (!layout_compute(&L)) return open_fail(NULL, CV_EFORMAT, status);
    if (h[9] != L.total) return open_fail(NULL, CV_EFORMAT, status);
    if (len < L.total) return open_fail(NULL, CV_ETRUNCATED, status);
    if (len > L.total) return open_fail(NULL, CV_EFORMAT, status);
    if (verify && cv_load64le(buf + 112) != cv_xxh64(buf + HEADER_SIZE, L.total - HEADER_SIZE, 0))
        return open_fail(NULL, CV_ECHECKSUM, status);
    size_t n = L.n;
    if (h[1] > n) return open_fail(NULL, CV_EFORMAT, status);
    if (n > 0 && L.nslots <= n) return open_fail(NULL, CV_EFORMAT, status);
    if (n > 0 && L.keys_len < n) return open_fail(NULL, CV_EFORMAT, status);
    if (L.n_urls >= url_max_id((int)w) + 1 && L.n_urls > 0) return open_fail(NULL, CV_EFORMAT, status);

    cv_index *idx = CV_MALLOC(sizeof(cv_index));
    if (!idx) return open_fail(NULL, CV_ENOMEM, status);
    memset(idx, 0, sizeof(*idx));
    idx->borrowed = 1;
    idx->n = n;
    idx->live = (size_t)h[1];
    idx->cap = n;
    idx->url_w = (int)w;
    idx->n_urls = L.n_urls;
    idx->nslots = L.nslots;
    idx->nbig = L.nbig;
    idx->keys_len = L.keys_len;
    idx->data_len = L.data_len;
    idx->url_bytes_len = L.url_bytes_len;
    idx->off = (uint64_t *)(buf + L.sec[0]);
    idx->len32 = (uint32_t *)(buf + L.sec[1]);
    idx->url = (uint8_t *)(buf + L.sec[2]);
    idx->anchor = (uint64_t *)(buf + L.sec[3]);
    idx->big = (uint64_t *)(buf + L.sec[4]);
    idx->url_off = (uint64_t *)(buf + L.sec[5]);
    idx->ctrl = (uint8_t *)(buf + L.sec[6]);
    idx->slot = (uint32_t *)(buf + L.sec[7]);
    idx->keys = (uint8_t *)(buf + L.sec[8]);
    idx->url_bytes = (uint8_t *)(buf + L.sec[9]);
    idx->data = (uint8_t *)(buf + L.sec[10]);
    /* the arrays are read in place, so the buffer must be 8-byte aligned; otherwise copy */
    if (copy || ((uintptr_t)buf & 7u)) {
        int st = own(idx);
        if (st) {
            idx->borrowed = 0; /* own() left nothing allocated */
            idx->off = NULL; idx->len32 = NULL; idx->url = NULL; idx->anchor = NULL;
            idx->keys = NULL; idx->ctrl = NULL; idx->slot = NULL; idx->big = NULL;
            idx->data = NULL; idx->url_off = NULL; idx->url_bytes = NULL;
            return open_fail(idx, st, status);
        }
    }
    /* structural checks: nothing below may read out of bounds later */
    if (idx->url_off[0] != 0 || idx->url_off[L.n_urls] != L.url_bytes_len)
        return open_fail(idx, CV_EFORMAT, status);
    for (size_t i = 0; i < L.n_urls; i++)
        if (idx->url_off[i] > idx->url_off[i + 1]) return open_fail(idx, CV_EFORMAT, status);
    size_t na = (n + ANCHOR_EVERY - 1) / ANCHOR_EVERY;
    for (size_t a = 0; a < na; a++) {
        if (idx->anchor[a] >= L.keys_len || (a && idx->anchor[a] <= idx->anchor[a - 1]))
            return open_fail(idx, CV_EFORMAT, status);
    }
    for (size_t b = 0; b < L.nbig; b++) {
        if (idx->big[2 * b] >= n || (b && idx->big[2 * b] <= idx->big[2 * b - 2]))
            return open_fail(idx, CV_EFORMAT, status);
    }
    size_t deleted = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = url_load(idx, i);
        if (u == URL_DELETED) deleted++;
        else if (u != CV_URL_INLINE && u >= L.n_urls) return open_fail(idx, CV_EFORMAT, status);
    }
    if (n - deleted != idx->live) return open_fail(idx, CV_EFORMAT, status);
    size_t occupied = 0;
    for (size_t s = 0; s < L.nslots; s++) {
        if (idx->ctrl[s]) {
            if (!(idx->ctrl[s] & 0x80) || idx->slot[s] >= n) return open_fail(idx, CV_EFORMAT, status);
            occupied++;
        }
    }
    if (occupied != n) return open_fail(idx, CV_EFORMAT, status);
    return idx;
}
