/* sanitize_probe.c: deliberate bugs that tests/sanitize.sh loads into Python (through ctypes)
 * under the same flags and runtime options as the extensions, to prove that an ASan or UBSan
 * report stops the run with a failure rather than printing and going on. */
#include <stdlib.h>
#include <string.h>

int cv_probe_ubsan(int shift) {
    int one = 1;
    return one << shift; /* shift = 40: undefined behaviour */
}

int cv_probe_asan(int n) {
    char *p = malloc((size_t)n);
    memset(p, 0, (size_t)n);
    int v = p[n]; /* one past the end: heap-buffer-overflow */
    free(p);
    return v;
}
