#!/usr/bin/env bash
# Builds libautark (shared and static) and installs the header, the libraries and a pkg-config
# file under PREFIX:  ffi/install.sh /usr/local
#   PREFIX/include/autark.h  PREFIX/lib/libautark.{so,a}  PREFIX/lib/pkgconfig/autark.pc
# Then:  gcc app.c $(PKG_CONFIG_PATH=PREFIX/lib/pkgconfig pkg-config --cflags --libs autark)
# or, static:  gcc app.c $(pkg-config --cflags autark) PREFIX/lib/libautark.a $(pkg-config --libs-only-l --static autark | sed 's/-lautark//')
set -euo pipefail
prefix=${1:?usage: ffi/install.sh PREFIX}
cd "$(dirname "$0")/.."
# AUTARK_CARGO_ARGS: more for the same cargo invocation (the Python tests add the bindings, so
# that this build and bindings/build-python.sh's share one feature set and compile once).
cargo build --release -p autark-ffi ${CARGO_PROFILE_ARGS:-} ${AUTARK_CARGO_ARGS:-}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
mkdir -p "$prefix/include" "$prefix/lib/pkgconfig"
install -m 644 ffi/include/autark.h "$prefix/include/autark.h"
install -m 755 target/release/libautark.so "$prefix/lib/libautark.so"
install -m 644 target/release/libautark.a "$prefix/lib/libautark.a"
cat > "$prefix/lib/pkgconfig/autark.pc" <<PC
prefix=$prefix
includedir=\${prefix}/include
libdir=\${prefix}/lib

Name: autark
Description: On-device LLM runtime (C API)
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lautark
Libs.private: -lpthread -ldl -lm -lgcc_s
PC
echo "installed autark $version under $prefix"
