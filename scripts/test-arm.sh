#!/usr/bin/env bash
# Cross-builds the kernels for aarch64-unknown-linux-gnu and runs their tests (every NEON kernel
# against its scalar twin) under qemu: `-cpu max` (NEON + dotprod) and `-cpu cortex-a53` (NEON
# without dotprod, so the dotprod tests print SKIP). Prints SKIP with the reason, and exits 0,
# only when the toolchain cannot be installed on this machine.
set -uo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  rustup target add "$target" >/dev/null 2>&1 || { echo "SKIP neon: rustup cannot install $target here"; exit 0; }
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null) \
    || { echo "SKIP neon: cannot install gcc-aarch64-linux-gnu / qemu-user"; exit 0; }
fi
set -e
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
for cpu in max cortex-a53; do
  echo "== kernels under qemu-aarch64 -cpu $cpu"
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu $cpu -L /usr/aarch64-linux-gnu" \
    cargo test -p autark-kernels --release --target "$target" -- --nocapture --test-threads 1 2>&1 \
    | grep -E "^test |test result|SKIP|checked|panicked|error"
  test "${PIPESTATUS[0]}" -eq 0
done
