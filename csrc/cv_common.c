/* cv_common.c: status texts shared by every part of the C core. */
#include "cv_common.h"

const char *cv_strerror(int status) {
    switch (status) {
    case CV_OK: return "ok";
    case CV_ENOMEM: return "out of memory";
    case CV_EINVAL: return "invalid argument";
    case CV_ENOTFOUND: return "not found";
    case CV_ERANGE: return "value out of range";
    case CV_EFORMAT: return "malformed input";
    case CV_ECHECKSUM: return "checksum mismatch";
    case CV_EVERSION: return "unsupported format version";
    case CV_ETRUNCATED: return "input is truncated";
    case CV_EREADONLY: return "object is read-only";
    case CV_EUTF8: return "invalid UTF-8";
    case CV_EUNSUPPORTED: return "unsupported";
    case CV_ECORRUPT: return "corrupt data";
    case CV_ESIZE: return "size mismatch";
    case CV_ESOURCE: return "the file shrank while it was read";
    default: return "unknown error";
    }
}
