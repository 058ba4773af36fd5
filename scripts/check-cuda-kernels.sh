#!/usr/bin/env bash
# The CUDA kernels without a GPU (docs/CUDA.md, "How it is checked"):
# 1. NVRTC 12.9 (PyPI's cu12 wheels, no driver needed) compiles cuda/kernels/autark.cu through
#    the same Rust code the device uses (`autark-gpu-check ptx`) for every compute capability
#    in ARCHS;
# 2. ptxas 12.9 assembles each for its sm_XY with -v: no spills, at most REG_BUDGET registers
#    per thread in every kernel that decoding runs, TILED_REG_BUDGET in the GEMVs for batches
#    (`_x8`: 8 tokens' sums per thread; the byte products of sm_53 take the most);
# 3. the PTX is assembled again with its .version lowered to what the oldest CUDA releases we
#    claim accept (7.4: CUDA 11.4, JetPack 5, for sm_87 and older; 8.2: CUDA 12.2, JetPack 6),
#    so it uses nothing newer.
# 4. the on-disk cache of compiled kernels works (autark-cuda's test, with this NVRTC).
# Leaves the PTX in target/cuda-ptx (scripts/gpu-prepare.sh carries it to a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHS=${ARCHS:-"53 61 72 80 87 89 90"}
REG_BUDGET=${REG_BUDGET:-64}
TILED_REG_BUDGET=${TILED_REG_BUDGET:-96}
cu12=${AUTARK_CU12:-target/cu12}
if [ ! -x "$cu12/nvidia/cuda_nvcc/bin/ptxas" ] || [ ! -e "$cu12/nvidia/cuda_nvrtc/lib/libnvrtc.so.12" ]; then
  mkdir -p "$cu12/wheels"
  python3 -m pip download -q --no-deps -d "$cu12/wheels" \
    nvidia-cuda-nvrtc-cu12==12.9.86 nvidia-cuda-nvcc-cu12==12.9.86
  for w in "$cu12"/wheels/*.whl; do python3 -m zipfile -e "$w" "$cu12"; done
  chmod +x "$cu12/nvidia/cuda_nvcc/bin/ptxas"
fi
ptxas=$cu12/nvidia/cuda_nvcc/bin/ptxas
cargo build --release -q -p autark-cuda --bin autark-gpu-check
out=target/cuda-ptx
rm -rf "$out"
LD_LIBRARY_PATH="$cu12/nvidia/cuda_nvrtc/lib" target/release/autark-gpu-check ptx "$out" \
  $(for a in $ARCHS; do echo "compute_$a"; done)
fail=0
for a in $ARCHS; do
  ptx=$out/autark.compute_$a.ptx
  log=$("$ptxas" -arch="sm_$a" -v "$ptx" -o "$out/autark.sm_$a.cubin" 2>&1) || { echo "FAIL: ptxas sm_$a: $log"; fail=1; continue; }
  # "registers kernel" per entry function.
  regs=$(grep -E "Compiling entry function|Used [0-9]+ registers" <<<"$log" | paste - - |
    sed -E "s/.*entry function '([A-Za-z0-9_]+)'.*Used ([0-9]+) registers.*/\2 \1/")
  max=$(grep -v '_x8$' <<<"$regs" | sort -n | tail -1 | cut -d' ' -f1)
  max_tiled=$(grep '_x8$' <<<"$regs" | sort -n | tail -1 | cut -d' ' -f1)
  spills=$(grep -o '[0-9]* bytes spill' <<<"$log" | awk '{s+=$1} END {print s+0}')
  kernels=$(grep -c 'Compiling entry function' <<<"$log")
  echo "sm_$a: $kernels kernels, at most $max registers ($max_tiled in the tiled GEMVs), $spills bytes spilled"
  [ "$spills" -eq 0 ] || { echo "FAIL: sm_$a spills"; fail=1; }
  [ "$max" -le "$REG_BUDGET" ] || { echo "FAIL: sm_$a uses $max registers (budget $REG_BUDGET)"; fail=1; }
  [ "$max_tiled" -le "$TILED_REG_BUDGET" ] || { echo "FAIL: sm_$a tiled GEMVs use $max_tiled registers (budget $TILED_REG_BUDGET)"; fail=1; }
  versions=8.2
  [ "$a" -le 87 ] && versions="7.4 8.2" # sm_89 and sm_90 came with CUDA 11.8 (PTX ISA 7.8)
  for v in $versions; do
    sed "s/^\.version .*/.version $v/" "$ptx" >"$out/autark.compute_$a.ptx$v"
    "$ptxas" -arch="sm_$a" "$out/autark.compute_$a.ptx$v" -o /dev/null 2>&1 \
      || { echo "FAIL: sm_$a PTX does not assemble as PTX ISA $v"; fail=1; }
    rm "$out/autark.compute_$a.ptx$v"
  done
done
# The on-disk cache of compiled kernels, with this NVRTC (its test prints SKIP without one).
LD_LIBRARY_PATH="$(realpath "$cu12/nvidia/cuda_nvrtc/lib")" cargo test --release -q -p autark-cuda --lib cached \
  || { echo "FAIL: the kernel cache test"; fail=1; }
[ "$fail" -eq 0 ] && echo "OK: the CUDA kernels compile for $(echo $ARCHS | wc -w) architectures without spills, as PTX ISA 8.2 too (and 7.4 up to sm_87)"
exit "$fail"
