#!/usr/bin/env bash
# Builds data/eval/ (parallel evaluation text in en, fr, de, es, it, pl, a disjoint calibration
# mixture, README.md and LICENSES) from Debian's debian-handbook package.
#
#   scripts/make-eval-text.sh            # apt-get download debian-handbook=$VERSION into a temp dir
#   scripts/make-eval-text.sh PATH.deb   # use a .deb you already have (must be that version)
#
# Needs apt-get (package lists that know the version: `apt-get update` once, as root), dpkg-deb
# and python3. No root needed; nothing is installed. The output is deterministic: rerunning gives
# byte-identical files. See data/eval/README.md and scripts/make_eval_text.py.
set -euo pipefail

PACKAGE=debian-handbook
VERSION=11.20220922
SHA256=3d5dbeac1f1afc9c094eab9d0f701f6ecff99c4927d5a4794cf6c85678134faa

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$repo/data/eval"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/make-eval-text.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

if [ $# -ge 1 ]; then
  deb="$(realpath "$1")"
else
  # As root, apt warns that its sandbox user cannot write into the private temp dir and
  # downloads unsandboxed; harmless (the sha256 below is checked either way).
  (cd "$tmp" && apt-get download -q "$PACKAGE=$VERSION") || {
    echo "apt-get download $PACKAGE=$VERSION failed (run 'apt-get update' as root first?)" >&2
    exit 1
  }
  deb="$(echo "$tmp/${PACKAGE}_${VERSION}"_*.deb)"
fi

got="$(sha256sum "$deb" | cut -d' ' -f1)"
if [ "$got" != "$SHA256" ]; then
  echo "$deb: sha256 $got, expected $SHA256 ($PACKAGE $VERSION)" >&2
  exit 1
fi

dpkg-deb -x "$deb" "$tmp/root"
mkdir -p "$out"
python3 "$repo/scripts/make_eval_text.py" --deb "$deb" --root "$tmp/root" --out "$out"
