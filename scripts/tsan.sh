#!/usr/bin/env bash
# Runs the concurrency tests (cli/tests/sessions.rs: six sessions of one model on six threads,
# cancellation from another thread) under ThreadSanitizer, with the standard library rebuilt
# instrumented; with them cli/tests/import.rs, in the default (CPU-only) build, which the rest of
# scripts/test.sh builds with the CUDA backend. Needs the nightly toolchain with rust-src; prints SKIP with the reason, and exits
# 0, only when those cannot be installed here. TSAN_BUILD_ONLY=1 only builds the tests (what
# scripts/test.sh does in the background, early, so that this step later finds them built).
set -uo pipefail
cd "$(dirname "$0")/.."
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal >/dev/null 2>&1 || { echo "SKIP tsan: no nightly toolchain"; exit 0; }
fi
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
  rustup component add rust-src --toolchain nightly >/dev/null 2>&1 || { echo "SKIP tsan: cannot install rust-src for nightly"; exit 0; }
fi
set -e
# Line tables only, not full debug info: TSan's reports still name file and line, and the build
# takes 1.7 GB of disk instead of 2.6 GB with full debug info.
export CARGO_PROFILE_DEV_DEBUG=line-tables-only CARGO_PROFILE_TEST_DEBUG=line-tables-only
args=(-Zbuild-std --target x86_64-unknown-linux-gnu --target-dir target/tsan -p autark-cli --test sessions --test import)
if [ "${TSAN_BUILD_ONLY:-0}" = 1 ]; then
  RUSTFLAGS="-Zsanitizer=thread" exec cargo +nightly test --no-run "${args[@]}"
fi
RUSTFLAGS="-Zsanitizer=thread" TSAN_OPTIONS="halt_on_error=1" \
  cargo +nightly test "${args[@]}" 2>&1 | grep -E "^test |test result|WARNING: ThreadSanitizer|SUMMARY"
test "${PIPESTATUS[0]}" -eq 0
