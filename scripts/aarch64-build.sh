# Sourced by the scripts that cross-build for aarch64 (build-jetson.sh, cross-aarch64.sh,
# conformance-arm.sh): defines `aarch64_build ARGS…`, a release `cargo build` for
# aarch64-unknown-linux-gnu (output in target/aarch64-unknown-linux-gnu/release either way).
#
# With AUTARK_CROSS_ZIG=1 it builds through cargo-zigbuild for glibc $GLIBC (default 2.27, the
# Jetson userlands'), zig and cargo-zigbuild from PyPI under $AUTARK_ZIG (default target/zig,
# installed when missing); otherwise with Debian's aarch64-linux-gnu-gcc as the linker. The two
# give the compiled crates different fingerprints, so every crate built one way is rebuilt the
# other: scripts/test.sh uses zig for all three (after the Jetson build the bindings and the
# conformance runner reuse its crates: about 2 minutes instead of 3m43s on 2 cores).
#
# AUTARK_AARCH64_ARGS, when set, replaces the package and feature selection of each of those
# scripts: scripts/test.sh gives all three one selection (the CLI with CUDA and the bindings),
# so that the runtime and its dependencies compile once for aarch64, not once per feature set.
GLIBC=${GLIBC:-2.27}
if [ "${AUTARK_CROSS_ZIG:-0}" = 1 ]; then
  zig_tools=${AUTARK_ZIG:-target/zig}
  if [ ! -x "$zig_tools/bin/cargo-zigbuild" ]; then
    python3 -m pip install -q --disable-pip-version-check --target "$zig_tools/py" ziglang==0.17.1 cargo-zigbuild==0.24.1
    mkdir -p "$zig_tools/bin"
    ln -sf "$(realpath "$zig_tools/py/bin/cargo-zigbuild")" "$zig_tools/bin/cargo-zigbuild"
    printf '#!/bin/sh\nexec python3 -m ziglang "$@"\n' >"$zig_tools/bin/zig"
    chmod +x "$zig_tools/bin/zig"
  fi
  export PATH="$(realpath "$zig_tools/bin"):$PATH"
  export PYTHONPATH="$(realpath "$zig_tools/py")${PYTHONPATH:+:$PYTHONPATH}"
  aarch64_build() { cargo zigbuild --release --target "aarch64-unknown-linux-gnu.$GLIBC" "$@"; }
else
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:-aarch64-linux-gnu-gcc}
  aarch64_build() { cargo build --release --target aarch64-unknown-linux-gnu "$@"; }
fi
