#!/usr/bin/env bash
# Generates the foreign-language sources of the bindings with the crate's own uniffi-bindgen
# (so they always match the uniffi version linked into the library):
#   bindings/generate.sh kotlin OUTDIR   -> OUTDIR/uniffi/autark/autark.kt       (needs JNA at run time)
#   bindings/generate.sh swift OUTDIR    -> OUTDIR/autark.swift, autarkFFI.h, autarkFFI.modulemap
#   bindings/generate.sh python OUTDIR   -> OUTDIR/autark.py (bindings/build-python.sh makes a package)
# The bindings are read from the host library's metadata; they are the same for every target
# (Android, iOS). docs/MOBILE.md builds the libraries for the devices. FORMAT=1 lets uniffi run
# ktlint / swiftformat when they are installed; CARGO_PROFILE (default release) picks the
# profile of the host library.
set -euo pipefail
usage() { echo "usage: bindings/generate.sh kotlin|swift|python OUTDIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
lang=$1
case "$lang" in kotlin | swift | python) ;; *) usage ;; esac
mkdir -p "$2"
out=$(cd "$2" && pwd)
cd "$(dirname "$0")/.."
profile=${CARGO_PROFILE:-release}
# AUTARK_CARGO_ARGS: more for the same cargo invocation (the Python tests add the C library, as
# bindings/build-python.sh does there, so that all their builds share one feature set).
cargo build --profile "$profile" -p autark-bindings --features autark-bindings/bindgen ${AUTARK_CARGO_ARGS:-}
dir=${CARGO_TARGET_DIR:-target}/$profile
[ "$profile" = dev ] && dir=${CARGO_TARGET_DIR:-target}/debug
case "$(uname -s)" in
  Darwin) lib=libautark_bindings.dylib ;;
  *) lib=libautark_bindings.so ;;
esac
fmt=(--no-format)
[ "${FORMAT:-0}" = 1 ] && fmt=()
"$dir/uniffi-bindgen" generate "${fmt[@]}" --language "$lang" --out-dir "$out" "$dir/$lib"
