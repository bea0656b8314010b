#!/usr/bin/env bash
# bench/run --models [--smoke] [--no-sql] [NAME ...]: ours beside PyTorch at
# real shapes (issue 16, item 5).  For each model (default: minilm-l6
# distilbert-base t5-small bert-base roberta-base t5-base; by name only:
# multilingual-e5-small, XLM-RoBERTa 12 x 384 with a 250,002-piece Unigram
# tokenizer, 471 MB, left out of the default run, which already takes most of
# an hour on a loaded 2-core machine) it writes a
# Hugging Face directory with the real config, random weights and a
# tokenizer of the real vocabulary size (bench/models/make_models.py, under
# build/bench/models/), then measures, ours (dept-bench, the C driver) and
# the PyTorch peer (bench/peers/hf_torch_peer.py) on the same token ids, the
# same threads and float32:
#   - embed and DePT predict texts/s at batch 1 and 32, texts of exactly 20
#     and 64 tokens (SST-2 sentences, joined for 64), 1 thread; at 2 threads
#     (BENCH_THREADS_MODELS: minilm-l6 bert-base) embed at batch 32 of 64-token
#     texts and predict at batch 1 of 20-token ones;
#   - the DePT training step (m = 60, r from the budget of PT l = 100 at
#     s = 128; T5 text-to-text with the label loss), tokens/s;
#   - the same embed and training at 1 thread without AVX-512: ours with
#     DEPT_NO_AVX512=1 (OpenBLAS's Haswell kernels, no AVX-512 row product,
#     no AMX), PyTorch with ATEN_CPU_CAPABILITY=avx2 and OPENBLAS_CORETYPE=Haswell;
#   - bfloat16 products, 1 thread, on every model: ours (AMX, else
#     AVX512-BF16: gemm_bf16.h) beside PyTorch's bfloat16 linears, embed at
#     batch 32 (64 tokens), DePT predict at batch 1 (20 tokens), training;
#   - model load (open) time and memory of a new process, and
#     bert-base-bf16: the same weights in BF16, converted once at load;
#   - in SQL (its own server; --no-sql skips): dept_register_model, the
#     first dept_predict of a new backend, a backend's memory after it, and
#     dept_train's memory estimate (dept.max_training_memory's) against the
#     training worker's measured peak (VmHWM).
# Writes build/bench/models/results.jsonl (every figure), bench/models_results.json
# (the same, kept) and prints the markdown tables (bench/models/report.py).
# --smoke: tiny widths of MiniLM and T5-small, a few texts, 1 thread, no SQL (about a
# minute; --smoke --sql adds the SQL part).
# ONNX Runtime (issue 16 item 4): on the BERT-family models, onnxruntime-node
# (bench/peers/hf_onnx_peer.mjs) runs graphs written from the same weights
# (bench/peers/hf_onnx_export.py; checked first against ours and the PyTorch
# peer by hf_onnx_agreement.py, which stops the run if they disagree) wherever
# PyTorch runs embed and predict, float32; its settings (intraOpNumThreads =
# ours, graphOptimizationLevel 'all', executionMode 'sequential') are printed
# with every figure.  Skipped with a note when onnxruntime-node cannot be
# installed (bench/peers/hf_onnx_setup.sh); --no-onnx leaves it out.
# --onnx-only [NAME ...]: only that -- ours, PyTorch and ONNX Runtime, embed and
# predict (BENCH_ONNX_CASES, default embed and predict at batch 1 of 20-token
# texts and batch 32 of 64- and 20-token ones) at every thread count, every
# named model (default minilm-l6 bert-base); no load, training, bfloat16 or SQL
# figures; minutes a model.  Writes build/bench/models/onnx_results.jsonl and
# bench/models_onnx_results.jsonl.
# Knobs: BENCH_THREADS ("1 2"), BENCH_PORT (5498), BENCH_TRAIN_STEPS, BENCH_TRAIN_BATCH,
# BENCH_REPEAT (1; each embed/predict figure is run this many times, the engines
# interleaved, and the tables take the best: raise it on a loaded machine),
# BENCH_APPEND=1 (add to the results file instead of starting it again: one model a run,
# one report; each run writes its own machine lines with the load average).
set -euo pipefail
cd "$(dirname "$0")/../.."
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE

smoke=0 sql=1 onnx=1 onnx_only=0 names=()
for a in "$@"; do
	case "$a" in
	--smoke) smoke=1 sql=0 ;;
	--sql) sql=1 ;;
	--no-sql) sql=0 ;;
	--no-onnx) onnx=0 ;;
	--onnx-only) onnx_only=1 sql=0 ;;
	*) names+=("$a") ;;
	esac
done
if [ ${#names[@]} -eq 0 ]; then
	names=(minilm-l6 distilbert-base t5-small bert-base roberta-base t5-base)
	[ $smoke = 0 ] || names=(minilm-l6 t5-small)
	[ $onnx_only = 0 ] || names=(minilm-l6 bert-base)
fi
repeat=${BENCH_REPEAT:-1}
threads_list=${BENCH_THREADS:-"1 2"}
[ $smoke = 0 ] || threads_list=${BENCH_THREADS:-1}
tries=3
[ $smoke = 0 ] || tries=1
out=build/bench/models
[ $smoke = 0 ] || out=build/bench/models-smoke
mkdir -p "$out"
results=$out/results.jsonl
[ $onnx_only = 0 ] || results=$out/onnx_results.jsonl
[ "${BENCH_APPEND:-0}" = 1 ] || : >"$results"
say() { echo "bench --models: $*" >&2; }
record() { tee -a "$results" >&2; }
peer=(/usr/bin/python3 bench/peers/hf_torch_peer.py)

/usr/bin/python3 -c 'import torch, numpy' || { say "needs Debian's python3-torch and python3-numpy"; exit 1; }
make -s dept-bench >/dev/null
# the ONNX Runtime peer: BERT-family encoders only (hf_onnx_export.py)
onnx_models=()
if [ $onnx = 1 ] || [ $onnx_only = 1 ]; then
	for m in "${names[@]}"; do
		case "$m" in t5* | *-bf16) ;; *) onnx_models+=("$m") ;; esac
	done
fi
[ ${#onnx_models[@]} -gt 0 ] || onnx=0
core=$(./dept-bench peak | python3 -c 'import json,sys; print(json.load(sys.stdin)["blas_core"])')
printf '{"bench": "machine", "cpu": "%s", "cores": %d, "blas_core": "%s", "openblas": "%s", "torch": "%s", "onnxruntime": "%s", "loadavg_start": "%s", "date": "%s", "commit": "%s"}\n' \
	"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" "$(nproc)" "$core" \
	"$(dpkg-query -W -f='${Version}' libopenblas0-pthread 2>/dev/null || echo unknown)" \
	"$(/usr/bin/python3 -c 'import torch; print(torch.__version__)')" \
	"$(node -p 'require("./bench/peers/node_modules/onnxruntime-node/package.json").version + " (node " + process.versions.node + ")"' 2>/dev/null || echo none)" \
	"$(cut -d' ' -f1-3 /proc/loadavg)" "$(date -u +%Y-%m-%dT%H:%MZ)" \
	"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" | record
peer_env=(env OPENBLAS_CORETYPE="$core")
noavx_ours=(env DEPT_NO_AVX512=1)
noavx_peer=(env OPENBLAS_CORETYPE=Haswell ATEN_CPU_CAPABILITY=avx2)
ort=(node bench/peers/hf_onnx_peer.mjs)

# --- models --------------------------------------------------------------------
want=("${names[@]}")
[ $smoke = 1 ] || [ $onnx_only = 1 ] || want+=(bert-base-bf16)
todo=()
for m in "${want[@]}"; do
	[ -f "$out/$m/model.safetensors" ] && [ -f "$out/$m/config.json" ] || todo+=("$m")
done
if [ ${#todo[@]} -gt 0 ]; then
	say "writing ${todo[*]}"
	gen=(/usr/bin/python3 bench/models/make_models.py "$out")
	[ $smoke = 0 ] || gen+=(--smoke)
	"${gen[@]}" "${todo[@]}" >&2
fi
if [ $onnx = 1 ]; then
	dirs=()
	for m in "${onnx_models[@]}"; do dirs+=("$out/$m"); done
	bench/peers/hf_onnx_setup.sh "${dirs[@]}" || onnx=0
fi
if [ $onnx_only = 1 ] && [ $onnx = 0 ]; then
	say "--onnx-only: no ONNX Runtime peer (see above)"
	exit 1
fi

# --- texts: SST-2 sentences (20 tokens) and runs of them (64 tokens) ---------------
gzip -dc bench/data/sst2_glue/train.tsv.gz | awk -F'\t' 'NR > 1 && NR <= 30001 {
	sub(/\r$/, "", $2); print ($1 == 1 ? "positive" : "negative") "\t" $2 }' >"$out/sst2.tsv"
{
	echo "label	text"
	cat "$out/sst2.tsv"
	for k in 4 6 8; do
		awk -F'\t' -v k="$k" '{ run = run (run == "" ? "" : " ") $2; i++ }
			i == k { print $1 "\t" run; run = ""; i = 0 }' "$out/sst2.tsv"
	done
} >"$out/pool.tsv"
printf 'label\ttext\nnegative\tnegative\npositive\tpositive\n' >"$out/labels.tsv"

# texts of exactly N tokens of model m (special tokens included), their ids
pick_texts() {    # pick_texts MODEL_DIR N COUNT PREFIX
	./dept-bench tokenize --model "$1" --texts "$out/pool.tsv" --max-length 128 |
		awk -v n="$2" -v c="$3" -v p="$4" -v pool="$out/pool.tsv" '
		BEGIN { getline hdr < pool; print hdr > (p ".tsv") }
		{ getline line < pool }
		NF - 1 == n && seen[line]++ == 0 && per[$1] < c / 2 {
			# both labels, alternating, so that any leading slice has two classes
			held[$1, per[$1]++] = line; ids[$1, per[$1] - 1] = $0 }
		END {
			for (i = 0; i < c / 2; i++)
				for (l = 0; l <= 1; l++)
					if ((l, i) in held) { print held[l, i] > (p ".tsv"); print ids[l, i] > (p ".ids") }
		}'
}

if [ $smoke = 1 ]; then
	n1=4 n32=32 train_steps=2 train_batch=4
else
	n1=8 n32=32 train_steps=${BENCH_TRAIN_STEPS:-3} train_batch=${BENCH_TRAIN_BATCH:-8}
fi
# what:batch:tokens; BENCH_CASES=all adds DePT prediction of 64-token texts at batch 32
all_cases="embed:1:20 embed:32:20 embed:1:64 embed:32:64 predict:1:20 predict:32:20 predict:1:64 predict:32:64"
cases=${BENCH_CASES:-"embed:1:20 embed:32:20 embed:1:64 embed:32:64 predict:1:20 predict:32:20 predict:1:64"}
[ "$cases" != all ] || cases=$all_cases
[ $onnx_only = 0 ] || cases=${BENCH_ONNX_CASES:-"embed:1:20 embed:32:64 predict:1:20 predict:32:20 embed:32:20"}
# the without-AVX-512 and bfloat16 rows (BENCH_NOAVX_MODELS; "all" for every model)
noavx_models=${BENCH_NOAVX_MODELS:-"minilm-l6 bert-base t5-small"}
warm=4    # texts run untimed first (one batch of 4): libraries, weight pages, allocator
export PEER_WARMUP=$warm
# models measured at more than one thread (the machine is shared; keep the run in minutes)
threads_models=${BENCH_THREADS_MODELS:-"minilm-l6 bert-base"}

bench_model() {    # bench_model NAME
	local m=$1 dir=$out/$1 t b len c1 c32 steps i has_ort=0
	say "$m: texts"
	for len in 20 64; do
		pick_texts "$dir" "$len" $((n32 * 2)) "$dir/texts$len"
	done
	[ $onnx = 0 ] || [[ " ${onnx_models[*]} " != *" $m "* ]] || has_ort=1
	if [ $has_ort = 1 ]; then
		# ONNX Runtime against ours and the PyTorch peer before any figure; what it fused
		/usr/bin/python3 bench/peers/hf_onnx_agreement.py "$dir" "$dir/onnx" 8 | record ||
			{ say "$m: ONNX Runtime's outputs disagree with ours (above); stopping"; exit 1; }
		head -n 1 "$dir/texts20.ids" >"$dir/one.ids"
		ONNX_PEER_OPTIMIZED="$dir/onnx/optimized.onnx" "${ort[@]}" embed "$dir/onnx" "$dir/one.ids" 1 1 2>/dev/null >/dev/null
		/usr/bin/python3 -c '
import collections, json, sys
import onnx
g = onnx.load(sys.argv[1], load_external_data=False).graph
print(json.dumps({"bench": "onnx_graph", "model": sys.argv[2], "graph": "embed, optimised by ONNX Runtime (level all)",
                  "ops": dict(collections.Counter(n.op_type for n in g.node).most_common())}))' \
			"$dir/onnx/optimized.onnx" "$m" | record
		rm -f "$dir/onnx/optimized.onnx"
	fi
	./dept-bench tokenize --model "$dir" --texts "$out/labels.tsv" >"$dir/labels.ids"
	# agreement of the peer's sentence vectors with ours
	./dept-bench vectors --model "$dir" --texts "$dir/texts20.tsv" --limit 8 --max-length 128 >"$dir/v_ours.json"
	"${peer_env[@]}" "${peer[@]}" vectors "$dir" "$dir/texts20.ids" 8 1 >"$dir/v_peer.json"
	python3 -c '
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
print(json.dumps({"bench": "agreement", "model": sys.argv[3], "texts": len(a),
                  "max_abs_diff": max(abs(x - y) for r, s in zip(a, b) for x, y in zip(r, s)),
                  "max_abs_value": max(abs(x) for r in a for x in r)}))' "$dir/v_ours.json" "$dir/v_peer.json" "$m" | record
	# smaller counts on the large models keep the run in minutes
	c1=$n1 c32=$n32 steps=$train_steps
	case "$m" in t5-base | bert-base | roberta-base) [ $smoke = 1 ] || c1=$((n1 / 2)) steps=2 ;; esac
	tag() { python3 -c 'import json,sys; r=json.loads(sys.stdin.readline()); r.update(json.loads(sys.argv[1])); print(json.dumps(r))' "$1"; }
	for t in $threads_list; do
		[ "$t" = "${threads_list%% *}" ] || [ $onnx_only = 1 ] || [[ " $threads_models " == *" $m "* ]] || continue
		for case in $cases; do
			local what=${case%%:*} rest=${case#*:}
			local b=${rest%%:*} len=${rest#*:}
			# more threads: the batch-32 embedding of 64-token texts and the
			# single-text prediction of 20-token ones (and training) only;
			# --onnx-only: its cases at every thread count
			[ "$t" = "${threads_list%% *}" ] || [ $onnx_only = 1 ] || [ "$case" = embed:32:64 ] ||
				[ "$case" = predict:1:20 ] || continue
			local n=$([ "$b" = 1 ] && echo "$c1" || echo "$c32")
			head -n $((n + 1)) "$dir/texts$len.tsv" >"$dir/run.tsv"
			head -n "$n" "$dir/texts$len.ids" >"$dir/run.ids"
			say "$m: $what, $t thread(s), batch $b, $len tokens"
			for ((i = 0; i < repeat; i++)); do
				if [ "$what" = embed ]; then
					./dept-bench embed --model "$dir" --texts "$dir/run.tsv" --batch "$b" --threads "$t" --warmup $warm --max-length 128 |
						tag "{\"impl\": \"ours\", \"model\": \"$m\", \"text_tokens\": $len}" | record
					"${peer_env[@]}" "${peer[@]}" embed "$dir" "$dir/run.ids" "$b" "$t" |
						tag "{\"impl\": \"pytorch\", \"model\": \"$m\", \"text_tokens\": $len}" | record
				else
					./dept-bench predict --model "$dir" --method dept --texts "$dir/run.tsv" --batch "$b" --threads "$t" --warmup $warm --max-length 128 |
						tag "{\"impl\": \"ours\", \"model\": \"$m\", \"text_tokens\": $len}" | record
					"${peer_env[@]}" "${peer[@]}" predict "$dir" "$dir/run.ids" "$b" "$t" "$dir/labels.ids" |
						tag "{\"impl\": \"pytorch\", \"model\": \"$m\", \"text_tokens\": $len}" | record
				fi
				[ $has_ort = 0 ] || "${ort[@]}" "$what" "$dir/onnx" "$dir/run.ids" "$b" "$t" |
					tag "{\"impl\": \"onnxruntime\", \"model\": \"$m\", \"text_tokens\": $len}" | record
			done
		done
		[ $onnx_only = 0 ] || continue
		say "$m: DePT training step, $t thread(s), batch $train_batch"
		./dept-bench train --model "$dir" --method dept --texts "$dir/texts20.tsv" --batch "$train_batch" --steps "$steps" --threads "$t" --max-length 128 |
			tag "{\"impl\": \"ours\", \"model\": \"$m\", \"text_tokens\": 20}" | record
		"${peer_env[@]}" "${peer[@]}" train "$dir" "$dir/texts20.ids" "$train_batch" "$t" "$steps" "$dir/labels.ids" |
			tag "{\"impl\": \"pytorch\", \"model\": \"$m\", \"text_tokens\": 20}" | record
	done
	[ $onnx_only = 0 ] || return 0
	bench_bf16 "$m" "$c1" "$steps"
	[ $smoke = 1 ] || [ "$noavx_models" = all ] || [[ " $noavx_models " == *" $m "* ]] || return 0
	say "$m: without AVX-512, and PyTorch in bfloat16 (1 thread)"
	head -n $((c32 + 1)) "$dir/texts64.tsv" >"$dir/run.tsv"
	head -n "$c32" "$dir/texts64.ids" >"$dir/run.ids"
	"${noavx_ours[@]}" ./dept-bench embed --model "$dir" --texts "$dir/run.tsv" --batch 32 --warmup $warm --max-length 128 |
		tag "{\"impl\": \"ours\", \"model\": \"$m\", \"text_tokens\": 64, \"no_avx512\": true}" | record
	"${noavx_peer[@]}" "${peer[@]}" embed "$dir" "$dir/run.ids" 32 1 |
		tag "{\"impl\": \"pytorch\", \"model\": \"$m\", \"text_tokens\": 64, \"no_avx512\": true}" | record
	PEER_PRECISION=bfloat16 "${peer_env[@]}" "${peer[@]}" embed "$dir" "$dir/run.ids" 32 1 |
		tag "{\"impl\": \"pytorch\", \"model\": \"$m\", \"text_tokens\": 64}" | record
	"${noavx_ours[@]}" ./dept-bench train --model "$dir" --method dept --texts "$dir/texts20.tsv" --batch "$train_batch" --steps "$steps" --max-length 128 |
		tag "{\"impl\": \"ours\", \"model\": \"$m\", \"text_tokens\": 20, \"no_avx512\": true}" | record
	"${noavx_peer[@]}" "${peer[@]}" train "$dir" "$dir/texts20.ids" "$train_batch" 1 "$steps" "$dir/labels.ids" |
		tag "{\"impl\": \"pytorch\", \"model\": \"$m\", \"text_tokens\": 20, \"no_avx512\": true}" | record
}

# bfloat16 weight products, 1 thread: ours (gemm_bf16.h: AMX, else AVX512-BF16;
# float32 where the CPU has neither, and the rows then say so) beside
# PyTorch's bfloat16 linears: embed at batch 32 of 64-token texts, DePT
# predict of single 20-token texts, the DePT training step.
bench_bf16() {    # bench_bf16 NAME C1 STEPS
	local m=$1 dir=$out/$1 c1=$2 steps=$3
	local bf=(--precision bfloat16 --warmup $warm --max-length 128)
	say "$m: bfloat16, 1 thread"
	head -n $((n32 + 1)) "$dir/texts64.tsv" >"$dir/run.tsv"
	head -n "$n32" "$dir/texts64.ids" >"$dir/run.ids"
	./dept-bench embed --model "$dir" --texts "$dir/run.tsv" --batch 32 "${bf[@]}" |
		tag "{\"impl\": \"ours\", \"model\": \"$m\", \"text_tokens\": 64}" | record
	PEER_PRECISION=bfloat16 "${peer_env[@]}" "${peer[@]}" embed "$dir" "$dir/run.ids" 32 1 |
		tag "{\"impl\": \"pytorch\", \"model\": \"$m\", \"text_tokens\": 64}" | record
	head -n $((c1 + 1)) "$dir/texts20.tsv" >"$dir/run.tsv"
	head -n "$c1" "$dir/texts20.ids" >"$dir/run.ids"
	./dept-bench predict --model "$dir" --method dept --texts "$dir/run.tsv" --batch 1 "${bf[@]}" |
		tag "{\"impl\": \"ours\", \"model\": \"$m\", \"text_tokens\": 20}" | record
	PEER_PRECISION=bfloat16 "${peer_env[@]}" "${peer[@]}" predict "$dir" "$dir/run.ids" 1 1 "$dir/labels.ids" |
		tag "{\"impl\": \"pytorch\", \"model\": \"$m\", \"text_tokens\": 20}" | record
	./dept-bench train --model "$dir" --method dept --texts "$dir/texts20.tsv" --batch "$train_batch" \
		--steps "$steps" --precision bfloat16 --max-length 128 |
		tag "{\"impl\": \"ours\", \"model\": \"$m\", \"text_tokens\": 20}" | record
	PEER_PRECISION=bfloat16 "${peer_env[@]}" "${peer[@]}" train "$dir" "$dir/texts20.ids" "$train_batch" 1 "$steps" "$dir/labels.ids" |
		tag "{\"impl\": \"pytorch\", \"model\": \"$m\", \"text_tokens\": 20}" | record
}

load_model() {    # load_model NAME: a new process opens the model, 3 times (page cache warm)
	local m=$1 i
	for i in $(seq 1 $tries); do
		./dept-bench load --model "$out/$m" | python3 -c '
import json, sys
r = json.loads(sys.stdin.readline()); r.update({"impl": "ours", "model": sys.argv[1], "try": int(sys.argv[2]),
    "safetensors_bytes": int(sys.argv[3])}); print(json.dumps(r))' "$m" "$i" "$(stat -c %s "$out/$m/model.safetensors")" | record
		"${peer_env[@]}" "${peer[@]}" load "$out/$m" | python3 -c '
import json, sys
r = json.loads(sys.stdin.readline()); r.update({"impl": "pytorch", "model": sys.argv[1], "try": int(sys.argv[2])}); print(json.dumps(r))' "$m" "$i" | record
	done
}

for m in "${want[@]}"; do
	cat "$out/$m/model.safetensors" >/dev/null    # the page cache holds the file, as for a served model
	[ $onnx_only = 0 ] || continue
	say "$m: load"
	load_model "$m"
done
for m in "${names[@]}"; do
	bench_model "$m"
done

# --- SQL -------------------------------------------------------------------------
if [ $sql = 1 ]; then
	bench/models/sql.sh "$out" "${names[@]}" | record
fi
printf '{"bench": "machine_end", "loadavg_end": "%s", "date": "%s"}\n' "$(cut -d' ' -f1-3 /proc/loadavg)" \
	"$(date -u +%Y-%m-%dT%H:%MZ)" | record
if [ $smoke = 0 ]; then
	if [ $onnx_only = 1 ]; then cp "$results" bench/models_onnx_results.jsonl; else cp "$results" bench/models_results.jsonl; fi
fi
python3 bench/models/report.py "$results"
