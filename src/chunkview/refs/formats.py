"""The reference formats chunkview reads and writes, and how a file name says which."""

from chunkview.keys import NATIVE_SUFFIX

NATIVE_SUFFIXES = (NATIVE_SUFFIX,)
PARQUET_SUFFIXES = (".parq", ".parquet")
NATIVE_MAGIC = b"\x89CVIDX\r\n"  # the first bytes of a native index (csrc/cv_index.h)
FORMATS = ("json", "parquet", "native")


def guess_format(path: str) -> str:
    p = path.rstrip("/")
    if p.endswith(".json"):
        return "json"
    if p.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if p.endswith(NATIVE_SUFFIXES):
        return "native"
    return "json"


__all__ = ["NATIVE_SUFFIXES", "PARQUET_SUFFIXES", "NATIVE_MAGIC", "FORMATS", "guess_format"]
