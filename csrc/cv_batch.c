/* cv_batch.c: see cv_batch.h. */
#include "cv_batch.h"

struct cv_worker {
    cv_inflater *z;
    uint8_t *buf[2];
    size_t cap;
    unsigned kernel;
};

cv_worker *cv_worker_new(const cv_libdeflate_api *api) {
    cv_worker *w = CV_MALLOC(sizeof(cv_worker));
    if (!w) return NULL;
    memset(w, 0, sizeof(*w));
    w->z = cv_inflater_new(api);
    if (!w->z) {
        CV_FREE(w);
        return NULL;
    }
    w->kernel = cv_unshuffle_kernel();
    return w;
}

void cv_worker_free(cv_worker *w) {
    if (!w) return;
    cv_inflater_free(w->z);
    CV_FREE(w->buf[0]);
    CV_FREE(w->buf[1]);
    CV_FREE(w);
}

static int worker_reserve(cv_worker *w, size_t n) {
    if (n <= w->cap) return CV_OK;
    for (int i = 0; i < 2; i++) {
        CV_FREE(w->buf[i]);
        w->buf[i] = CV_MALLOC(n ? n : 1);
        if (!w->buf[i]) {
            w->cap = 0;
            CV_FREE(w->buf[0]);
            w->buf[0] = w->buf[1] = NULL;
            return CV_ENOMEM;
        }
    }
    w->cap = n;
    return CV_OK;
}

static int is_inflate(int kind) {
    return kind == CV_STEP_ZLIB || kind == CV_STEP_DEFLATE || kind == CV_STEP_GZIP;
}

int cv_plan_init(cv_plan *p) {
    if (p->ndim < 0 || p->ndim > CV_MAX_DIMS || p->itemsize == 0) return CV_EINVAL;
    if (p->nsteps < 0 || p->nsteps > CV_MAX_STEPS) return CV_EINVAL;
    if (!p->out_lo || !p->out_hi || p->out_hi < p->out_lo) return CV_EINVAL;
    size_t n = p->itemsize;
    if (n > (SIZE_MAX >> 2)) return CV_ERANGE;
    for (int d = 0; d < p->ndim; d++) {
        if (p->chunk[d] < 1) return CV_EINVAL;
        if ((uint64_t)p->chunk[d] > (SIZE_MAX >> 2) / n) return CV_ERANGE;
        n *= (size_t)p->chunk[d];
    }
    int inflates = 0;
    for (int k = 0; k < p->nsteps; k++) {
        const cv_step *s = &p->steps[k];
        if (s->mask_bit < -1 || s->mask_bit > 31) return CV_EINVAL;
        if (is_inflate(s->kind))
            inflates++;
        else if (s->kind == CV_STEP_UNSHUFFLE) {
            if (s->param == 0) return CV_EINVAL;
        } else if (s->kind != CV_STEP_FLETCHER32)
            return CV_EINVAL;
    }
    if (inflates > 1) return CV_EINVAL;
    p->nbytes = n;
    return CV_OK;
}

/* ---------------------------------------------------------------- walking a selection */

/* The selected part of a chunk as nested loops: count[d] elements, at stride sstride[d]
 * (elements) in the chunk and ostride[d] (bytes) in the output, dimensions merged where the
 * strides allow, so a full chunk in a matching output is a single run. */
typedef struct {
    int nd;
    int64_t count[CV_MAX_DIMS];
    int64_t sstride[CV_MAX_DIMS];
    int64_t ostride[CV_MAX_DIMS];
    int64_t base; /* element offset of the first selected element in the chunk */
} walk;

enum { W_COPY, W_UNSHUFFLE, W_FILL };

/* Check the job's selection against the chunk and the output bounds and build its walk. */
static int walk_build(const cv_plan *p, const cv_job *j, walk *w) {
    int64_t cs = 1, lo = 0, hi = (int64_t)p->itemsize;
    int64_t es[CV_MAX_DIMS];
    for (int d = p->ndim - 1; d >= 0; d--) {
        es[d] = cs;
        cs *= p->chunk[d];
    }
    w->nd = 0;
    w->base = 0;
    for (int d = 0; d < p->ndim; d++) {
        int64_t start = j->sel[3 * d], step = j->sel[3 * d + 1], count = j->sel[3 * d + 2];
        if (count == 0) return 1; /* nothing selected */
        if (start < 0 || step < 1 || count < 0 || start >= p->chunk[d] ||
            (count - 1) > (p->chunk[d] - 1 - start) / step)
            return CV_EINVAL;
        int64_t os = p->ostride[d];
        /* |os| * (count - 1) must not overflow: the output spans at most out_hi - out_lo bytes */
        int64_t span_limit = (int64_t)(p->out_hi - p->out_lo);
        if (count > 1 && (os > span_limit || os < -span_limit)) return CV_EINVAL;
        int64_t ext = os * (count - 1);
        if (ext < 0) lo += ext;
        else hi += ext;
        if (hi - lo > span_limit) return CV_EINVAL;
        w->base += start * es[d];
        if (count == 1) continue;
        w->count[w->nd] = count;
        w->sstride[w->nd] = es[d] * step;
        w->ostride[w->nd] = os;
        w->nd++;
    }
    if ((uintptr_t)j->out < (uintptr_t)p->out_lo ||
        (lo < 0 && (uintptr_t)(j->out - p->out_lo) < (uintptr_t)(-lo)) ||
        (uintptr_t)(p->out_hi - j->out) < (uintptr_t)hi)
        return CV_EINVAL;
    /* merge dimension d into d-1 when d-1 steps exactly over all of d's elements */
    int m = 0;
    for (int d = 0; d < w->nd; d++) {
        if (m > 0 && w->sstride[m - 1] == w->count[d] * w->sstride[d] &&
            w->ostride[m - 1] == w->count[d] * w->ostride[d]) {
            w->count[m - 1] *= w->count[d];
            w->sstride[m - 1] = w->sstride[d];
            w->ostride[m - 1] = w->ostride[d];
            continue;
        }
        w->count[m] = w->count[d];
        w->sstride[m] = w->sstride[d];
        w->ostride[m] = w->ostride[d];
        m++;
    }
    w->nd = m;
    if (m == 0) { /* a single element */
        w->nd = 1;
        w->count[0] = 1;
        w->sstride[0] = 1;
        w->ostride[0] = (int64_t)p->itemsize;
    }
    return CV_OK;
}

static inline void copy_items(uint8_t *dst, int64_t os, const uint8_t *src, int64_t ss, int64_t n,
                              size_t is) {
    /* ss in bytes here */
    switch (is) {
    case 1:
        for (int64_t i = 0; i < n; i++) dst[i * os] = src[i * ss];
        break;
    case 2:
        for (int64_t i = 0; i < n; i++) memcpy(dst + i * os, src + i * ss, 2);
        break;
    case 4:
        for (int64_t i = 0; i < n; i++) memcpy(dst + i * os, src + i * ss, 4);
        break;
    case 8:
        for (int64_t i = 0; i < n; i++) memcpy(dst + i * os, src + i * ss, 8);
        break;
    default:
        for (int64_t i = 0; i < n; i++) memcpy(dst + i * os, src + i * ss, is);
    }
}

static void fill_items(uint8_t *dst, int64_t os, int64_t n, const uint8_t *fill, size_t is) {
    if (!fill) {
        if (os == (int64_t)is) {
            memset(dst, 0, (size_t)n * is);
            return;
        }
        for (int64_t i = 0; i < n; i++) memset(dst + i * os, 0, is);
        return;
    }
    copy_items(dst, os, fill, 0, n, is);
}

/* Run one innermost row: n elements starting at chunk element e. */
static void walk_row(const cv_plan *p, int mode, unsigned kernel, const uint8_t *src, size_t nelem,
                     int64_t e, int64_t ss, uint8_t *dst, int64_t os, int64_t n) {
    size_t is = p->itemsize;
    if (mode == W_FILL) {
        fill_items(dst, os, n, p->fill, is);
    } else if (mode == W_COPY) {
        if (ss == 1 && os == (int64_t)is)
            memcpy(dst, src + (size_t)e * is, (size_t)n * is);
        else
            copy_items(dst, os, src + (size_t)e * is, ss * (int64_t)is, n, is);
    } else if (ss == 1 && os == (int64_t)is) {
        cv_unshuffle_run(kernel, src + e, nelem, dst, (size_t)n, is);
    } else {
        for (int64_t i = 0; i < n; i++) {
            const uint8_t *s = src + e + i * ss;
            uint8_t *o = dst + i * os;
            for (size_t b = 0; b < is; b++) o[b] = s[b * nelem];
        }
    }
}

static void walk_run(const cv_plan *p, const walk *w, int mode, unsigned kernel,
                     const uint8_t *src, uint8_t *out) {
    size_t nelem = p->nbytes / p->itemsize;
    int last = w->nd - 1;
    int64_t idx[CV_MAX_DIMS] = {0};
    int64_t e = w->base;
    uint8_t *o = out;
    for (;;) {
        walk_row(p, mode, kernel, src, nelem, e, w->sstride[last], o, w->ostride[last],
                 w->count[last]);
        int d = last - 1;
        for (; d >= 0; d--) {
            if (++idx[d] < w->count[d]) {
                e += w->sstride[d];
                o += w->ostride[d];
                break;
            }
            e -= w->sstride[d] * (w->count[d] - 1);
            o -= w->ostride[d] * (w->count[d] - 1);
            idx[d] = 0;
        }
        if (d < 0) return;
    }
}

/* ---------------------------------------------------------------- one chunk */

static int fail(cv_job *j, int status, int step, int64_t detail) {
    j->status = status;
    j->step = step;
    j->detail = detail;
    return status;
}

int cv_decode_job(cv_worker *w, const cv_plan *p, cv_job *j) {
    j->status = CV_OK;
    j->step = -1;
    j->detail = -1;
    walk wk;
    int st = walk_build(p, j, &wk);
    if (st == 1) return CV_OK;
    if (st != CV_OK) return fail(j, st, -1, -1);
    if (!j->src) {
        walk_run(p, &wk, W_FILL, w->kernel, NULL, j->out);
        return CV_OK;
    }
    size_t D = p->nbytes;
    int act[CV_MAX_STEPS], na = 0;
    for (int k = 0; k < p->nsteps; k++) {
        int b = p->steps[k].mask_bit;
        if (b >= 0 && ((j->mask >> b) & 1u)) continue;
        act[na++] = k;
    }
    /* the size each active step must produce, known backwards from the decoded size */
    size_t outsz[CV_MAX_STEPS];
    size_t sz = D;
    int known = 1, nflet = 0;
    for (int a = na - 1; a >= 0; a--) {
        const cv_step *s = &p->steps[act[a]];
        outsz[a] = known ? sz : SIZE_MAX;
        if (s->kind == CV_STEP_FLETCHER32) {
            sz += 4;
            nflet++;
        } else if (is_inflate(s->kind)) {
            known = 0;
        }
    }
    if (na && worker_reserve(w, D + 4 * (size_t)nflet) != CV_OK) return fail(j, CV_ENOMEM, -1, -1);
    /* one contiguous output run of the whole chunk: the last inflate may write there directly */
    int whole_run = wk.nd == 1 && wk.base == 0 && wk.sstride[0] == 1 &&
                    wk.ostride[0] == (int64_t)p->itemsize && (size_t)wk.count[0] * p->itemsize == D;
    const uint8_t *cur = j->src;
    size_t len = j->srclen;
    int nb = 0; /* which scratch buffer to write next */
    for (int a = 0; a < na; a++) {
        int k = act[a];
        const cv_step *s = &p->steps[k];
        int lastStep = a == na - 1;
        if (s->kind == CV_STEP_FLETCHER32) {
            if (len < 4) return fail(j, CV_ETRUNCATED, k, (int64_t)len);
            st = cv_fletcher32_verify(cur, len);
            if (st != CV_OK) return fail(j, st, k, -1);
            len -= 4;
        } else if (is_inflate(s->kind)) {
            size_t want = outsz[a];
            int fmt = s->kind == CV_STEP_ZLIB ? CV_FMT_ZLIB
                      : s->kind == CV_STEP_DEFLATE ? CV_FMT_DEFLATE : CV_FMT_GZIP;
            uint8_t *dst = (lastStep && whole_run) ? j->out : w->buf[nb];
            size_t got = 0;
            st = cv_inflate(w->z, fmt, cur, len, dst, want, &got);
            if (st == CV_ESIZE) return fail(j, CV_ESIZE, k, -1);
            if (st != CV_OK) return fail(j, st, k, -1);
            if (got != want) return fail(j, CV_ESIZE, k, (int64_t)got);
            if (lastStep && whole_run) return CV_OK;
            cur = dst;
            len = got;
            nb ^= 1;
        } else { /* unshuffle */
            if (outsz[a] == SIZE_MAX) return fail(j, CV_EUNSUPPORTED, k, -1); /* before inflate */
            if (len != outsz[a]) return fail(j, CV_ESIZE, k, (int64_t)len);
            if (lastStep && s->param == p->itemsize) {
                walk_run(p, &wk, W_UNSHUFFLE, w->kernel, cur, j->out);
                return CV_OK;
            }
            (void)cv_unshuffle_with(w->kernel, cur, w->buf[nb], len, s->param);
            cur = w->buf[nb];
            nb ^= 1;
        }
    }
    if (len != D) return fail(j, CV_ESIZE, -1, (int64_t)len);
    walk_run(p, &wk, W_COPY, w->kernel, cur, j->out);
    return CV_OK;
}

size_t cv_decode_jobs_with(cv_worker *w, const cv_plan *p, cv_job *jobs, size_t njobs,
                           size_t *next, size_t grain, cv_job_fn one) {
    size_t failed = 0;
    if (grain == 0) grain = 1;
    for (;;) {
        size_t i = cv_claim(next, grain);
        if (i >= njobs) break;
        size_t end = njobs - i < grain ? njobs : i + grain;
        for (; i < end; i++)
            if (one(w, p, &jobs[i]) != CV_OK) failed++;
    }
    return failed;
}

size_t cv_decode_jobs(cv_worker *w, const cv_plan *p, cv_job *jobs, size_t njobs, size_t *next,
                      size_t grain) {
    return cv_decode_jobs_with(w, p, jobs, njobs, next, grain, cv_decode_job);
}
