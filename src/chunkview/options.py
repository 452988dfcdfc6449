"""How chunk bytes are read: one set of options, defaulted here and nowhere else.

``chunkview.open``, ``open_zarr`` / ``ReferenceStore``, the ``chunkview`` filesystem and the
xarray engine take every field of :class:`ReadOptions` as a keyword and build one with
:meth:`ReadOptions.from_kwargs`; the fetch code (:mod:`chunkview.io`) reads its fields.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, fields

CHECK_MODES = ("off", "size", "etag")


@dataclass
class ReadOptions:
    """How byte ranges are read (every field is also a keyword of ``chunkview.open``,
    ``open_zarr``, ``ReferenceStore`` and the ``chunkview`` filesystem)."""

    max_gap: int | None = 1 << 20  # ranges of one URL this close join one read (None, < 0: never)
    max_block: int = 256_000_000  # ... while the read stays within this many bytes
    retries: int = 3
    backoff: float = 0.1  # first wait in seconds; doubles each retry, with jitter, <= 5 s
    timeout: float | None = 20.0  # seconds per request (a stalled server: see total_timeout)
    total_timeout: float | None = 60.0  # seconds for one read and all its retries
    max_requests: int = 16  # requests in flight per reader
    request_bytes: int = 4 << 20  # blocks above ~this are split into parallel requests
    multi_range: bool = True  # HTTP: several ranges per request, where the server allows
    check_source: str = "size"  # compare each file with the scan's record: off, size, etag
    allowed_protocols: tuple | None = None  # None: everything (no local files for remote refs)
    allowed_hosts: tuple | None = None  # host name patterns URLs may name (None: any but
    # link-local addresses for references from a remote location)
    _sems: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if self.check_source not in CHECK_MODES:
            raise ValueError(f"check_source must be one of {CHECK_MODES}, "
                             f"not {self.check_source!r}")
        if self.retries < 0 or self.max_requests < 1 or self.request_bytes < 1:
            raise ValueError("retries must be >= 0, max_requests and request_bytes >= 1")
        if self.max_block < 1:
            raise ValueError("max_block must be >= 1")
        for name in ("timeout", "total_timeout"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, or None")
        if isinstance(self.allowed_hosts, str):
            self.allowed_hosts = (self.allowed_hosts,)
        if self.allowed_hosts is not None:
            self.allowed_hosts = tuple(str(h).lower() for h in self.allowed_hosts)
        if self.allowed_protocols is not None:
            if isinstance(self.allowed_protocols, str):
                self.allowed_protocols = (self.allowed_protocols,)
            self.allowed_protocols = tuple(self.allowed_protocols)

    @classmethod
    def names(cls) -> tuple:
        return tuple(f.name for f in fields(cls) if not f.name.startswith("_"))

    @classmethod
    def from_kwargs(cls, kw: dict) -> ReadOptions:
        """Pops this class's options out of ``kw``."""
        return cls(**{n: kw.pop(n) for n in cls.names() if n in kw})

    def as_kwargs(self) -> dict:
        return {n: getattr(self, n) for n in self.names()}

    def semaphore(self) -> asyncio.Semaphore:
        """The in-flight limit of the running loop (one per loop)."""
        loop = asyncio.get_running_loop()
        sem = self._sems.get(id(loop))
        if sem is None:
            sem = self._sems[id(loop)] = asyncio.Semaphore(self.max_requests)
        return sem


__all__ = ["ReadOptions", "CHECK_MODES"]
