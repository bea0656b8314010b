#!/usr/bin/env bash
# Keep the layers of src/ one-way (docs/architecture.md): every #include of
# src/nn names a folder of the same layer or below, no PostgreSQL header,
# and no other model family; src/pg and src/cli name no family at all.
# Prints each violation and exits 1 if there is any.
set -uo pipefail
cd "$(dirname "$0")/.."
rank() {    # the layer of a src/nn folder, lowest first
	case $1 in
	base) echo 0 ;; ops) echo 1 ;; formats) echo 2 ;; tokenizers) echo 3 ;;
	models) echo 4 ;; adapters) echo 5 ;; train) echo 6 ;; *) echo 99 ;;
	esac
}
bad=0
violation() { echo "check-layers: $1: $2"; bad=1; }

while IFS= read -r file; do
	rel=${file#src/nn/}
	layer=${rel%%/*}
	family=""
	[[ $rel == models/*/* ]] && family=$(cut -d/ -f2 <<<"$rel")
	[ "$(rank "$layer")" = 99 ] && violation "$file" "not in a known layer folder"
	while IFS= read -r inc; do
		case $inc in
		'<'*) [[ $inc == *postgres* || $inc == '<utils/'* || $inc == '<catalog/'* ]] &&
			violation "$file" "includes a PostgreSQL header $inc"; continue ;;
		esac
		target=${inc//\"/}
		tlayer=${target%%/*}
		[ "$(rank "$tlayer")" -gt "$(rank "$layer")" ] &&
			violation "$file" "includes $target from a higher layer"
		if [[ $target == models/*/* ]]; then
			tfamily=$(cut -d/ -f2 <<<"$target")
			[ "$rel" != models/registry.c ] && [ "$tfamily" != "$family" ] &&
				violation "$file" "names the $tfamily family outside its folder and the registry"
		fi
	done < <(sed -n 's/^#include \(["<][^">]*[">]\).*/\1/p' "$file")
done < <(find src/nn -name '*.[ch]' | sort)

while IFS= read -r file; do
	grep -q '^#include "models/[a-z_0-9]*/' "$file" &&
		violation "$file" "includes a model family's header (use models/backbone.h)"
done < <(find src/pg src/cli -name '*.[ch]' | sort)

[ "$bad" -eq 0 ] && echo "check-layers: ok ($(find src/nn -name '*.[ch]' | wc -l) files of src/nn, src/pg and src/cli)"
exit "$bad"
