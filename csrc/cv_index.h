/* cv_index.h: a compact hash table from chunk keys to references.
 *
 * A reference is one of
 *   - a byte range of a URL:      url = id of an interned URL, offset, length
 *   - a whole file:               url = id, length = CV_LEN_WHOLE
 *   - inline bytes:               url = CV_URL_INLINE, the bytes live in the index's data arena
 *
 * Keys are (pointer, length) byte strings; they may contain NUL bytes and need not be UTF-8.
 * Ownership: the index copies every key, URL and inline byte it is given; pointers it returns
 * (keys, URLs, inline data) point into memory the index owns and stay valid until the next call
 * that modifies the index or until cv_index_free().  An index opened over a caller's buffer
 * (cv_index_open_buffer with copy == 0) borrows that buffer, which must outlive the index; the
 * first modification copies everything into owned memory.
 *
 * Layout (cv_index.c's header comment has the details, docs/format.md the file format):
 *   records in one arena (a 4-byte header of hash fingerprint, flags and lengths; the key; the
 *   value as varints or inline bytes).  A built ("frozen", see cv_index_shrink) index groups the
 *   records by hash bucket behind a small directory, each bucket led by its records' key
 *   fingerprints and offsets: a lookup is one trip to memory and one record parsed.  While it
 *   is being modified, records lie in insertion order behind a table of 64-bit slots (16-bit tag,
 *   48-bit record offset); an overwrite that does not fit in place leaves a forward pointer, so
 *   iteration keeps dict order.
 *
 * Not thread-safe for writers; any number of concurrent readers is fine.
 */
#ifndef CV_INDEX_H
#define CV_INDEX_H

#include "cv_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CV_URL_INLINE 0xFFFFFFFFu  /* reference holds inline bytes */
#define CV_URL_MISSING 0xFFFFFFFEu /* batch lookup: key not present */
#define CV_URL_MAX 0xFFFFFFF0u     /* URL ids are below this */
#define CV_LEN_WHOLE UINT64_MAX    /* reference covers a whole file */
#define CV_INDEX_MAX_ENTRIES 3000000000u /* keeps the slot table below 2^32 slots */
#define CV_ID_INLINE (-1)  /* batch lookup: reference holds inline bytes */
#define CV_ID_MISSING (-2) /* batch lookup: key not present */

typedef struct cv_index cv_index;

typedef struct cv_ref {
    uint32_t url;    /* URL id, or CV_URL_INLINE */
    uint64_t offset; /* byte offset in the URL (inline: in the data arena) */
    uint64_t length; /* byte count, or CV_LEN_WHOLE */
} cv_ref;

/* Create / destroy.  cv_index_new returns NULL when out of memory. */
cv_index *cv_index_new(void);
void cv_index_free(cv_index *idx);

/* Pre-size for nkeys more keys holding keybytes more key bytes (avoids rehashing). */
int cv_index_reserve(cv_index *idx, size_t nkeys, size_t keybytes);

/* Finish a bulk build: drop overwritten records and freeze the index (records regrouped by hash
 * bucket for one-miss lookups; the slot table is freed).  The next modification thaws it. */
int cv_index_shrink(cv_index *idx);

/* Number of live references (deleted ones not counted). */
size_t cv_index_len(const cv_index *idx);

/* URLs.  cv_index_url_intern returns the id (>= 0) of url, adding it if new, or a CV_E* code. */
int64_t cv_index_url_intern(cv_index *idx, const uint8_t *url, size_t len);
size_t cv_index_url_count(const cv_index *idx);
int cv_index_url_get(const cv_index *idx, uint32_t id, const uint8_t **url, size_t *len);
/* Replace the whole URL table: urls[i] (lens[i] bytes) becomes the text of old id i (n must equal
 * cv_index_url_count).  Equal texts are merged and the entries remapped. */
int cv_index_urls_replace(cv_index *idx, size_t n, const uint8_t *const *urls, const size_t *lens);

/* Insert or overwrite.  url must be an interned id; length may be CV_LEN_WHOLE. */
int cv_index_put(cv_index *idx, const uint8_t *key, size_t klen, uint32_t url, uint64_t offset,
                 uint64_t length);
int cv_index_put_inline(cv_index *idx, const uint8_t *key, size_t klen, const uint8_t *data,
                        size_t dlen);
/* Bulk insert of n byte-range / whole-file references (url_ids[i] < url count). */
int cv_index_put_many(cv_index *idx, size_t n, const uint8_t *const *keys, const size_t *klens,
                      const uint32_t *url_ids, const uint64_t *offsets, const uint64_t *lengths);
/* Bulk insert of n chunk references whose keys are prefix + "i.j.k" (the rank coordinates of
 * row i of coords, joined by sep; "0" when rank is 0), as zarr v2 names chunks.  Coordinates must
 * be >= 0 and the prefix at most 4096 bytes. */
int cv_index_put_grid(cv_index *idx, const uint8_t *prefix, size_t plen, uint8_t sep, size_t n,
                      size_t rank, const int64_t *coords, const uint32_t *url_ids,
                      const uint64_t *offsets, const uint64_t *lengths);
/* Look up every chunk of a grid: keys prefix + "i.j.k" for all coordinates below grid[0..rank)
 * in C order (rank 0: the one key prefix + "0"); n = prod(grid) must equal the outputs' length.
 * For entry i: found[i] = 1 and url_ids/offsets/lengths[i] set (url CV_URL_INLINE for inline
 * bytes), or found[i] = 0 and the rest 0 when the key is absent. */
int cv_index_get_grid(const cv_index *idx, const uint8_t *prefix, size_t plen, uint8_t sep,
                      size_t rank, const int64_t *grid, size_t n, uint32_t *url_ids,
                      uint64_t *offsets, uint64_t *lengths, uint8_t *found);
/* Remove a key (CV_ENOTFOUND when absent). */
int cv_index_del(cv_index *idx, const uint8_t *key, size_t klen);

/* Lookup.  Returns CV_OK and fills *ref, or CV_ENOTFOUND. */
int cv_index_get(const cv_index *idx, const uint8_t *key, size_t klen, cv_ref *ref);
/* Position of key's record (>= 0, stable until the index is modified), or CV_ENOTFOUND. */
int64_t cv_index_find(const cv_index *idx, const uint8_t *key, size_t klen);
/* Batch lookup of n keys: url_ids[i] is the URL id, CV_ID_INLINE for inline bytes (offsets and
 * lengths then locate them for cv_index_inline) or CV_ID_MISSING (offset = length = 0).  Returns the
 * number of keys found, or CV_ECORRUPT if a record of an opened file is malformed. */
int64_t cv_index_get_many(const cv_index *idx, size_t n, const uint8_t *const *keys,
                          const size_t *klens, int64_t *url_ids, uint64_t *offsets,
                          uint64_t *lengths);
/* cv_index_get_many as shared work: claims parts of `part` keys from *next (atomically; start
 * it at 0) until none are left, so any number of threads may run it on one batch at once.
 * Returns the keys this call found, or CV_ECORRUPT. */
int64_t cv_index_get_many_shared(const cv_index *idx, size_t n, const uint8_t *const *keys,
                                 const size_t *klens, int64_t *url_ids, uint64_t *offsets,
                                 uint64_t *lengths, size_t *next, size_t part);
/* Inline bytes of a reference with url == CV_URL_INLINE. */
int cv_index_inline(const cv_index *idx, const cv_ref *ref, const uint8_t **data, size_t *len);

/* Iteration in insertion order.  Start with *cursor = 0; each call returns CV_OK with the next live
 * key and reference and advances *cursor, CV_ENOTFOUND at the end, or CV_ECORRUPT. */
int cv_index_next(const cv_index *idx, size_t *cursor, const uint8_t **key, size_t *klen,
                  cv_ref *ref);
/* Walk every record and slot and check them (an opened file is otherwise checked lazily, on each
 * access).  CV_OK or CV_EFORMAT. */
int cv_index_check(const cv_index *idx);

/* Where a native index failed to open or check: a field or section name (a static string) and
 * the byte offset in the file (or, for an index not opened from a file, in its record arena). */
typedef struct {
    const char *field;
    uint64_t at;
} cv_where;

/* cv_index_check, and on failure what was wrong where (w may be NULL). */
int cv_index_check_at(const cv_index *idx, cv_where *w);

/* Totals for reporting: bytes of memory held by the index. */
size_t cv_index_memory(const cv_index *idx);

/* Native format (docs/format.md).  Both functions first freeze the index (cv_index_shrink), so
 * they modify it (not its contents).  cv_index_serialized_size gives the exact size;
 * cv_index_serialize writes it into dst (dstcap bytes) and returns the byte count or a CV_E* code. */
int64_t cv_index_serialized_size(cv_index *idx);
int64_t cv_index_serialize(cv_index *idx, uint8_t *dst, size_t dstcap);
/* Open a serialized index.  copy == 0: borrow buf (must stay alive and unchanged while the index
 * lives); copy != 0: copy it.  verify != 0 checks the body checksum.  Whatever the bytes, every
 * later read is bounds-checked; cv_index_check walks the whole structure up front.  On failure
 * returns NULL and stores a CV_E* code in *status. */
cv_index *cv_index_open_buffer(const uint8_t *buf, size_t len, int copy, int verify, int *status);
/* cv_index_open_buffer, and on failure the field at fault and its byte offset (w may be NULL). */
cv_index *cv_index_open_buffer_at(const uint8_t *buf, size_t len, int copy, int verify, int *status,
                                  cv_where *w);

#ifdef __cplusplus
}
#endif
#endif /* CV_INDEX_H */
