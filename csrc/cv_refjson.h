/* cv_refjson.h: a strict, fast parser for kerchunk reference JSON (spec versions 0 and 1) that
 * inserts the references straight into a cv_index, without building any Python object.
 *
 * Semantics follow fsspec's ReferenceFileSystem (_process_references*, _cat_common):
 *
 *   Document   a JSON object.  If it has a member "version" it is spec v1: the value of the last
 *              "version" member must be the integer token 1 (anything else, including 1.0, "1",
 *              true and null, is CV_EVERSION at that value); the references are the members of
 *              the last "refs" member (which must be an object; absent = no references); the
 *              raw value text of the last "templates" and "gen" members is reported as spans for
 *              Python to json.loads; all other members are validated and ignored.  Without a
 *              "version" member the document is spec v0 and every member is a reference.
 *              "version" may come anywhere: when the first member is not `"version": 1` the
 *              parser first runs a validating pass over the document to find out (only unusual
 *              documents pay for it).  A UTF-8 byte-order mark at the start is skipped.
 *   References (key: the JSON-unescaped key bytes; a repeated key: the last one wins, keeping
 *   the entry position of its first appearance, like a Python dict; entries are in document order)
 *     "text"                 inline bytes: the unescaped UTF-8 bytes of the string; a string
 *                            starting "base64:" holds standard base64 (padding optional), decoded
 *     [url]                  whole file: url id, offset 0, length CV_LEN_WHOLE
 *     [url, offset, length]  byte range.  url is a string (interned verbatim, "{{...}}"
 *                            templates included) or null (interned as "", which Python maps to
 *                            the default target).  offset and length are JSON integers (no
 *                            fraction or exponent), >= 0 (-0 is 0), length < 2**64 - 1 and
 *                            offset + length < 2**64.
 *     {...}                  deferred: not decoded by C.  The (key token, value) spans are listed
 *                            in result.deferred, and the index holds the raw value text as a
 *                            placeholder inline reference that the caller overwrites with
 *                            json.dumps(json.loads(value)), using the json module fsspec's
 *                            reference.py uses (ujson when installed: compact separators and
 *                            escaped "/", unlike the stdlib).  Entries already overridden by a
 *                            later member with the same key are removed from the list, so the list
 *                            holds distinct keys and may be applied in any order.
 *     number, true, false, null: CV_EFORMAT.
 *
 * Strictness: RFC 8259 JSON throughout, including members that are ignored (no trailing commas,
 * comments, NaN/Infinity, leading zeros, control characters in strings, single quotes, trailing
 * data).  Every string must be valid UTF-8 (no overlongs, no encoded surrogates, nothing above
 * U+10FFFF) and its \u escapes must not leave a lone surrogate (CV_EUTF8).  Nesting deeper than
 * CV_REFJSON_MAX_DEPTH containers is CV_EFORMAT (the skipper is iterative, so no stack overflow).
 *
 * Errors.  Status codes (all from cv_common.h): CV_EFORMAT syntax or wrong type, CV_ETRUNCATED
 * input ends early (every proper prefix of a valid document gives this, err_pos == srclen),
 * CV_EUTF8, CV_ERANGE negative or too large numbers, CV_EVERSION, CV_ENOMEM, CV_EINVAL bad
 * arguments; an index insert failure is passed through.  The first error in text order is
 * reported, with semantic checks of a reference made as that reference is read (when the
 * validating pass runs, a syntax or UTF-8 error anywhere comes before the semantic ones, and a
 * bad "version" before errors in references).  On error the
 * index may hold a partial set of the references (the caller discards it), result.deferred is
 * freed and result.err_* describe the error.
 *
 * Known differences from fsspec (stricter, by design): invalid base64 fails the parse (fsspec
 * fails only when the key is read, and Python's decoder skips non-alphabet characters while
 * requiring padding); a bad reference value fails the parse even when a later member with the
 * same key would override it; "version": 1.0 / true are rejected (Python's 1.0 == 1) and so is
 * "version": null (fsspec would read the document as v0); a lone surrogate escape anywhere is
 * rejected (Python's json accepts it).  When `"version": 1` comes first and the document holds
 * several "refs" members (pathological), the references of an earlier "refs" are removed from
 * the index with cv_index_del: the content is right, but they leave deleted entries, their URLs
 * stay interned, a key they share with the last "refs" keeps its earlier entry position, and
 * semantic errors inside them are still reported.
 *
 * Ownership.  src is borrowed for the call only and need not be NUL-terminated; nothing is read
 * outside [src, src + srclen).  Every span in the result is a byte range of src (so it is
 * meaningful only while the caller keeps src).  The index copies all keys, URLs and bytes.
 * The result's deferred array is owned by the result: free it with cv_refjson_result_free.
 * The index should be empty (freshly made with cv_index_new); the parser is not thread-safe
 * for one index but keeps no global state, so different indexes parse concurrently.
 */
#ifndef CV_REFJSON_H
#define CV_REFJSON_H

#include "cv_common.h"
#include "cv_index.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CV_REFJSON_MAX_DEPTH 1000 /* containers nested at most this deep (the document is 1) */

typedef struct cv_span {
    size_t start, len; /* byte range src[start, start + len); len 0 = absent */
} cv_span;

typedef struct cv_refjson_result {
    int version;         /* 0 or 1 */
    cv_span templates;   /* v1: raw JSON text of the last "templates" value, or {0, 0} */
    cv_span gen;         /* v1: raw JSON text of the last "gen" value, or {0, 0} */
    cv_span *deferred;   /* 2 * ndeferred spans: deferred[2i] is the raw key string token,
                            quotes included (json.loads it), deferred[2i + 1] the raw JSON
                            object text of the value; owned, see cv_refjson_result_free */
    size_t ndeferred;
    size_t nrefs;        /* reference members read (inserted or deferred; a repeated key counts
                            each time, so cv_index_len may be smaller) */
    /* error details, valid when cv_refjson_parse returned < 0 */
    size_t err_pos;      /* byte offset in src where the error was found */
    const char *err_msg; /* static string, never NULL after an error */
    cv_span err_key;     /* raw key token (quotes included) of the reference whose value was
                            being read, else of the top-level member whose value was being read
                            (e.g. "templates"), else {0, 0} */
} cv_refjson_result;

/* Parse src[0, srclen) into idx.  *res is overwritten (free a previous result first).
 * Returns CV_OK or a negative CV_E* code (see above). */
int cv_refjson_parse(cv_index *idx, const uint8_t *src, size_t srclen, cv_refjson_result *res);

/* Free what a result owns (the deferred list); safe on a zeroed or already freed result. */
void cv_refjson_result_free(cv_refjson_result *res);

#ifdef __cplusplus
}
#endif
#endif /* CV_REFJSON_H */
