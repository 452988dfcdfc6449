/* test_guard.c: reads of a memory-mapped file truncated under them report CV_ESOURCE. */
#define _XOPEN_SOURCE 700
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../cv_guard.h"
#include "cvtest.h"

static const size_t PAGE = 4096, NPAGES = 64;

/* a file of NPAGES pages, mapped; truncated to one page when `shrink` */
static uint8_t *mapped(char *path, int *fd) {
    strcpy(path, "/tmp/cv_guard_XXXXXX");
    *fd = mkstemp(path);
    if (*fd < 0) return NULL;
    uint8_t *page = malloc(PAGE);
    for (size_t i = 0; i < NPAGES; i++) {
        memset(page, (int)i, PAGE);
        if (write(*fd, page, PAGE) != (ssize_t)PAGE) return NULL;
    }
    free(page);
    void *m = mmap(NULL, PAGE * NPAGES, PROT_READ, MAP_SHARED, *fd, 0);
    return m == MAP_FAILED ? NULL : m;
}

static void unmapped(uint8_t *m, int fd, const char *path) {
    munmap(m, PAGE * NPAGES);
    close(fd);
    unlink(path);
}

/* mapped(), checked, with the guard installed */
static uint8_t *guarded_map(char *path, int *fd) {
    uint8_t *m = mapped(path, fd);
    CHECK(m != NULL);
    if (m) CHECK_EQ(cv_guard_install(), CV_OK);
    return m;
}

static void test_copy(void) {
    char path[64];
    int fd;
    uint8_t *m = guarded_map(path, &fd);
    if (!m) return;
    CHECK(cv_guard_active());
    CHECK_EQ(cv_guard_install(), CV_OK); /* idempotent */
    uint8_t buf[4096];
    CHECK_EQ(cv_guarded_copy(buf, m + 5 * PAGE, PAGE), CV_OK);
    CHECK_EQ(buf[0], 5);
    CHECK_EQ(ftruncate(fd, (off_t)PAGE), 0);
    CHECK_EQ(cv_guarded_copy(buf, m, 16), CV_OK); /* the page that is left */
    CHECK_EQ(cv_guarded_copy(buf, m + 5 * PAGE, PAGE), CV_ESOURCE);
    CHECK_EQ(cv_guarded_copy(buf, m + 60 * PAGE, 10), CV_ESOURCE); /* again: still guarded */
    unmapped(m, fd, path);
}

static void test_jobs(void) {
    char path[64];
    int fd;
    uint8_t *m = guarded_map(path, &fd);
    if (!m) return;
    /* raw chunks of one page each (no filters): page i -> output row i */
    cv_plan p;
    memset(&p, 0, sizeof p);
    p.ndim = 1;
    p.itemsize = 1;
    p.chunk[0] = (int64_t)PAGE;
    p.ostride[0] = 1;
    uint8_t *out = calloc(NPAGES, PAGE);
    p.out_lo = out;
    p.out_hi = out + NPAGES * PAGE;
    CHECK_EQ(cv_plan_init(&p), CV_OK);
    cv_job jobs[8];
    int64_t sel[8][3];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < 8; i++) {
        sel[i][0] = 0, sel[i][1] = 1, sel[i][2] = (int64_t)PAGE;
        jobs[i].src = m + (size_t)i * 8 * PAGE;
        jobs[i].srclen = PAGE;
        jobs[i].out = out + (size_t)i * PAGE;
        jobs[i].sel = sel[i];
    }
    CHECK_EQ(ftruncate(fd, (off_t)(17 * PAGE)), 0); /* pages 0-16 remain: jobs 0, 1 and 2 */
    cv_worker *w = cv_worker_new(NULL);
    size_t next = 0;
    size_t failed = cv_decode_jobs_guarded(w, &p, jobs, 8, &next, 1);
    CHECK_EQ(failed, 5);
    for (int i = 0; i < 8; i++) CHECK_EQ(jobs[i].status, i < 3 ? CV_OK : CV_ESOURCE);
    CHECK_EQ(out[2 * PAGE], 16);
    cv_worker_free(w);
    free(out);
    unmapped(m, fd, path);
}

int main(void) {
    test_copy();
    test_jobs();
    CVT_DONE("test_guard");
}
