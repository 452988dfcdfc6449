"""Build the compiled extensions; all metadata lives in pyproject.toml.

Switches from the environment:
  CHUNKVIEW_DEBUG=1      -O0 -g, assertions on
  CHUNKVIEW_SANITIZE=1   AddressSanitizer + UndefinedBehaviorSanitizer (gcc/clang)
  CHUNKVIEW_COVERAGE=1   Cython line tracing and gcc --coverage
  CHUNKVIEW_INFLATE=zlib use stock zlib only, even when libdeflate is installed.  Default:
                         libdeflate linked when its header is found; else zlib linked and, at
                         import, the system's libdeflate shared library loaded in its place when
                         there is one (libdeflate0 without libdeflate-dev; see
                         chunkview._platform.load_libdeflate).  =libdeflate fails the build
                         without libdeflate's header (what the wheel builds set: they bundle it)
  CHUNKVIEW_LIBDEFLATE_DIR=PREFIX
                         libdeflate installed under PREFIX (PREFIX/include/libdeflate.h and
                         PREFIX/lib or lib64), e.g. vcpkg's installed/x64-windows; otherwise the
                         header is looked for in the usual places, CPATH, C_INCLUDE_PATH and (MSVC)
                         INCLUDE, and the library next to it
"""

import os
import sys
from pathlib import Path

from setuptools import Extension, setup

ROOT = Path(__file__).parent
CSRC = "csrc"


def env_flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def env_dirs(*names):
    return [d for n in names for d in os.environ.get(n, "").split(os.pathsep) if d]


def find_header(name):
    """Directory holding a system header, or None."""
    dirs = [os.path.join(sys.prefix, "include"), os.path.join(sys.prefix, "Library", "include"),
            "/usr/include", "/usr/local/include", "/opt/homebrew/include"]
    dirs += env_dirs("CPATH", "C_INCLUDE_PATH")
    if sys.platform == "win32":
        dirs += env_dirs("INCLUDE")  # MSVC's own search path
    for d in dirs:
        if os.path.exists(os.path.join(d, name)):
            return d
    return None


def lib_dirs_beside(include_dir):
    """lib/ and lib64/ next to an include directory (none for the compiler's own /usr/include)."""
    if os.path.normpath(include_dir) == "/usr/include":
        return []
    prefix = os.path.dirname(os.path.normpath(include_dir))
    return [d for d in (os.path.join(prefix, "lib"), os.path.join(prefix, "lib64"))
            if os.path.isdir(d)]


def libdeflate_location():
    """(include dir, library dirs) of libdeflate, or None when its header is not found."""
    root = os.environ.get("CHUNKVIEW_LIBDEFLATE_DIR", "").strip()
    if root:
        inc = os.path.join(root, "include")
        if not os.path.exists(os.path.join(inc, "libdeflate.h")):
            sys.exit(f"CHUNKVIEW_LIBDEFLATE_DIR={root}: no include/libdeflate.h there")
        return inc, lib_dirs_beside(inc)
    d = find_header("libdeflate.h")
    return None if d is None else (d, lib_dirs_beside(d))


def inflate_backend():
    """(macros, libraries, include dirs, library dirs) for libdeflate, or zlib as the fallback."""
    want = os.environ.get("CHUNKVIEW_INFLATE", "").strip().lower()
    if want != "zlib":
        loc = libdeflate_location()
        if loc is not None:
            macros = [("CV_HAVE_LIBDEFLATE", "1")]
            if sys.platform == "win32":
                macros.append(("LIBDEFLATE_DLL", "1"))  # linked to deflate.dll's import library
            print(f"chunkview: inflate with libdeflate ({loc[0]})", file=sys.stderr)
            return macros, ["deflate"], [loc[0]], loc[1]
        if want == "libdeflate":
            sys.exit("CHUNKVIEW_INFLATE=libdeflate but libdeflate.h was not found "
                     "(Debian: apt install libdeflate-dev; macOS: brew install libdeflate; "
                     "Windows: vcpkg install libdeflate:x64-windows and set "
                     "CHUNKVIEW_LIBDEFLATE_DIR)")
    if find_header("zlib.h") is None and sys.platform != "win32":
        sys.exit("neither libdeflate.h nor zlib.h was found: install libdeflate-dev (preferred) "
                 "or zlib1g-dev")
    zlib = ["z" if sys.platform != "win32" else "zlib"]
    if want == "zlib":
        print("chunkview: CHUNKVIEW_INFLATE=zlib, inflate with zlib only", file=sys.stderr)
        return [("CV_INFLATE_ZLIB_ONLY", "1")], zlib, [], []
    print("chunkview: libdeflate.h not found: linking zlib; the system's libdeflate shared "
          "library is loaded in its place at import where there is one", file=sys.stderr)
    return [], zlib, [], []


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
            # every UBSan report aborts (a report that only prints would let the tests pass)
            san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
            compile_args += san + ["-fno-sanitize-recover=all"]
            link_args += san
        if env_flag("CHUNKVIEW_COVERAGE"):
            compile_args += ["--coverage"]
            link_args += ["--coverage"]
    if env_flag("CHUNKVIEW_COVERAGE"):
        directives["linetrace"] = True
        macros += [("CYTHON_TRACE_NOGIL", "1")]

    headers = sorted(str(p.relative_to(ROOT)) for p in (ROOT / CSRC).glob("*.h"))
    headers.append("src/chunkview/cvalloc.h")
    # the C core allocates through CV_MALLOC & co.; in the extensions those are the hooks of
    # cvalloc.c, which report every block to tracemalloc (the core itself has no Python.h)
    macros.append(("CV_ALLOC_HOOKS", "1"))
    alloc = "src/chunkview/cvalloc.c"
    common = dict(
        include_dirs=[CSRC, "src/chunkview", np.get_include()],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        define_macros=macros,
        depends=headers,
    )
    exts = [
        Extension(
            "chunkview._index",
            sources=["src/chunkview/_index.pyx",
                     f"{CSRC}/cv_index.c", f"{CSRC}/cv_hash.c", f"{CSRC}/cv_refjson.c",
                     f"{CSRC}/cv_common.c", alloc],
            **common,
        ),
    ]
    inf_macros, inf_libs, inf_dirs, inf_libdirs = inflate_backend()
    exts.append(
        Extension(
            "chunkview._decode",
            sources=["src/chunkview/_decode.pyx", f"{CSRC}/cv_decode.c", f"{CSRC}/cv_batch.c",
                     f"{CSRC}/cv_guard.c",
                     f"{CSRC}/cv_common.c", alloc],
            libraries=inf_libs,
            library_dirs=inf_libdirs,
            **{**common, "include_dirs": common["include_dirs"] + inf_dirs,
               "define_macros": common["define_macros"] + inf_macros},
        )
    )
    return cythonize(exts, compiler_directives=directives, annotate=False)


setup(ext_modules=build_extensions())
