"""Build and run the C core's own unit tests (csrc/tests), without Python in the loop."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[1] / "csrc" / "tests"


def _make(tmp_path, *args):
    """Copy csrc/ and run `make clean all` in its tests with extra make arguments."""
    build = tmp_path / "ctests"
    shutil.copytree(CSRC.parent, build / "csrc")
    res = subprocess.run(["make", "-C", str(build / "csrc" / "tests"), *args, "clean", "all"],
                         capture_output=True, text=True, timeout=600)
    print(res.stdout[-3000:], res.stderr[-3000:])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return res.stdout


@pytest.mark.skipif(not CSRC.is_dir() or shutil.which("make") is None
                    or shutil.which(os.environ.get("CC", "cc")) is None,
                    reason="needs csrc/ beside tests/, make and a C compiler")
def test_c_unit_tests(tmp_path):
    assert "0 failed" in _make(tmp_path)


@pytest.mark.skipif(not CSRC.is_dir() or shutil.which("make") is None
                    or not Path("/usr/include/zlib.h").exists(),
                    reason="needs csrc/ beside tests/, make and zlib's header")
def test_c_unit_tests_with_zlib_fallback(tmp_path):
    """The same C tests with stock zlib as the inflate backend (what builds without libdeflate
    get)."""
    assert "inflate backend: zlib" in _make(tmp_path, "INFLATE=zlib")
