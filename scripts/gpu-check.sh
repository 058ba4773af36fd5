#!/usr/bin/env bash
# scripts/gpu-check.sh RESULTS_DIR: the one-shot check on a machine with an NVIDIA GPU and driver
# and no Rust toolchain (docs/CUDA.md). It takes the kit scripts/gpu-prepare.sh built (KIT,
# default .gpu): prints the device and driver; runs every kernel case against the scalar CPU
# kernels with NVRTC compiling for this device, then with the PTX built for compute 5.3, 6.1,
# 7.2 and 8.7 (the Jetson code paths, JIT-compiled for this GPU); times each GEMV. Writes
# RESULTS_DIR/{nvidia-smi.txt,kernels.txt,kernels.json}. Needs libnvrtc (a CUDA toolkit or
# PyPI's nvidia-cuda-nvrtc) on the machine: it is looked for under /usr/local and /opt.
set -uo pipefail
out=${1:?usage: gpu-check.sh RESULTS_DIR}
kit=${KIT:-.gpu}
mkdir -p "$out"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1 | tee "$out/nvidia-smi.txt"
# cudarc opens libnvrtc.so or libnvrtc.so.12 (and older names); a CUDA 13 install may have
# only libnvrtc.so.13, so link the newest one found under the first name.
# (Not from a stubs/ folder: beside the stub libnvrtc lies a stub libcuda that would be loaded too.)
lib=$(find /usr/local /opt /usr/lib -name 'libnvrtc.so*' ! -name '*builtins*' ! -name '*alt*' ! -path '*/stubs/*' 2>/dev/null | sort -V | tail -1)
echo "NVRTC: ${lib:-none found}"
mkdir -p /tmp/autark-nvrtc
[ -n "$lib" ] && ln -sf "$lib" /tmp/autark-nvrtc/libnvrtc.so
export LD_LIBRARY_PATH="/tmp/autark-nvrtc:$(dirname "${lib:-/}"):${LD_LIBRARY_PATH:-}"
ptx=()
for p in "$kit"/autark.compute_*.ptx; do ptx+=(--ptx "$p"); done
"$kit/autark-gpu-check" run "${ptx[@]}" --json "$out/kernels.json" 2>&1 | tee "$out/kernels.txt"
rc=${PIPESTATUS[0]}
echo "autark-gpu-check exit code $rc"

# The whole model (MODEL, a .autark file; the kit's `autark`, built with --features cuda):
# greedy text on the CPU and on the GPU, every position's logits of a prompt compared, and
# `autark bench` on both.
model=${MODEL:-}
if [ -n "$model" ] && [ -x "$kit/autark" ]; then
  a=$kit/autark
  prompt="The three primary colours are"
  for d in cpu cuda; do
    "$a" run "$model" -p "$prompt" -n 48 --temp 0 --device "$d" >"$out/greedy-$d.txt" 2>"$out/greedy-$d.err"
    echo "greedy on $d: exit $? $(tr '\n' ' ' <"$out/greedy-$d.txt" | head -c 300)"
    tail -2 "$out/greedy-$d.err"
  done
  if cmp -s "$out/greedy-cpu.txt" "$out/greedy-cuda.txt"; then echo "greedy: the GPU's 48 tokens are the CPU's"; else echo "greedy: the GPU's text DIFFERS from the CPU's"; rc=1; fi
  # The same without CUDA graphs (every launch from the host).
  AUTARK_CUDA_GRAPHS=0 "$a" run "$model" -p "$prompt" -n 48 --temp 0 --device cuda >/tmp/greedy-nographs.txt 2>/dev/null
  if cmp -s "$out/greedy-cpu.txt" /tmp/greedy-nographs.txt; then echo "greedy without graphs: the CPU's tokens"; else echo "greedy without graphs: DIFFERS from the CPU"; rc=1; fi
  # The same through each carried PTX (Jetson's code paths, JIT-compiled for this GPU).
  for p in "$kit"/autark.compute_*.ptx; do
    arch=$(basename "$p" .ptx)
    AUTARK_CUDA_PTX=$p "$a" run "$model" -p "$prompt" -n 48 --temp 0 --device cuda >"/tmp/greedy-$arch.txt" 2>/dev/null
    if cmp -s "$out/greedy-cpu.txt" "/tmp/greedy-$arch.txt"; then echo "greedy with ${arch#autark.}: the CPU's tokens"; else echo "greedy with ${arch#autark.}: DIFFERS from the CPU: $(head -c 200 "/tmp/greedy-$arch.txt")"; rc=1; fi
  done
  long="Once upon a time, in a small village at the edge of a great forest, there lived an old clockmaker who"
  for d in cpu cuda; do
    "$a" logits "$model" -p "$long" -o "/tmp/logits-$d.bin" --device "$d" 2>&1 | tail -1
  done
  python3 - "$model" <<'PY' | tee "$out/logits.txt"
import numpy as np
c = np.fromfile("/tmp/logits-cpu.bin", dtype="<f4"); g = np.fromfile("/tmp/logits-cuda.bin", dtype="<f4")
if c.size != g.size or c.size == 0:
    print(f"logits: sizes differ ({c.size} vs {g.size})"); raise SystemExit(0)
v = 49152 if c.size % 49152 == 0 else c.size
c = c.reshape(-1, v); g = g.reshape(-1, v)
d = np.abs(c - g).max(axis=1); scale = np.abs(c).max(axis=1)
agree = (c.argmax(axis=1) == g.argmax(axis=1)).mean()
print(f"logits: {c.shape[0]} positions; max |cpu - gpu| per position: first {d[0]:.4g}, median {np.median(d):.4g}, max {d.max():.4g} (logit scale {scale.mean():.3g}); argmax agrees at {agree*100:.1f}% of positions")
PY
  for d in cuda cpu; do
    "$a" bench "$model" -p 128 -n 0 -r 3 --device "$d" --json 2>/dev/null | tee -a "$out/bench.jsonl"
    "$a" bench "$model" -p 0 -n 128 -r 3 --device "$d" --json 2>/dev/null | tee -a "$out/bench.jsonl"
  done
  echo "without CUDA graphs:"
  AUTARK_CUDA_GRAPHS=0 "$a" bench "$model" -p 0 -n 128 -r 3 --device cuda --json 2>/dev/null | tee -a "$out/bench.jsonl"
  # The weights read in place from the registered file mapping (what an integrated GPU does by
  # default; over PCIe here): the same greedy text.
  AUTARK_CUDA_WEIGHTS=mapped "$a" run "$model" -p "$prompt" -n 48 --temp 0 --device cuda >/tmp/greedy-mapped.txt 2>/tmp/greedy-mapped.err
  if cmp -s "$out/greedy-cpu.txt" /tmp/greedy-mapped.txt; then echo "greedy with mapped weights: the CPU's tokens"; else echo "greedy with mapped weights: DIFFERS from the CPU: $(head -c 300 /tmp/greedy-mapped.err)"; rc=1; fi
  # An f16 KV cache on both devices; a context shift (a 32-position context filled twice over);
  # states saved on one device and continued on the other.
  same() { if cmp -s "$1" "$2"; then echo "$3: the CPU's tokens"; else echo "$3: DIFFERS from the CPU: $(head -c 200 "$2")"; rc=1; fi; }
  for d in cpu cuda; do
    "$a" run "$model" -p "$prompt" -n 48 --temp 0 --device "$d" --cache-type-k f16 --cache-type-v f16 >"/tmp/f16-$d.txt" 2>/dev/null
    "$a" run "$model" -p "$prompt" -n 60 -c 32 --context-shift --keep 4 --temp 0 --device "$d" >"/tmp/shift-$d.txt" 2>/dev/null
    "$a" run "$model" -p "$prompt" -n 16 --temp 0 --device "$d" --save-state "/tmp/$d.state" >/dev/null 2>&1
  done
  same /tmp/f16-cpu.txt /tmp/f16-cuda.txt "greedy with an f16 KV cache"
  same /tmp/shift-cpu.txt /tmp/shift-cuda.txt "context shift (-c 32, 60 tokens)"
  "$a" run "$model" -n 16 --temp 0 --device cpu --load-state /tmp/cpu.state >/tmp/cont-cpu-cpu.txt 2>/dev/null
  for ds in "cuda cpu" "cpu cuda" "cuda cuda"; do
    set -- $ds
    "$a" run "$model" -n 16 --temp 0 --device "$1" --load-state "/tmp/$2.state" >"/tmp/cont-$1-$2.txt" 2>/dev/null
    same /tmp/cont-cpu-cpu.txt "/tmp/cont-$1-$2.txt" "state saved on $2, continued on $1"
  done
  # A long context (4000 tokens already in it): the split attention, and without it.
  echo "at depth 4000 (split attention; then without):"
  for d in cuda cpu; do
    "$a" bench "$model" -p 0 -n 64 -d 4000 -r 2 --device "$d" --json 2>/dev/null | tee -a "$out/bench.jsonl"
  done
  AUTARK_CUDA_SPLIT_ATTENTION=0 "$a" bench "$model" -p 0 -n 64 -d 4000 -r 2 --device cuda --json 2>/dev/null | tee -a "$out/bench.jsonl"
  # Llama-3.2-1B's shapes with random q4_0 weights (scripts/synthetic-model.py, from the repo
  # this runs in; numpy): 827 MB read per generated token, where bandwidth matters.
  synth=${SYNTH:-scripts/synthetic-model.py}
  if [ -f "$synth" ] && python3 "$synth" "$model" /tmp/synth-1b.autark >/dev/null 2>&1; then
    for d in cuda cpu; do
      "$a" bench /tmp/synth-1b.autark -p 128 -n 64 -r 3 --device "$d" --json 2>/dev/null | tee -a "$out/bench.jsonl"
    done
    echo "without CUDA graphs:"
    AUTARK_CUDA_GRAPHS=0 "$a" bench /tmp/synth-1b.autark -p 0 -n 64 -r 3 --device cuda --json 2>/dev/null | tee -a "$out/bench.jsonl"
    # The weights' way up (docs/CUDA.md): copied through the 16 MiB page-locked staging, or read
    # in place from the registered mapping; a one-token run's wall time and peak host memory
    # (the copy must not hold the weights twice: peak RSS near the file's 829 MB, not twice it).
    for w in device mapped; do
      AUTARK_CUDA_WEIGHTS=$w python3 -c '
import resource, subprocess, sys, time
t = time.time(); r = subprocess.run(sys.argv[2:], capture_output=True)
print(f"weights {sys.argv[1]}: one-token run {time.time() - t:.2f} s, exit {r.returncode}, peak RSS {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MiB")
' "$w" "$a" run /tmp/synth-1b.autark -p hi -n 1 --device cuda | tee -a "$out/upload.txt"
    done
    # The other stored types, whose GEMVs read row-major bytes (q5_0, q5_1, K-quants) or f32
    # activations (f16): the same shapes with random weights of each type; every position's
    # logits of a prompt on both devices (random weights: compared, not required equal, since
    # their argmax margins are tiny), and the GPU's speed.
    for t in q4_k q5_k q6_k q5_0 q5_1 f16; do
      m=/tmp/synth-1b-$t.autark
      python3 "$synth" "$model" "$m" --type "$t" >/dev/null 2>&1 || { echo "$t: synthetic model failed"; rc=1; continue; }
      for d in cpu cuda; do
        "$a" logits "$m" -p "$long" -o "/tmp/logits-$t-$d.bin" --device "$d" >/dev/null 2>&1 || echo "$t: logits on $d failed"
      done
      python3 - "$t" <<'PY' | tee -a "$out/logits.txt"
import sys
import numpy as np
t = sys.argv[1]
c = np.fromfile(f"/tmp/logits-{t}-cpu.bin", dtype="<f4"); g = np.fromfile(f"/tmp/logits-{t}-cuda.bin", dtype="<f4")
if c.size != g.size or c.size == 0 or c.size % 128256:
    print(f"{t}: logits sizes {c.size} vs {g.size}"); raise SystemExit(0)
c = c.reshape(-1, 128256); g = g.reshape(-1, 128256)
d = np.abs(c - g).max(axis=1); scale = np.abs(c).max(axis=1)
agree = (c.argmax(axis=1) == g.argmax(axis=1)).mean()
print(f"{t} (1B shapes, random): {c.shape[0]} positions; max |cpu - gpu| median {np.median(d):.4g}, max {d.max():.4g} (logit scale {scale.mean():.3g}); argmax agrees at {agree*100:.1f}%")
PY
      "$a" bench "$m" -p 128 -n 64 -r 3 --device cuda --json 2>/dev/null | tee -a "$out/bench.jsonl"
      rm -f "$m"
    done
  else
    echo "SKIP: no synthetic 1B model ($synth and numpy needed)"
  fi
fi
exit "$rc"
