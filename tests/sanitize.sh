#!/usr/bin/env bash
# Run chunkview's tests under AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   bash tests/sanitize.sh                     C unit tests, then the whole Python suite (the
#                                              fuzz targets included, CHUNKVIEW_FUZZ_EXAMPLES)
#   bash tests/sanitize.sh tests/test_fuzz.py  C unit tests, then these pytest arguments
#
# The sources are copied to a build directory of their own (CHUNKVIEW_SAN_DIR, default
# build/sanitize) and the extensions are built there with CHUNKVIEW_SANITIZE=1, so the normal
# build and any installed chunkview are left alone.  pytest runs from that copy with
# PYTHONPATH pointing at it and the sanitizer runtimes preloaded into the (uninstrumented)
# interpreter.  Any ASan or UBSan report aborts the run with a non-zero exit status
# (-fno-sanitize-recover=all at compile time, halt_on_error at run time).
#
# Environment:
#   PYTHON                 interpreter with chunkview's test dependencies, Cython and
#                          setuptools installed (default: python3)
#   CHUNKVIEW_SAN_DIR      build directory (default: <repo>/build/sanitize)
#   CHUNKVIEW_SAN_CTESTS=0 skip the C unit tests (make -C csrc/tests SAN=1)
#   CC                     C compiler (default gcc; the preloaded runtimes are gcc's libasan
#                          and libubsan, found with -print-file-name)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
DIR=${CHUNKVIEW_SAN_DIR:-$ROOT/build/sanitize}
CC=${CC:-gcc}
export CC

# ---------------------------------------------------------------- a private copy of the sources
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # tracked files and untracked ones git does not ignore (what a commit would hold)
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
        xargs -0 -r ls -d 2>/dev/null | tar -cf - -T -) | tar -C "$DIR" -xf -
else
    (cd "$ROOT" && tar -cf - setup.py pyproject.toml README.md csrc src tests docs) |
        tar -C "$DIR" -xf -
fi

# Python sources that the tree no longer has (a module moved or split since the copy was
# made) would still be imported from the copy: remove them
if [ -d "$DIR/src" ]; then
    (cd "$DIR/src" && find . \( -name '*.py' -o -name '*.pyx' -o -name '*.pyi' \) -print) |
        while IFS= read -r f; do
            [ -e "$ROOT/src/$f" ] || rm -f "$DIR/src/$f"
        done
fi

# the tests find ../shared/corpus next to the repository: give the copy the same neighbour
if [ -d "$ROOT/../shared" ] && [ ! -e "$DIR/../shared" ]; then
    ln -s "$(cd "$ROOT/../shared" && pwd)" "$DIR/../shared"
fi

# ---------------------------------------------------------------- the C core on its own
if [ "${CHUNKVIEW_SAN_CTESTS:-1}" != "0" ]; then
    echo "== C unit tests under ASan + UBSan"
    make -s -C "$DIR/csrc/tests" SAN=1 CC="$CC" clean run
    if [ -e /usr/include/zlib.h ] && [ -e /usr/include/libdeflate.h ]; then
        echo "== C unit tests under ASan + UBSan, stock zlib as the inflate backend"
        make -s -C "$DIR/csrc/tests" SAN=1 CC="$CC" INFLATE=zlib clean run
    fi
fi

# ---------------------------------------------------------------- the extensions
echo "== building the extensions with CHUNKVIEW_SANITIZE=1 in $DIR"
# rebuild everything when the compiler or the inflate backend changed since the last build
stamp="$CC $("$CC" -dumpfullversion 2>/dev/null) $(ls /usr/include/libdeflate.h 2>/dev/null || true) ${CHUNKVIEW_INFLATE:-}"
force=
[ "$(cat "$DIR/.build-stamp" 2>/dev/null)" = "$stamp" ] || force=--force
(cd "$DIR" && CHUNKVIEW_SANITIZE=1 "$PY" setup.py -q build_ext --inplace $force >build.log 2>&1) || {
    tail -50 "$DIR/build.log"
    exit 1
}

runtime() {
    local f
    f=$("$CC" -print-file-name="$1")
    if [ ! -e "$f" ]; then
        echo "sanitize.sh: $CC has no $1 (Debian: apt install libasan8 libubsan1)" >&2
        exit 1
    fi
    echo "$f"
}
echo "$stamp" >"$DIR/.build-stamp"
ASAN_RT=$(runtime libasan.so)
UBSAN_RT=$(runtime libubsan.so)

# the interpreter is not instrumented: preload the runtimes; CPython frees little at exit, so
# leak detection is off (tests/test_leaks.py checks for leaks with tracemalloc and RSS); huge
# allocations return NULL as malloc does instead of aborting; pymalloc is bypassed so ASan
# sees every Python allocation too
export LD_PRELOAD="$ASAN_RT:$UBSAN_RT${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export PYTHONMALLOC=malloc
export PYTHONPATH="$DIR/src${PYTHONPATH:+:$PYTHONPATH}"
export CHUNKVIEW_SANITIZED=1

# a report must fail the run: load deliberate bugs built like the extensions and expect an
# abort with the sanitizer's message (a setup where reports only print would pass anything)
probe="$DIR/sanitize_probe.so"
"$CC" -shared -fPIC -O0 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
    -fno-omit-frame-pointer -o "$probe" "$ROOT/tests/sanitize_probe.c"
for bug in "ubsan 40:runtime error" "asan 16:heap-buffer-overflow"; do
    fn=${bug%% *}; rest=${bug#* }; arg=${rest%%:*}; want=${rest#*:}
    if out=$("$PY" -c "import ctypes, sys; print(ctypes.CDLL(sys.argv[1]).cv_probe_$fn($arg))" \
            "$probe" 2>&1); then
        echo "sanitize.sh: the $fn probe did not fail the run:"; echo "$out"; exit 1
    fi
    if ! grep -q "$want" <<<"$out"; then
        echo "sanitize.sh: the $fn probe failed without a sanitizer report:"; echo "$out"; exit 1
    fi
done
echo "sanitizer reports abort the run (UBSan and ASan probes)"

# the tests must import this build, not an installed chunkview
(cd "$DIR" && "$PY" - <<'EOF'
import os, sys
import chunkview._decode as d, chunkview._index as i
here = os.path.realpath(os.path.join(os.getcwd(), "src"))
for m in (d, i):
    if not os.path.realpath(m.__file__).startswith(here):
        sys.exit(f"sanitize.sh: imported {m.__file__}, not the build in {here}")
    if b"__asan_" not in open(m.__file__, "rb").read():
        sys.exit(f"sanitize.sh: {m.__file__} is not built with AddressSanitizer")
print("chunkview from", os.path.dirname(d.__file__), "(ASan + UBSan)")
EOF
)

echo "== Python tests under ASan + UBSan"
cd "$DIR"
if [ "$#" -eq 0 ]; then
    # test_c_core.py builds and runs the C tests without sanitizers: done above, with them
    set -- tests --ignore=tests/test_c_core.py
fi
exec "$PY" -m pytest -q -p no:cacheprovider "$@"
