# Declarations of the C core (csrc/).  Declarations only: no logic lives here.
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t


cdef extern from "cv_common.h" nogil:
    enum:
        CV_OK
        CV_ENOMEM
        CV_EINVAL
        CV_ENOTFOUND
        CV_ERANGE
        CV_EFORMAT
        CV_ECHECKSUM
        CV_EVERSION
        CV_ETRUNCATED
        CV_EREADONLY
        CV_EUTF8
        CV_EUNSUPPORTED
        CV_ECORRUPT
        CV_ESIZE
        CV_ESOURCE
    const char *cv_strerror(int status)


cdef extern from "cv_hash.h" nogil:
    uint64_t cv_xxh64(const uint8_t *src, size_t srclen, uint64_t seed)


cdef extern from "cv_index.h" nogil:
    uint32_t CV_URL_INLINE
    uint32_t CV_URL_MISSING
    uint64_t CV_LEN_WHOLE
    int64_t CV_ID_INLINE
    int64_t CV_ID_MISSING

    ctypedef struct cv_index:
        pass

    ctypedef struct cv_ref:
        uint32_t url
        uint64_t offset
        uint64_t length

    cv_index *cv_index_new()
    void cv_index_free(cv_index *idx)
    int cv_index_reserve(cv_index *idx, size_t nkeys, size_t keybytes)
    int cv_index_shrink(cv_index *idx)
    size_t cv_index_len(const cv_index *idx)
    int64_t cv_index_url_intern(cv_index *idx, const uint8_t *url, size_t len)
    size_t cv_index_url_count(const cv_index *idx)
    int cv_index_url_get(const cv_index *idx, uint32_t id, const uint8_t **url, size_t *len)
    int cv_index_urls_replace(cv_index *idx, size_t n, const uint8_t *const *urls, const size_t *lens)
    int cv_index_put(cv_index *idx, const uint8_t *key, size_t klen, uint32_t url,
                     uint64_t offset, uint64_t length)
    int cv_index_put_inline(cv_index *idx, const uint8_t *key, size_t klen,
                            const uint8_t *data, size_t dlen)
    int cv_index_put_grid(cv_index *idx, const uint8_t *prefix, size_t plen, uint8_t sep,
                          size_t n, size_t rank, const int64_t *coords, const uint32_t *url_ids,
                          const uint64_t *offsets, const uint64_t *lengths)
    int cv_index_get_grid(const cv_index *idx, const uint8_t *prefix, size_t plen, uint8_t sep,
                          size_t rank, const int64_t *grid, size_t n, uint32_t *url_ids,
                          uint64_t *offsets, uint64_t *lengths, uint8_t *found)
    int cv_index_put_many(cv_index *idx, size_t n, const uint8_t *const *keys,
                          const size_t *klens, const uint32_t *url_ids,
                          const uint64_t *offsets, const uint64_t *lengths)
    int cv_index_del(cv_index *idx, const uint8_t *key, size_t klen)
    int cv_index_get(const cv_index *idx, const uint8_t *key, size_t klen, cv_ref *ref)
    int64_t cv_index_find(const cv_index *idx, const uint8_t *key, size_t klen)
    int64_t cv_index_get_many(const cv_index *idx, size_t n, const uint8_t *const *keys,
                              const size_t *klens, int64_t *url_ids, uint64_t *offsets,
                              uint64_t *lengths)
    int64_t cv_index_get_many_shared(const cv_index *idx, size_t n, const uint8_t *const *keys,
                                     const size_t *klens, int64_t *url_ids, uint64_t *offsets,
                                     uint64_t *lengths, size_t *next, size_t part)
    int cv_index_inline(const cv_index *idx, const cv_ref *ref, const uint8_t **data, size_t *len)
    int cv_index_next(const cv_index *idx, size_t *cursor, const uint8_t **key, size_t *klen,
                      cv_ref *ref)
    int cv_index_check(const cv_index *idx)
    ctypedef struct cv_where:
        const char *field
        uint64_t at
    int cv_index_check_at(const cv_index *idx, cv_where *w)
    size_t cv_index_memory(const cv_index *idx)
    int64_t cv_index_serialized_size(cv_index *idx)
    int64_t cv_index_serialize(cv_index *idx, uint8_t *dst, size_t dstcap)
    cv_index *cv_index_open_buffer(const uint8_t *buf, size_t len, int copy, int verify,
                                   int *status)
    cv_index *cv_index_open_buffer_at(const uint8_t *buf, size_t len, int copy, int verify,
                                      int *status, cv_where *w)


cdef extern from "cv_refjson.h" nogil:
    ctypedef struct cv_span:
        size_t start
        size_t len

    ctypedef struct cv_refjson_result:
        int version
        cv_span templates
        cv_span gen
        cv_span *deferred
        size_t ndeferred
        size_t nrefs
        size_t err_pos
        const char *err_msg
        cv_span err_key

    int cv_refjson_parse(cv_index *idx, const uint8_t *src, size_t srclen,
                         cv_refjson_result *res)
    void cv_refjson_result_free(cv_refjson_result *res)


cdef extern from "cv_decode.h" nogil:
    enum:
        CV_FMT_ZLIB
        CV_FMT_DEFLATE
        CV_FMT_GZIP
        CV_SIMD_SSE2
        CV_SIMD_AVX2
        CV_SIMD_NEON

    ctypedef struct cv_inflater:
        pass

    ctypedef struct cv_libdeflate_api:
        void *(*alloc_decompressor)()
        void (*free_decompressor)(void *d)
        int (*zlib_decompress)(void *d, const void *src, size_t srclen, void *dst,
                               size_t dstcap, size_t *outlen)
        int (*deflate_decompress)(void *d, const void *src, size_t srclen, void *dst,
                                  size_t dstcap, size_t *outlen)
        int (*gzip_decompress)(void *d, const void *src, size_t srclen, void *dst,
                               size_t dstcap, size_t *outlen)

    cv_inflater *cv_inflater_new(const cv_libdeflate_api *api)
    void cv_inflater_free(cv_inflater *z)
    int cv_inflate(cv_inflater *z, int format, const uint8_t *src, size_t srclen, uint8_t *dst,
                   size_t dstcap, size_t *outlen)
    void cv_unshuffle(const uint8_t *src, uint8_t *dst, size_t nbytes, size_t elemsize)
    void cv_shuffle(const uint8_t *src, uint8_t *dst, size_t nbytes, size_t elemsize)
    uint32_t cv_fletcher32(const uint8_t *src, size_t n)
    int cv_fletcher32_verify(const uint8_t *src, size_t n)
    const char *cv_inflate_backend()
    const char *cv_inflate_version()
    int cv_inflate_loadable()
    unsigned cv_simd_built()
    unsigned cv_simd_available()
    int cv_unshuffle_with(unsigned kernel, const uint8_t *src, uint8_t *dst, size_t nbytes,
                          size_t elemsize)
    unsigned cv_unshuffle_kernel()


cdef extern from "cv_batch.h" nogil:
    enum:
        CV_MAX_DIMS
        CV_MAX_STEPS
        CV_STEP_FLETCHER32
        CV_STEP_ZLIB
        CV_STEP_DEFLATE
        CV_STEP_GZIP
        CV_STEP_UNSHUFFLE

    ctypedef struct cv_step:
        int kind
        int mask_bit
        size_t param

    ctypedef struct cv_plan:
        int ndim
        size_t itemsize
        int64_t chunk[32]
        int64_t ostride[32]
        int nsteps
        cv_step steps[8]
        const uint8_t *fill
        const uint8_t *out_lo
        const uint8_t *out_hi
        size_t nbytes

    ctypedef struct cv_job:
        const uint8_t *src
        size_t srclen
        uint8_t *out
        const int64_t *sel
        uint32_t mask
        int status
        int step
        int64_t detail

    ctypedef struct cv_worker:
        pass

    int cv_plan_init(cv_plan *p)
    cv_worker *cv_worker_new(const cv_libdeflate_api *api)
    void cv_worker_free(cv_worker *w)
    int cv_decode_job(cv_worker *w, const cv_plan *p, cv_job *j)
    size_t cv_decode_jobs(cv_worker *w, const cv_plan *p, cv_job *jobs, size_t njobs,
                          size_t *next, size_t grain)


cdef extern from "cv_guard.h" nogil:
    int cv_guard_install()
    int cv_guard_active()
    int cv_guarded_copy(void *dst, const void *src, size_t n)
    size_t cv_decode_jobs_guarded(cv_worker *w, const cv_plan *p, cv_job *jobs, size_t njobs,
                                  size_t *next, size_t grain)
