#!/usr/bin/env bash
# The main job end to end: fetch SmolLM2-135M-Instruct, build autark, quantize, generate.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-model.sh
cargo build --release -p autark-cli
target/release/autark quantize models/SmolLM2-135M-Instruct.Q4_1.gguf -o models/smollm2.autark --type q4_1
target/release/autark run models/smollm2.autark --chat -p "What is the capital of France? Answer in one sentence." -n 64 --temp 0
