/* cv_hash.h: XXH64 (Yann Collet's xxHash, 64-bit variant), written from the published
 * specification.  Used for hash-table keys and for the native index format's checksums. */
#ifndef CV_HASH_H
#define CV_HASH_H

#include "cv_common.h"

#ifdef __cplusplus
extern "C" {
#endif

uint64_t cv_xxh64(const uint8_t *src, size_t srclen, uint64_t seed);

/* 64x64 -> 128-bit multiply, folded: low half xor high half. */
static inline uint64_t cv_mum(uint64_t a, uint64_t b) {
#if defined(__SIZEOF_INT128__)
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
#else
    uint64_t al = a & 0xFFFFFFFFu, ah = a >> 32, bl = b & 0xFFFFFFFFu, bh = b >> 32;
    uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    uint64_t mid = (ll >> 32) + (lh & 0xFFFFFFFFu) + (hl & 0xFFFFFFFFu);
    uint64_t lo = (ll & 0xFFFFFFFFu) | (mid << 32);
    uint64_t hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    return lo ^ hi;
#endif
}

#define CV_K1 0x9E3779B97F4A7C15ULL
#define CV_K2 0xD1B54A32D192ED03ULL
#define CV_K3 0x8CB92BA72F3D8DD7ULL

/* The hash of a reference key (the native format depends on it; docs/format.md defines it).
 * Keys of up to 16 bytes are mixed with two 64x64->128-bit multiplies; longer keys go through
 * XXH64 first.  Inline: a batch lookup hashes every key. */
static inline uint64_t cv_keyhash(const uint8_t *p, size_t len) {
    uint64_t a, b;
    if (len <= 16) {
        if (len >= 8) {
            a = cv_load64le(p);
            b = cv_load64le(p + len - 8);
        } else if (len >= 4) {
            a = cv_load32le(p);
            b = cv_load32le(p + len - 4);
        } else if (len > 0) {
            a = ((uint64_t)p[0] << 16) | ((uint64_t)p[len >> 1] << 8) | p[len - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        a = cv_xxh64(p, len, 0);
        b = cv_load64le(p + len - 8);
    }
    uint64_t h = cv_mum(a ^ CV_K1, b ^ CV_K2 ^ (uint64_t)len);
    return cv_mum(h ^ CV_K3, h ^ CV_K1);
}

#ifdef __cplusplus
}
#endif
#endif
