/* cv_hash.h: XXH64 (Yann Collet's xxHash, 64-bit variant), written from the published
 * specification.  Used for hash-table keys and for the native index format's checksums. */
#ifndef CV_HASH_H
#define CV_HASH_H

#include "cv_common.h"

#ifdef __cplusplus
extern "C" {
#endif

uint64_t cv_xxh64(const uint8_t *src, size_t srclen, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
