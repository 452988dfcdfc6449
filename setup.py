"""Build the compiled extensions; all metadata lives in pyproject.toml.

Switches from the environment:
  CHUNKVIEW_DEBUG=1      -O0 -g, assertions on
  CHUNKVIEW_SANITIZE=1   AddressSanitizer + UndefinedBehaviorSanitizer (gcc/clang)
  CHUNKVIEW_COVERAGE=1   Cython line tracing and gcc --coverage
"""

import os
import sys
from pathlib import Path

from setuptools import Extension, setup

ROOT = Path(__file__).parent
CSRC = "csrc"


def env_flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def build_extensions():
    import numpy as np
    from Cython.Build import cythonize

    msvc = sys.platform == "win32"
    compile_args, link_args, macros = [], [], [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    directives = {"language_level": "3", "boundscheck": False, "wraparound": False,
                  "cdivision": True, "embedsignature": True}
    if msvc:
        compile_args += ["/O2"]
    else:
        compile_args += ["-std=gnu99", "-Wall", "-Wno-unused-function"]
        if env_flag("CHUNKVIEW_DEBUG") or env_flag("CHUNKVIEW_SANITIZE"):
            compile_args += ["-O0", "-g", "-UNDEBUG"]
        else:
            compile_args += ["-O3"]
        if env_flag("CHUNKVIEW_SANITIZE"):
            san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
            compile_args += san
            link_args += san
        if env_flag("CHUNKVIEW_COVERAGE"):
            compile_args += ["--coverage"]
            link_args += ["--coverage"]
    if env_flag("CHUNKVIEW_COVERAGE"):
        directives["linetrace"] = True
        macros += [("CYTHON_TRACE_NOGIL", "1")]

    headers = sorted(str(p.relative_to(ROOT)) for p in (ROOT / CSRC).glob("*.h"))
    common = dict(
        include_dirs=[CSRC, np.get_include()],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        define_macros=macros,
        depends=headers,
    )
    exts = [
        Extension(
            "chunkview._index",
            sources=["src/chunkview/_index.pyx",
                     f"{CSRC}/cv_index.c", f"{CSRC}/cv_hash.c", f"{CSRC}/cv_refjson.c"],
            **common,
        ),
    ]
    return cythonize(exts, compiler_directives=directives, annotate=False)


setup(ext_modules=build_extensions())
