/* cv_hash.h: XXH64 (Yann Collet's xxHash, 64-bit variant), written from the published
 * specification.  Used for hash-table keys and for the native index format's checksums. */
#ifndef CV_HASH_H
#define CV_HASH_H

#include "cv_common.h"

#ifdef __cplusplus
extern "C" {
#endif

uint64_t cv_xxh64(const uint8_t *src, size_t srclen, uint64_t seed);

/* The hash of a reference key (the native format depends on it; docs/format.md defines it).
 * Keys of up to 16 bytes are mixed with two 64x64->128-bit multiplies; longer keys go through
 * XXH64 first. */
uint64_t cv_keyhash(const uint8_t *key, size_t len);

#ifdef __cplusplus
}
#endif
#endif
