#!/usr/bin/env bash
# Fuzzes the parsers of untrusted input (fuzz/fuzz_targets/): the .autark validator, the GGUF
# reader, safetensors headers and config.json, the tokenizer and detokenizer, chat templates,
# saved session states, constraints (JSON Schema, regex, grammar, tools).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]        (default 30)
#
# Environment: FUZZ_TARGETS="gguf tokenizer" runs only those; CARGO_BUILD_JOBS limits the build;
# FUZZ_BUILD_ONLY=1 only builds the targets (scripts/test.sh does that in the background, early);
# FUZZ_DEV=1 builds the targets unoptimised (cargo fuzz --dev: half the build time, but about
# 1/20 to 1/100 of the executions per second — too few for the seed corpus in CI's 10 s, so CI
# keeps the optimised build).
# Needs a nightly toolchain and cargo-fuzz (installed here if missing); without them it prints
# `SKIP fuzz: <reason>` and exits 0. Each target first replays fuzz/regressions/<target>/ (every
# crash found so far), then fuzzes for SECONDS_PER_TARGET seconds, from
# the seeds in fuzz/corpus/<target>/ (read-only) into fuzz/corpus-run/<target>/ (ignored by git),
# FUZZ_JOBS targets at a time (default: the number of cores).
# Crashes are written to fuzz/artifacts/<target>/; the script exits 1 if any target crashed.
set -uo pipefail

SECS="${1:-30}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

skip() { echo "SKIP fuzz: $*"; exit 0; }

case "$SECS" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET]" >&2; exit 2 ;;
esac

cargo +nightly --version >/dev/null 2>&1 || skip "no nightly toolchain (rustup toolchain install nightly)"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  # --debug: a launcher (it runs cargo, then the target), whose own speed does not matter
  # (28 s to install instead of 41 s on 2 cores).
  cargo install cargo-fuzz --locked --debug >/dev/null 2>&1 || cargo install cargo-fuzz --debug >/dev/null 2>&1 ||
    skip "cargo-fuzz could not be installed"
  cargo +nightly fuzz --version >/dev/null 2>&1 || skip "cargo-fuzz not on PATH after install"
fi

ALL_TARGETS="autark_file gguf safetensors tokenizer chat_template session_state constraint"
TARGETS="${FUZZ_TARGETS:-$ALL_TARGETS}"
profile=()
[ "${FUZZ_DEV:-0}" = 1 ] && profile=(--dev)
LOGS="$ROOT/fuzz/target/logs"
mkdir -p "$LOGS"

echo "building fuzz targets"
if ! cargo +nightly fuzz build "${profile[@]}" >"$LOGS/build.log" 2>&1; then
  # A platform without the sanitizer runtime, not a compile error in a target (cargo-fuzz's own
  # "failed to build fuzz script" line names -Zsanitizer and must not count).
  if grep -v "failed to build fuzz script" "$LOGS/build.log" | grep -qiE "sanitizer|unsupported|target .* not supported" &&
    ! grep -q "^error\[E" "$LOGS/build.log"; then
    tail -5 "$LOGS/build.log"
    skip "the fuzz targets cannot be built on this platform"
  fi
  tail -30 "$LOGS/build.log"
  echo "fuzz: build failed" >&2
  exit 1
fi
[ "${FUZZ_BUILD_ONLY:-0}" = 1 ] && exit 0

# One target: replay its regressions, then fuzz. Writes its summary line to $LOGS/$t.summary and
# returns 1 if it crashed.
fuzz_one() {
  local t=$1 seeds="$ROOT/fuzz/corpus/$1" work="$ROOT/fuzz/corpus-run/$1" regs="$ROOT/fuzz/regressions/$1"
  mkdir -p "$work" "$seeds" "$ROOT/fuzz/artifacts/$t"

  # Replay every known crash first: these must all pass now.
  if [ -d "$regs" ] && [ -n "$(ls -A "$regs" 2>/dev/null)" ]; then
    if ! cargo +nightly fuzz run "${profile[@]}" "$t" "$regs"/* -- -runs=1 -rss_limit_mb=2048 -timeout=10 \
        >"$LOGS/$t.regressions.log" 2>&1; then
      echo "FAIL $t: a regression input in fuzz/regressions/$t crashes again (see $LOGS/$t.regressions.log)"
      grep -m5 -E "panicked at|ERROR: libFuzzer|SUMMARY" "$LOGS/$t.regressions.log"
      echo "$t: a regression input crashes again" >"$LOGS/$t.summary"
      return 1
    fi
  fi

  echo "fuzzing $t for ${SECS}s"
  local start rc took runs cov line
  start=$(date +%s)
  cargo +nightly fuzz run "${profile[@]}" "$t" "$work" "$seeds" -- \
    -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    >"$LOGS/$t.log" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  runs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$LOGS/$t.log" | grep -oE "[0-9]+$" | tail -1)
  [ -n "$runs" ] || runs=$(grep -oE "^#[0-9]+" "$LOGS/$t.log" | tail -1 | tr -d '#')
  cov=$(grep -oE "cov: [0-9]+ ft: [0-9]+" "$LOGS/$t.log" | tail -1)
  line="$t: ${runs:-?} executions in ${took}s, ${cov:-cov: ?}, corpus $(ls "$work" | wc -l) files"
  if [ $rc -ne 0 ]; then
    line="$line, CRASH (rc $rc)"
    grep -m5 -E "panicked at|ERROR: libFuzzer|SUMMARY|Test unit written to" "$LOGS/$t.log"
  fi
  echo "$line"
  echo "$line" >"$LOGS/$t.summary"
  [ $rc -eq 0 ]
}

# The targets run FUZZ_JOBS at a time (default: one per core; each libFuzzer process is
# single-threaded, so each still gets a core for its SECONDS_PER_TARGET).
jobs_max=${FUZZ_JOBS:-$(nproc)}
declare -A pid_of=()
failed=()
for t in $TARGETS; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
  rm -f "$LOGS/$t.summary"
  fuzz_one "$t" &
  pid_of[$t]=$!
done
for t in $TARGETS; do
  wait "${pid_of[$t]}" || failed+=("$t")
done
summary=()
for t in $TARGETS; do summary+=("$(cat "$LOGS/$t.summary" 2>/dev/null || echo "$t: no summary")"); done

echo
echo "fuzz summary (${SECS}s per target; logs in $LOGS):"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
