#!/usr/bin/env bash
# Build libdeflate (shared) from its release source, for the wheel builds: cibuildwheel's
# before-all on Linux (inside the manylinux container) and macOS.  Windows uses vcpkg instead.
#
#   .ci/build-libdeflate.sh PREFIX
#
# Linux: PREFIX /usr/local and LIBDEFLATE_LDCONFIG=1 (inside the container, as root): PREFIX/lib is
# registered with ldconfig so auditwheel finds the library to bundle.
# macOS: built for $LIBDEFLATE_ARCH (default: this machine's) and $MACOSX_DEPLOYMENT_TARGET (the
# wheel's, so delocate accepts it), with an absolute install name delocate can follow.
# The source tarball is checked against its SHA-256 before anything is built (LIBDEFLATE_VERSION,
# LIBDEFLATE_SHA256 and LIBDEFLATE_URL choose another release or a mirror).
set -euo pipefail

VERSION=${LIBDEFLATE_VERSION:-1.25}
SHA256=${LIBDEFLATE_SHA256:-d11473c1ad4c57d874695e8026865e38b47116bbcb872bfc622ec8f37a86017d}
URL=${LIBDEFLATE_URL:-https://github.com/ebiggers/libdeflate/archive/refs/tags/v${VERSION}.tar.gz}

prefix=${1:?usage: build-libdeflate.sh PREFIX}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== libdeflate ${VERSION} -> ${prefix}"
curl -fsSL --retry 5 --retry-delay 5 -o "$work/libdeflate.tar.gz" "$URL"
if command -v sha256sum >/dev/null 2>&1; then
    echo "${SHA256}  $work/libdeflate.tar.gz" | sha256sum -c -
else
    echo "${SHA256}  $work/libdeflate.tar.gz" | shasum -a 256 -c -
fi
tar -xzf "$work/libdeflate.tar.gz" -C "$work"

if ! command -v cmake >/dev/null 2>&1; then
    python3 -m pip install --quiet cmake
fi

args=(
    -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_INSTALL_PREFIX="$prefix"
    -DCMAKE_INSTALL_LIBDIR=lib
    -DLIBDEFLATE_BUILD_SHARED_LIB=ON
    -DLIBDEFLATE_BUILD_STATIC_LIB=OFF
    -DLIBDEFLATE_BUILD_GZIP=OFF
)
if [ "$(uname -s)" = Darwin ]; then
    args+=(
        -DCMAKE_OSX_ARCHITECTURES="${LIBDEFLATE_ARCH:-$(uname -m)}"
        -DCMAKE_OSX_DEPLOYMENT_TARGET="${MACOSX_DEPLOYMENT_TARGET:?set MACOSX_DEPLOYMENT_TARGET}"
        -DCMAKE_INSTALL_NAME_DIR="$prefix/lib"
    )
fi
cmake -S "$work/libdeflate-${VERSION}" -B "$work/build" "${args[@]}"
cmake --build "$work/build" --parallel
cmake --install "$work/build"

if [ "${LIBDEFLATE_LDCONFIG:-0}" = 1 ]; then
    echo "$prefix/lib" > /etc/ld.so.conf.d/chunkview-libdeflate.conf
    ldconfig
fi
ls -l "$prefix/include/libdeflate.h" "$prefix/lib/"*deflate*
