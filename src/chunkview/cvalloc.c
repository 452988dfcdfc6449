/* cvalloc.c: the C core's allocation hooks (cv_common.h: CV_MALLOC / CV_REALLOC / CV_FREE with
 * CV_ALLOC_HOOKS defined) as the Python extensions build them.
 *
 * Each block comes from malloc / realloc / free and is also reported to tracemalloc under its own
 * domain (CV_TRACEMALLOC_DOMAIN), the way numpy and pandas' khash report theirs, so tracemalloc
 * sees the C index, the parser's tables and the decode buffers, and a leak shows up there.
 * Compiled into the extensions only: this is the one C file that includes Python.h.
 *
 * PyTraceMalloc_Track / PyTraceMalloc_Untrack return at once while tracemalloc is not tracing;
 * while it is, they take the GIL themselves, so the hooks are safe in code that released it.
 * A block is untracked before it is freed (once freed, another thread may get the same address
 * and track it).  realloc reports the new block only once it exists (a failed realloc leaves the
 * old block, still tracked); if realloc moved the block, the old address is untracked just after,
 * and in the rare case that another thread got that address in between, only tracemalloc's
 * total is off until that block is freed: nothing is read or written through it. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "cv_common.h"
#include "cvalloc.h"

/* each extension has its own copy: keep the symbols out of the extension's exports */
#if defined(__GNUC__) || defined(__clang__)
#define CV_LOCAL __attribute__((visibility("hidden")))
#else
#define CV_LOCAL
#endif

CV_LOCAL void *cv_hook_malloc(size_t n) {
    void *p = malloc(n);
    if (p) (void)PyTraceMalloc_Track(CV_TRACEMALLOC_DOMAIN, (uintptr_t)p, n);
    return p;
}

CV_LOCAL void *cv_hook_realloc(void *p, size_t n) {
    uintptr_t old = (uintptr_t)p; /* the old pointer's value may not be used once freed */
    void *q = realloc(p, n);
    if (!q) return NULL;
    if (old && (uintptr_t)q != old) (void)PyTraceMalloc_Untrack(CV_TRACEMALLOC_DOMAIN, old);
    (void)PyTraceMalloc_Track(CV_TRACEMALLOC_DOMAIN, (uintptr_t)q, n); /* updates a known block */
    return q;
}

CV_LOCAL void cv_hook_free(void *p) {
    if (!p) return;
    (void)PyTraceMalloc_Untrack(CV_TRACEMALLOC_DOMAIN, (uintptr_t)p);
    free(p);
}
