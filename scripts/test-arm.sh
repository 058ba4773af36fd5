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
# A target directory of its own: built here with Debian's cross gcc, the kernels crate would get
# another fingerprint than in the zig builds of scripts/aarch64-build.sh and overwrite theirs, so
# that the next of those compiled the runtime again (1m25s in CI).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}/neon
# Build once, then run the test binaries under both CPU models at the same time (each qemu
# process is single-threaded), each model's output printed after the other's.
exes=$(cargo test -p autark-kernels --release --target "$target" --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys; [print(m["executable"]) for m in map(json.loads, sys.stdin) if m.get("executable") and m.get("profile", {}).get("test")]')
[ -n "$exes" ] || { cargo test -p autark-kernels --release --target "$target" --no-run; echo "FAIL: no test binaries built" >&2; exit 1; }
logs=target/test-arm
mkdir -p "$logs"
run_cpu() {
  local rc=0
  for exe in $exes; do
    qemu-aarch64 -cpu "$1" -L /usr/aarch64-linux-gnu "$exe" --nocapture --test-threads 1 || rc=1
  done
  return $rc
}
declare -A pid_of=()
for cpu in max cortex-a53; do
  run_cpu "$cpu" >"$logs/$cpu.log" 2>&1 &
  pid_of[$cpu]=$!
done
failed=0
for cpu in max cortex-a53; do
  rc=0
  wait "${pid_of[$cpu]}" || rc=$?
  echo "== kernels under qemu-aarch64 -cpu $cpu"
  grep -E "^test |test result|SKIP|checked|panicked|error" "$logs/$cpu.log" || true
  [ $rc -eq 0 ] || { echo "FAIL: the kernels' tests under qemu-aarch64 -cpu $cpu (log: $logs/$cpu.log)" >&2; failed=1; }
done
exit $failed
