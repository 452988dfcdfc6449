/* cvalloc.h: the tracemalloc domain of the C core's memory (see cvalloc.c).  Part of the
 * Python extensions, not of the C core. */
#ifndef CV_ALLOC_PY_H
#define CV_ALLOC_PY_H

/* tracemalloc.DomainFilter(True, chunkview._index.TRACEMALLOC_DOMAIN) selects the blocks of the
 * C index, the JSON parser and the decoders ("CV" and 1; numpy's domain is 389047) */
#define CV_TRACEMALLOC_DOMAIN 0x43560001u

#endif
