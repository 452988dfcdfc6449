/* cv_guard.c: SIGBUS from a shrinking memory-mapped file becomes CV_ESOURCE (cv_guard.h). */
#if !defined(_XOPEN_SOURCE) && !defined(_WIN32)
#define _XOPEN_SOURCE 700 /* sigaction's SA_NODEFER, sigsetjmp under -std=c99 */
#endif
#include "cv_guard.h"

#include <string.h>

#if defined(__unix__) || defined(__APPLE__)
#include <setjmp.h>
#include <signal.h>

typedef struct {
    sigjmp_buf env;
} guard_frame;

/* the guarded section the current thread is in, or NULL.  Written by its own thread only
 * (before and after the section), so the handler reads a value this thread set. */
#if defined(__GNUC__) || defined(__clang__)
#define CV_THREAD_LOCAL __thread /* C99 has no _Thread_local; GCC and clang spell it so */
#else
#define CV_THREAD_LOCAL _Thread_local
#endif
static CV_THREAD_LOCAL guard_frame *volatile current = NULL;
static struct sigaction previous;  /* the handler before ours: where other faults go */

static void on_bus(int sig, siginfo_t *info, void *ctx) {
    guard_frame *f = current;
    if (f != NULL) {
        current = NULL;
        siglongjmp(f->env, 1);
    }
    /* not ours: hand it on as the previous handler would have had it */
    if (previous.sa_flags & SA_SIGINFO) {
        previous.sa_sigaction(sig, info, ctx);
        return;
    }
    if (previous.sa_handler == SIG_IGN) return;
    if (previous.sa_handler == SIG_DFL) {
        /* default: die of SIGBUS; returning re-runs the faulting access */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(sig, &dfl, NULL);
        return;
    }
    previous.sa_handler(sig);
}

int cv_guard_active(void) {
    struct sigaction cur;
    if (sigaction(SIGBUS, NULL, &cur) != 0) return 0;
    return (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_bus;
}

int cv_guard_install(void) {
    if (cv_guard_active()) return CV_OK;
    struct sigaction act, old;
    memset(&act, 0, sizeof act);
    act.sa_sigaction = on_bus;
    /* SA_NODEFER: SIGBUS stays unblocked after the jump out (sigsetjmp saves no mask) */
    act.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&act.sa_mask);
    if (sigaction(SIGBUS, &act, &old) != 0) return CV_EINVAL;
    previous = old;
    return CV_OK;
}

int cv_guarded_copy(void *dst, const void *src, size_t n) {
    guard_frame f;
    guard_frame *volatile saved = current;
    if (sigsetjmp(f.env, 0) != 0) {
        current = saved;
        return CV_ESOURCE;
    }
    current = &f;
    memcpy(dst, src, n);
    current = saved;
    return CV_OK;
}

static int guarded_job(cv_worker *w, const cv_plan *p, cv_job *j) {
    guard_frame f;
    if (sigsetjmp(f.env, 0) != 0) {
        current = NULL;
        j->status = CV_ESOURCE;
        j->step = -1;
        j->detail = -1;
        return CV_ESOURCE;
    }
    current = &f;
    int st = cv_decode_job(w, p, j);
    current = NULL;
    return st;
}

#else /* no POSIX signals: unguarded */

int cv_guard_install(void) { return CV_EUNSUPPORTED; }
int cv_guard_active(void) { return 0; }

int cv_guarded_copy(void *dst, const void *src, size_t n) {
    memcpy(dst, src, n);
    return CV_OK;
}

static int guarded_job(cv_worker *w, const cv_plan *p, cv_job *j) {
    return cv_decode_job(w, p, j);
}

#endif

size_t cv_decode_jobs_guarded(cv_worker *w, const cv_plan *p, cv_job *jobs, size_t njobs,
                              size_t *next, size_t grain) {
    return cv_decode_jobs_with(w, p, jobs, njobs, next, grain, guarded_job);
}
