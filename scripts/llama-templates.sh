#!/usr/bin/env bash
# Prints the folder of real chat templates that llama.cpp keeps for its tests
# (models/templates/*.jinja: Qwen2.5, Llama 3.x, Phi-3.5, Mistral, Hermes, …), from the
# llama-cpp-python 0.3.36 sdist on PyPI that scripts/llama-tokenize.sh also uses. Nothing of it
# enters the repository: it is extracted into $AUTARK_PEER_CACHE (default ~/.cache/autark-peer).
set -euo pipefail
PKG=llama_cpp_python-0.3.36
CACHE=${AUTARK_PEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/autark-peer}
DIR="$CACHE/$PKG/vendor/llama.cpp/models/templates"
if [ ! -f "$DIR/Qwen-Qwen2.5-7B-Instruct.jinja" ]; then
  mkdir -p "$CACHE"
  [ -f "$CACHE/$PKG.tar.gz" ] || python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
    -d "$CACHE" "${PKG/_cpp_python-/-cpp-python==}" >&2
  tar xzf "$CACHE/$PKG.tar.gz" -C "$CACHE" "$PKG/vendor/llama.cpp/models/templates"
fi
echo "$DIR"
