#!/usr/bin/env bash
# Deletion test of token attributions (docs/design.md 7; bench/README.md,
# "Explanations: deletion test"): train a DePT adapter on the SST-2 fixture
# with dept-train, then for the first N held-out test rows delete the top-k
# attributed tokens (k = 1..3; embeddings replaced by the zero baseline) and
# report the mean drop of the predicted class's probability for gradient x
# input, integrated gradients and a random order (bench/explain_faithfulness.c).
#
#   bench/explain_faithfulness.sh [N_TEXTS (default 100)] [IG_MAX_STEPS (default 64)]
#
# Writes build/explain/{adapter.dept,train.json,faithfulness.json}; the adapter
# is reused when present.  Single-threaded; about 3 minutes on a shared 2-core
# machine.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
IG_MAX_STEPS=${2:-64}
OUT=build/explain
MODEL=build/model/use-lite
mkdir -p "$OUT"
make -s dept-train
if [ ! -f "$OUT/adapter.dept" ]; then
	./dept-train --train test/fixtures/sst2_train_600.tsv --test test/fixtures/sst2_test_200.tsv \
		--model "$MODEL" --method dept --prompt-length 20 --max-length 48 --epochs 3 \
		--batch-size 16 --seed 42 --quiet --save "$OUT/adapter.dept" >"$OUT/train.json"
fi
# the flags of the Makefile's NN_CFLAGS
cc -std=c11 -D_GNU_SOURCE -O3 -g -Wall -Wextra -Werror -Wno-unused-parameter -Isrc/nn \
	$(pkg-config --cflags openblas 2>/dev/null) -o "$OUT/explain_faithfulness" \
	bench/explain_faithfulness.c $(find src/nn -name '*.c' | sort) \
	-lutf8proc -lcjson -lm -ldl -lpthread
"$OUT/explain_faithfulness" "$MODEL" "$OUT/adapter.dept" test/fixtures/sst2_test_200.tsv "$N" 1 \
	"$IG_MAX_STEPS" |
	tee "$OUT/faithfulness.json"
