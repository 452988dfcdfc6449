"""Native status -> exception: every error the compiled modules raise is worded here.

The C core returns ``int`` status codes (``CV_OK``, negative ``CV_E*``, csrc/cv_common.h); the
Cython modules only pass them up, with C's own ``cv_strerror`` text, or name one of the
argument checks below.  This module turns them into the chunkview exceptions of
:mod:`chunkview.errors`, so the wording and the classes live in one place:

* :func:`status_error`: a C status from the reference index;
* :func:`job_text`: why one chunk of a batch decode failed;
* :func:`decode_error`: the exception for a failed batch, naming the first failing chunk's key,
  URL and byte range (zstandard's batch API says "error decompressing item N" the same way);
* :func:`error`: an argument a compiled function refused, by name (:data:`MESSAGES`).
"""

from __future__ import annotations

from enum import IntEnum

from chunkview import errors


class Status(IntEnum):
    """The C core's status codes (csrc/cv_common.h; tests/test_structure.py checks them against
    the build).  ``CV_OK`` is 0."""

    ENOMEM = -1
    EINVAL = -2
    ENOTFOUND = -3
    ERANGE = -4
    EFORMAT = -5
    ECHECKSUM = -6
    EVERSION = -7
    ETRUNCATED = -8
    EREADONLY = -9
    EUTF8 = -10
    EUNSUPPORTED = -11
    ECORRUPT = -12
    ESIZE = -13
    ESOURCE = -14


CODES = {s.name: int(s) for s in Status}

_FORMAT = (Status.EFORMAT, Status.ETRUNCATED, Status.EVERSION, Status.EUTF8, Status.ECORRUPT,
           Status.ERANGE)


def status_error(status: int, c_text: str, what: str) -> Exception:
    """The exception for C status ``status`` (``c_text``: its ``cv_strerror``) met doing
    ``what``."""
    msg = f"{what}: {c_text}"
    if status == Status.ENOMEM:
        return MemoryError(msg)
    if status == Status.ENOTFOUND:
        return errors.ReferenceNotFound(msg)
    if status == Status.ECHECKSUM:
        return errors.ChecksumError(msg)
    if status in _FORMAT:
        return errors.ReferenceFormatError(msg)
    if status == Status.EUNSUPPORTED:
        return errors.UnsupportedError(msg)
    return errors.ChunkviewError(msg)


def not_found(key) -> Exception:
    return errors.ReferenceNotFound(key)


def json_error(status: int, msg: str, pos: int, raw_key: bytes | None) -> Exception:
    """The exception of the C JSON reference parser failing at byte ``pos`` (``raw_key``: the
    key it was reading, when it got that far)."""
    if status == Status.ENOMEM:
        return MemoryError(msg)
    return errors.ReferenceFormatError(msg, pos=pos, raw_key=raw_key, status=status)


# why a chunk of a batch failed, by status; (status, reason) for the checks made before C runs
_JOB_TEXT = {
    Status.EINVAL: "the selection lies outside the chunk or the output",
    Status.ESIZE: "the decoded size does not match the chunk's",
    Status.ECHECKSUM: "checksum mismatch",
    Status.ECORRUPT: "corrupt compressed stream",
    Status.ETRUNCATED: "truncated chunk",
    Status.ESOURCE: "the file shrank while it was read (changed since it was opened)",
    (Status.EINVAL, "outside_output"): "the selection lies outside the output",
    (Status.ETRUNCATED, "short_fetch"): "fetched bytes are shorter than the reference",
}


def job_text(status: int, c_text: str, reason: str | None = None) -> str:
    """Why one job of a batch decode failed (``reason``: a check made before the C decoder)."""
    return _JOB_TEXT.get((status, reason)) or _JOB_TEXT.get(status) or c_text


def decode_error(keys, seg, failed, steps) -> errors.ChunkviewError:
    """The DecodeError of a batch whose jobs ``failed`` (``decode_batch``'s list), naming the
    first failing chunk's key, URL and byte range (``seg``: the batch's segment table)."""
    i, status, text, step, detail = failed[0]
    url = seg.url_of(i)
    start = int(seg.starts[i])
    length = int(seg.lengths[i])
    what = f" in step {steps[step][0]}" if 0 <= step < len(steps) else ""
    extra = f" (found {detail} bytes)" if detail >= 0 else ""
    more = f"; {len(failed) - 1} more chunks failed" if len(failed) > 1 else ""
    rng = f"bytes {start}-{start + length}"
    if status == Status.ESOURCE:
        err = errors.SourceChangedError(f"cannot read chunk {keys[i]!r} of {url!r} ({rng}): "
                                        f"{text}{more}")
        err.key, err.url, err.start, err.end = keys[i], url, start, start + length
        return err
    err = errors.DecodeError(f"cannot decode chunk {keys[i]!r} of {url!r} ({rng}){what}: "
                             f"{text}{extra}{more}")
    err.key, err.url, err.start, err.end = keys[i], url, start, start + length
    err.failures = [(keys[f[0]], f[2]) for f in failed]
    return err


# the argument checks of the compiled modules: name -> (exception class, message template)
MESSAGES = {
    # _index
    "key_utf8": (errors.ReferenceFormatError, "key {0!r} cannot be encoded as UTF-8"),
    "key_type": (TypeError, "keys must be str or bytes, not {0}"),
    "lengths_differ": (ValueError, "{0} must have the same length"),
    "url_id_range": (errors.ReferenceFormatError, "url id out of range"),
    "negative_offset": (errors.ReferenceFormatError, "negative offset"),
    "negative_length": (errors.ReferenceFormatError, "negative length"),
    "sep_one_byte": (ValueError, "sep must be one byte"),
    "negative_coordinate": (ValueError, "negative chunk coordinate"),
    "negative_reservation": (ValueError, "negative reservation"),
    "negative_grid": (ValueError, "negative grid size"),
    "not_inline": (ValueError, "{0!r} is not an inline reference"),
    "bad_reference": (errors.ReferenceFormatError, "invalid reference for key {0!r}: {1!r}"),
    "offset_without_length": (errors.ReferenceFormatError,
                              "key {0!r}: offset and length go together"),
    "reference_range": (errors.ReferenceFormatError,
                        "key {0!r}: offset {1} / length {2} out of range"),
    # _decode
    "stream_too_long": (errors.DecodeError, "{0} stream decodes to more than {1} bytes"),
    "stream_corrupt": (errors.DecodeError, "corrupt {0} stream ({1})"),
    "stream_size": (errors.DecodeError, "{0} stream decoded to {1} bytes, expected {2}"),
    "out_size": (ValueError, "out has {0} bytes, need {1}"),
    "kernel_unavailable": (errors.UnsupportedError,
                           "unshuffle kernel {0!r} is not available here"),
    "fletcher_short": (errors.DecodeError,
                       "chunk of {0} bytes is too short for a fletcher32 checksum"),
    "fletcher_mismatch": (errors.DecodeError, "fletcher32 checksum mismatch: the chunk is corrupt"),
    "too_many_dims": (errors.UnsupportedError,
                      "at most {0} dimensions and {1} filters are supported"),
    "out_ndim": (ValueError, "out has {0} dimensions, the chunks {1}"),
    "out_readonly": (ValueError, "out is read-only"),
    "out_itemsize": (ValueError, "out has items of {0} bytes, the chunks {1}"),
    "jobs_differ": (ValueError, "job arrays disagree in length"),
    "fill_size": (ValueError, "fill value has {0} bytes, items {1}"),
    "plan_unsupported": (errors.UnsupportedError,
                         "cannot decode chunks of shape {0} with filters {1}: {2}"),
    "copy_range": (ValueError, "bytes {0}+{1} lie outside a buffer of {2} bytes"),
    "source_shrank": (errors.SourceChangedError,
                      "bytes {0}-{1} vanished while they were read: the memory-mapped file "
                      "shrank (changed since it was opened)"),
}


def error(name: str, *args, **kw) -> Exception:
    """The exception of check ``name`` (:data:`MESSAGES`), its message filled with ``args``;
    ``kw`` go to the exception's constructor (``ReferenceFormatError(pos=..., key=...)``)."""
    cls, template = MESSAGES[name]
    return cls(template.format(*args), **kw)


__all__ = ["status_error", "json_error", "job_text", "decode_error", "error", "MESSAGES",
           "CODES"]
