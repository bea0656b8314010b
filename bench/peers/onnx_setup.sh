#!/usr/bin/env bash
# bench/peers/onnx_setup.sh OUT_DIR MODEL_DIR: makes the ONNX Runtime peer
# ready for bench/run and bench/onnx.sh -- Debian's python3-onnx (to write
# the graphs), onnxruntime-node@1.30.0 under bench/peers/node_modules
# (git-ignored; npm install --ignore-scripts, since the package's install
# script downloads from outside and the CPU library ships inside the
# package), and the graphs of onnx_export.py in OUT_DIR/onnx.  Exits 0 when
# the peer can run, 1 with a note on stderr when it cannot (the callers
# then skip it).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=$1 model=$2
note() { echo "bench: ONNX Runtime peer skipped: $*" >&2; exit 1; }
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! /usr/bin/python3 -c 'import onnx, numpy' 2>/dev/null; then
	echo "bench: installing python3-onnx (the ONNX Runtime peer's graphs)" >&2
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
		python3-onnx python3-numpy >/dev/null 2>&1 ||
		note "python3-onnx does not install"
fi
if [ ! -f bench/peers/node_modules/onnxruntime-node/package.json ]; then
	echo "bench: installing onnxruntime-node@1.30.0 under bench/peers" >&2
	(cd bench/peers && npm install --ignore-scripts --no-audit --no-fund --no-save -s \
		onnxruntime-node@1.30.0 >/dev/null 2>&1) ||
		note "npm install --ignore-scripts onnxruntime-node@1.30.0 failed (offline?)"
fi
node -e 'require(process.argv[1]).InferenceSession' \
	"$(pwd)/bench/peers/node_modules/onnxruntime-node" 2>/dev/null ||
	note "onnxruntime-node does not load (its CPU library missing from bench/peers/node_modules?)"
/usr/bin/python3 bench/peers/onnx_export.py "$model" "$out/onnx" >/dev/null ||
	note "onnx_export.py failed"
exit 0
