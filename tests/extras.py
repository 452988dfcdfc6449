"""Optional dependencies the tests use: skipped where absent, except where CI says they must be
there (CHUNKVIEW_REQUIRE_VIRTUALIZARR=1, set by .ci/run's Python 3.13 part, which installs
VirtualiZarr and Icechunk: their tests then fail rather than skip)."""

from __future__ import annotations

import importlib
import os

import pytest


def needed(name: str):
    """``pytest.importorskip(name)``, or the import itself (failing) where CI requires it."""
    if os.environ.get("CHUNKVIEW_REQUIRE_VIRTUALIZARR") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name)
