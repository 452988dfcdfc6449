/* cv_batch.h: decode many chunks of one array, each straight into its place in an output array.
 *
 * A plan describes the array (chunk shape, item size, fill value, the filter pipeline in decode
 * order) and the output (byte strides of any sign, and the bounds of the output buffer).  A job
 * is one chunk: its stored bytes (or NULL for a missing chunk, which gets the fill value), its
 * per-chunk filter mask, and the part of the chunk to copy ((start, step, count) per dimension,
 * in chunk coordinates) with the address of that part's first element in the output.
 *
 * The decoded size of every chunk is exact from the plan (prod(chunk) * itemsize), so no stream
 * can write past it; every job is checked against the chunk shape and the output bounds before
 * anything is written.  The last filter is fused with the copy into the output: an inflate whose
 * chunk fills one contiguous run of the output inflates in place, and an unshuffle writes each
 * output row straight from the shuffled byte planes.
 *
 * Threads: several threads may run cv_decode_jobs on one job array at once, each with its own
 * worker and a shared counter from which they claim jobs; distinct jobs must write disjoint
 * output elements.  No Python.h, no I/O, no global mutable state.
 */
#ifndef CV_BATCH_H
#define CV_BATCH_H

#include "cv_common.h"
#include "cv_decode.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CV_MAX_DIMS 32
#define CV_MAX_STEPS 8

enum {
    CV_STEP_FLETCHER32 = 1, /* verify and strip a 4-byte HDF5 Fletcher-32 trailer */
    CV_STEP_ZLIB = 2,       /* inflate a zlib stream */
    CV_STEP_DEFLATE = 3,    /* inflate a raw deflate stream */
    CV_STEP_GZIP = 4,       /* inflate a gzip stream */
    CV_STEP_UNSHUFFLE = 5,  /* HDF5 unshuffle, param = element size */
};

typedef struct {
    int kind;      /* CV_STEP_* */
    int mask_bit;  /* the bit of a chunk's filter mask that skips this step, or -1 */
    size_t param;  /* CV_STEP_UNSHUFFLE: element size */
} cv_step;

typedef struct {
    int ndim;                     /* 0 .. CV_MAX_DIMS (0: a scalar, one element) */
    size_t itemsize;              /* bytes per element, >= 1 */
    int64_t chunk[CV_MAX_DIMS];   /* chunk shape, each >= 1 */
    int64_t ostride[CV_MAX_DIMS]; /* output strides in bytes (any sign) */
    int nsteps;                   /* filters in decode order (the reverse of writing) */
    cv_step steps[CV_MAX_STEPS];
    const uint8_t *fill;          /* itemsize bytes of fill value, or NULL for zeros (caller-owned) */
    const uint8_t *out_lo;        /* every byte written lies in [out_lo, out_hi) */
    const uint8_t *out_hi;
    size_t nbytes;                /* set by cv_plan_init: the decoded size of one chunk */
} cv_plan;

typedef struct {
    const uint8_t *src;   /* stored bytes of the chunk (caller-owned), or NULL: missing chunk */
    size_t srclen;
    uint8_t *out;         /* output address of the first selected element */
    const int64_t *sel;   /* ndim triples (start, step, count) in chunk coordinates */
    uint32_t mask;        /* per-chunk filter mask: bit b set skips the steps with mask_bit b */
    int status;           /* result: CV_OK or a CV_E* code */
    int step;             /* result: index of the failing step, or -1 */
    int64_t detail;       /* result: for CV_ESIZE, the size found (-1 if unknown) */
} cv_job;

/* Check a plan and compute p->nbytes.  CV_EINVAL for a bad shape, item size or step list (at
 * most one inflate step), CV_ERANGE when a chunk's size overflows. */
int cv_plan_init(cv_plan *p);

/* Per-thread state: an inflater (api: as for cv_inflater_new) and scratch buffers that grow
 * as needed. */
typedef struct cv_worker cv_worker;
cv_worker *cv_worker_new(const cv_libdeflate_api *api);
void cv_worker_free(cv_worker *w);

/* Decode one job; sets and returns j->status.  CV_EINVAL: the selection lies outside the chunk
 * or the output bounds (nothing written).  CV_ECORRUPT / CV_ECHECKSUM / CV_ETRUNCATED /
 * CV_ESIZE: bad stored bytes (the output of this job may be partly written). */
int cv_decode_job(cv_worker *w, const cv_plan *p, cv_job *j);

/* Decode jobs claimed `grain` at a time from the shared counter *next (start it at 0) until
 * none are left; returns the number of failed jobs among those this call ran.  Failures never
 * stop the batch: each job records its own status. */
size_t cv_decode_jobs(cv_worker *w, const cv_plan *p, cv_job *jobs, size_t njobs, size_t *next,
                      size_t grain);

/* cv_decode_jobs running each job through `one` (cv_decode_job, or a wrapper of it). */
typedef int (*cv_job_fn)(cv_worker *w, const cv_plan *p, cv_job *j);
size_t cv_decode_jobs_with(cv_worker *w, const cv_plan *p, cv_job *jobs, size_t njobs,
                           size_t *next, size_t grain, cv_job_fn one);

#ifdef __cplusplus
}
#endif
#endif /* CV_BATCH_H */
