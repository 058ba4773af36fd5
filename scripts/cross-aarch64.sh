#!/usr/bin/env bash
# Cross-compiles the bindings library (and with it the runtime and the NEON kernels) for
# aarch64-unknown-linux-gnu, proving that the crates build for 64-bit ARM:
#   scripts/cross-aarch64.sh        -> target/aarch64-unknown-linux-gnu/release/libautark_bindings.so
# Installs the Rust target (rustup) and the cross linker (apt-get gcc-aarch64-linux-gnu, as
# root) when missing; prints "SKIP: <reason>" and exits 0 when either cannot be installed.
# Android and iOS builds: docs/MOBILE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu
skip() { echo "SKIP: $*"; exit 0; }

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  command -v rustup >/dev/null || skip "rustup not found, cannot add the Rust target $target"
  rustup target add "$target" || skip "rustup target add $target failed"
fi
if [ "${AUTARK_CROSS_ZIG:-0}" != 1 ]; then
  linker=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:-aarch64-linux-gnu-gcc}
  if ! command -v "$linker" >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      { apt-get install -y gcc-aarch64-linux-gnu || { apt-get update && apt-get install -y gcc-aarch64-linux-gnu; }; } \
        >/dev/null 2>&1 || skip "apt-get install gcc-aarch64-linux-gnu failed"
    fi
    command -v "$linker" >/dev/null || skip "no aarch64 linker ($linker); install gcc-aarch64-linux-gnu"
  fi
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=$linker
fi
. scripts/aarch64-build.sh
# The library, then the runtime's conformance example (scripts/conformance-arm.sh runs it and
# repeats these two commands, which then build nothing). Two commands, not one: an example in
# the same command turns on the dev-dependencies of every package in it, and the bindings'
# (uniffi's bindgen, for `cargo test`) then compiled 54 more crates (3m21s on 2 cores).
aarch64_build ${AUTARK_AARCH64_ARGS:--p autark-bindings -p autark-runtime --lib}
lib=${CARGO_TARGET_DIR:-target}/$target/release/libautark_bindings.so
[ -f "$lib" ] || { echo "FAIL: $lib was not built" >&2; exit 1; }
if command -v readelf >/dev/null; then
  header=$(readelf -h "$lib")
  grep -q 'Machine: *AArch64' <<<"$header" || { echo "FAIL: $lib is not an AArch64 library" >&2; exit 1; }
  symbols=$(readelf -W --dyn-syms "$lib")
  grep -q 'uniffi_autark_bindings_fn_constructor_model_load' <<<"$symbols" \
    || { echo "FAIL: $lib does not export the uniffi scaffolding" >&2; exit 1; }
fi
echo "OK: $lib ($(du -h "$lib" | cut -f1)) built for $target"
