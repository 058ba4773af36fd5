#!/usr/bin/env bash
# Cross-builds `autark` and `libautark` for a Jetson (aarch64, glibc 2.27: JetPack 5 and 6
# userlands are Ubuntu 20.04 / 22.04, glibc 2.31 / 2.35) with CUDA support, on an x86_64 machine
# without any CUDA toolkit (the driver and NVRTC are loaded at run time): zig as the C compiler
# and linker through cargo-zigbuild, both from PyPI. Then runs the binary under qemu-aarch64,
# where there is no driver: it must print the one-line error and exit 1 (docs/CUDA.md).
# Output: target/aarch64-unknown-linux-gnu/release/{autark,libautark.so,libautark.a}.
set -euo pipefail
cd "$(dirname "$0")/.."
AUTARK_CROSS_ZIG=1 . scripts/aarch64-build.sh
rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 || true
aarch64_build -q ${AUTARK_AARCH64_ARGS:--p autark-cli --features cuda}
out=target/aarch64-unknown-linux-gnu/release
ls -la "$out/autark"
# The C library too, unless JETSON_LIB=0 (CI: the same crates, three minutes more on 2 cores).
if [ "${JETSON_LIB:-1}" != 0 ]; then
  aarch64_build -q -p autark-ffi --features cuda
  ls -la "$out/libautark.so" "$out/libautark.a"
fi
# The newest glibc symbol the binary needs must not be newer than $GLIBC.
need=$(objdump -T "$out/autark" | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -1)
echo "autark for aarch64 needs $need (target glibc $GLIBC)"
[ "$(printf '%s\n' "GLIBC_$GLIBC" "$need" | sort -V | tail -1)" = "GLIBC_$GLIBC" ] || { echo "FAIL: needs $need"; exit 1; }
if command -v qemu-aarch64 >/dev/null; then
  set +e
  msg=$(qemu-aarch64 -L /usr/aarch64-linux-gnu "$out/autark" run /nonexistent.autark -p hi --device cuda 2>&1)
  rc=$?
  set -e
  echo "under qemu-aarch64: exit $rc: $msg"
  [ "$rc" -eq 1 ] && [ "$msg" = "autark: error: no CUDA driver found (libcuda.so)" ] || { echo "FAIL: expected the no-driver error"; exit 1; }
else
  echo "SKIP: no qemu-aarch64 here, the binary was not run"
fi
