#!/usr/bin/env bash
# bench/peers/hf_onnx_setup.sh MODEL_DIR...: makes the ONNX Runtime peer of
# bench/run --models ready -- Debian's python3-onnx (to write the graphs),
# onnxruntime-node@1.30.0 under bench/peers/node_modules (git-ignored; npm
# install --ignore-scripts, since the package's install script downloads
# from outside and the CPU library ships inside the package), and each
# MODEL_DIR's graphs in MODEL_DIR/onnx (hf_onnx_export.py; written again
# when the weights or the writer are newer).  Exits 0 when the peer can run,
# 1 with a note on stderr when it cannot (bench/models/run.sh then skips it).
set -uo pipefail
cd "$(dirname "$0")/../.."
note() { echo "bench --models: ONNX Runtime peer skipped: $*" >&2; exit 1; }
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! /usr/bin/python3 -c 'import onnx, numpy' 2>/dev/null; then
	echo "bench --models: installing python3-onnx (the ONNX Runtime peer's graphs)" >&2
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
		python3-onnx python3-numpy >/dev/null 2>&1 ||
		note "python3-onnx does not install"
fi
command -v node >/dev/null || note "no node"
if [ ! -f bench/peers/node_modules/onnxruntime-node/package.json ]; then
	echo "bench --models: installing onnxruntime-node@1.30.0 under bench/peers" >&2
	(cd bench/peers && npm install --ignore-scripts --no-audit --no-fund --no-save -s \
		onnxruntime-node@1.30.0 >/dev/null 2>&1) ||
		note "npm install --ignore-scripts onnxruntime-node@1.30.0 failed (offline?)"
fi
node -e 'require(process.argv[1]).InferenceSession' \
	"$(pwd)/bench/peers/node_modules/onnxruntime-node" 2>/dev/null ||
	note "onnxruntime-node does not load (its CPU library missing from bench/peers/node_modules?)"
for dir in "$@"; do
	g=$dir/onnx
	if [ ! -f "$g/embed.onnx" ] || [ ! -f "$g/predict.onnx" ] || [ ! -f "$g/dept_adapter.npz" ] ||
		[ "$dir/model.safetensors" -nt "$g/embed.onnx" ] || [ bench/peers/hf_onnx_export.py -nt "$g/embed.onnx" ]; then
		echo "bench --models: writing the ONNX graphs of $dir" >&2
		/usr/bin/python3 bench/peers/hf_onnx_export.py "$dir" "$g" >&2 || note "hf_onnx_export.py $dir failed"
	fi
done
exit 0
