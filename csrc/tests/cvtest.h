/* cvtest.h: a tiny test harness for the C core (no dependencies). */
#ifndef CVTEST_H
#define CVTEST_H
#include <stdio.h>
#include <stdlib.h>

static int cvt_failures = 0, cvt_checks = 0;
#define CHECK(cond)                                                                   \
    do {                                                                              \
        cvt_checks++;                                                                 \
        if (!(cond)) {                                                                \
            cvt_failures++;                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
        }                                                                             \
    } while (0)
#define CHECK_EQ(a, b) CHECK((a) == (b))
#define CVT_DONE(name)                                                                \
    do {                                                                              \
        printf("%s: %d checks, %d failed\n", name, cvt_checks, cvt_failures);         \
        return cvt_failures ? 1 : 0;                                                  \
    } while (0)
#endif
