#!/usr/bin/env bash
# Compiles the generated Kotlin with bindings/tests/kotlin/TestMain.kt and
# bindings/examples/kotlin/Example.kt, and runs the checks on the host JVM through JNA:
#   bindings/test-kotlin.sh MODEL.autark
# Needs java, npm (the first time: the Kotlin compiler comes from the npm package
# `kotlin-compiler`, cached under .cache/kotlin/) and JNA (Debian: apt-get install -y
# libjna-java; or JNA_JAR=path/to/jna.jar). A missing tool is a failure, not a skip.
set -euo pipefail
fail() { echo "test-kotlin: FAIL: $*" >&2; exit 1; }
[ $# -eq 1 ] || { echo "usage: bindings/test-kotlin.sh MODEL.autark" >&2; exit 2; }
[ -f "$1" ] || fail "model not found: $1"
model=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
cd "$(dirname "$0")/.."
root=$(pwd)

KOTLIN_VERSION=2.4.20
cache=$root/.cache/kotlin
kotlinc=$cache/kotlinc-$KOTLIN_VERSION/package/bin/kotlinc
command -v java >/dev/null || fail "java not found (install a JDK 11+)"
if [ ! -x "$kotlinc" ]; then
  command -v npm >/dev/null || fail "npm not found: it fetches the Kotlin compiler (npm package kotlin-compiler)"
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/fetch.XXXXXX")
  (cd "$tmp" && npm pack --silent "kotlin-compiler@$KOTLIN_VERSION" >/dev/null) \
    || { rm -rf "$tmp"; fail "npm pack kotlin-compiler@$KOTLIN_VERSION failed (no registry access?)"; }
  tar -xzf "$tmp"/kotlin-compiler-*.tgz -C "$tmp" || { rm -rf "$tmp"; fail "cannot unpack the Kotlin compiler"; }
  rm -rf "$cache/kotlinc-$KOTLIN_VERSION"
  mkdir -p "$cache/kotlinc-$KOTLIN_VERSION"
  mv "$tmp/package" "$cache/kotlinc-$KOTLIN_VERSION/package"
  rm -rf "$tmp"
fi
"$kotlinc" -version >/dev/null 2>&1 || fail "$kotlinc does not run ($("$kotlinc" -version 2>&1 | tail -1))"
jna=${JNA_JAR:-/usr/share/java/jna.jar}
[ -f "$jna" ] || fail "JNA not found at $jna: apt-get install -y libjna-java, or set JNA_JAR"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bindings/generate.sh kotlin "$work/gen"
libdir=${CARGO_TARGET_DIR:-target}/release
case "$libdir" in /*) ;; *) libdir=$root/$libdir ;; esac
sources=("$work/gen/uniffi/autark/autark.kt" bindings/examples/kotlin/Example.kt bindings/tests/kotlin/TestMain.kt)
# The compiled jar is cached under the hash of everything that goes into it.
key=$( (echo "kotlinc $KOTLIN_VERSION"; sha256sum "$jna"; cat "${sources[@]}") | sha256sum | cut -c1-16)
jar=$cache/test-$key.jar
if [ -f "$jar" ]; then
  echo "test-kotlin: sources unchanged, re-using $jar"
else
  echo "test-kotlin: compiling with kotlinc $KOTLIN_VERSION"
  "$kotlinc" -nowarn -include-runtime -cp "$jna" -d "$work/test.jar" "${sources[@]}"
  rm -f "$cache"/test-*.jar
  mv "$work/test.jar" "$jar"
fi
echo "test-kotlin: running"
java -Djna.library.path="$libdir" -cp "$jar:$jna" dev.autark.test.TestMainKt "$model"
