/* cv_guard.h: reading memory-mapped files that may shrink under the reader.
 *
 * A page of a memory-mapped file that no longer exists (the file was truncated after it was
 * mapped) raises SIGBUS when touched.  Code that reads such a mapping runs inside a guard: a
 * SIGBUS in a guarded section of the current thread jumps back to where the section began,
 * which reports CV_ESOURCE instead of killing the process.  A SIGBUS anywhere else goes to
 * the handler that was installed before (Python's faulthandler, or the default: the process
 * dies as it would have).
 *
 * cv_guard_install() installs the handler (idempotent; call it with no guarded section
 * running, e.g. under the GIL before releasing it).  On platforms without POSIX signals the
 * guard does nothing and the functions below run their work unguarded.
 */
#ifndef CV_GUARD_H
#define CV_GUARD_H

#include "cv_batch.h"
#include "cv_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CV_OK, or CV_EUNSUPPORTED where the platform has no guard (the work still runs). */
int cv_guard_install(void);

/* 1 when the handler installed by cv_guard_install is the current SIGBUS handler. */
int cv_guard_active(void);

/* memcpy(dst, src, n) of bytes that may lie in a shrinking mapping: CV_OK or CV_ESOURCE. */
int cv_guarded_copy(void *dst, const void *src, size_t n);

/* cv_decode_jobs with each job guarded: a job whose source bytes vanish fails with
 * CV_ESOURCE (its output may be partly written) and the batch goes on. */
size_t cv_decode_jobs_guarded(cv_worker *w, const cv_plan *p, cv_job *jobs, size_t njobs,
                              size_t *next, size_t grain);

#ifdef __cplusplus
}
#endif
#endif /* CV_GUARD_H */
