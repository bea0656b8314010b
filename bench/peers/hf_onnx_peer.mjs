#!/usr/bin/env node
/*
 * hf_onnx_peer.mjs: the ONNX Runtime peer of bench/run --models -- the
 * BERT-family graphs of hf_onnx_export.py (same weights as ours) run by
 * onnxruntime-node's CPU execution provider, float32.
 *
 *   node bench/peers/hf_onnx_peer.mjs embed   ONNX_DIR IDS BATCH THREADS   sentence vectors
 *   node bench/peers/hf_onnx_peer.mjs predict ONNX_DIR IDS BATCH THREADS   DePT adapter + head
 *   node bench/peers/hf_onnx_peer.mjs vectors ONNX_DIR IDS N THREADS       the first N vectors, JSON
 *   node bench/peers/hf_onnx_peer.mjs outputs-predict ONNX_DIR IDS N THREADS
 *        the predict graph's {"probs", "vectors"} for the first N, JSON
 *
 * hf_torch_peer.py's CLI with ONNX_DIR in place of the model directory: IDS
 * is `dept-bench tokenize --model DIR` output (label, then the token ids of
 * one text a line), so every engine reads the same tokens and tokenization
 * is outside the timing, as for the PyTorch peer.  Each batch is padded to
 * its longest row (id 0, mask 0 past the text); building the input tensors
 * is inside the timing.  PEER_WARMUP texts (default one batch) run untimed
 * first, in batches of BATCH, then every row is timed.
 *
 * Session settings, fixed and printed with the figures: intraOpNumThreads =
 * THREADS (ours), interOpNumThreads = 1, graphOptimizationLevel 'all',
 * executionMode 'sequential', the CPU execution provider, everything else
 * at its default (the intra-op pool's spinning included).  ONNX_PEER_OPTIMIZED=FILE
 * writes the graph as optimised (what ONNX Runtime fused).  The package is
 * looked up from bench/peers (npm install --ignore-scripts there) or
 * ONNX_PEER_MODULES.
 */
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.resolve(process.env.ONNX_PEER_MODULES || here, "package.json"));
const ort = require("onnxruntime-node");
const ortVersion = require("onnxruntime-node/package.json").version;

const [cmd, onnxDir, idsPath, batchArg, threadsArg] = process.argv.slice(2);
if (!cmd || !onnxDir || !idsPath) {
  console.error("usage: hf_onnx_peer.mjs embed|predict|vectors|outputs-predict ONNX_DIR IDS BATCH THREADS");
  process.exit(2);
}
const batch = Number(batchArg || 1);
const threads = Number(threadsArg || 1);
const PROMPT_ROWS = 60;   // hf_onnx_export.py's DePT m
const warmup = Number(process.env.PEER_WARMUP || batch);

const rows = readFileSync(idsPath, "utf8").split("\n").filter((l) => l.trim().length > 0)
  .map((l) => l.trim().split(/\s+/).slice(1).map(Number));

const settings = {
  executionProviders: ["cpu"],
  intraOpNumThreads: threads,
  interOpNumThreads: 1,
  graphOptimizationLevel: "all",
  executionMode: "sequential",
};
if (process.env.ONNX_PEER_OPTIMIZED) settings.optimizedModelFilePath = process.env.ONNX_PEER_OPTIMIZED;
const predictGraph = cmd === "predict" || cmd === "outputs-predict";
const t_open = process.hrtime.bigint();
const session = await ort.InferenceSession.create(
  path.join(onnxDir, predictGraph ? "predict.onnx" : "embed.onnx"), settings);
const open_ms = Number(process.hrtime.bigint() - t_open) / 1e6;

function feedsOf(part) {
  const T = Math.max(1, ...part.map((r) => r.length));
  const ids = new BigInt64Array(part.length * T);
  const mask = new BigInt64Array(part.length * T);
  part.forEach((r, i) => {
    for (let j = 0; j < r.length; j++) {
      ids[i * T + j] = BigInt(r[j]);
      mask[i * T + j] = 1n;
    }
  });
  return {
    input_ids: new ort.Tensor("int64", ids, [part.length, T]),
    attention_mask: new ort.Tensor("int64", mask, [part.length, T]),
  };
}

// stdout may be a pipe: exit once the whole line is written (console.log then
// process.exit cuts a pipe's output at 64 KiB)
function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n", () => process.exit(0));
}

function matrix(t, n) {
  const w = t.dims[1];
  const out = [];
  for (let i = 0; i < n; i++) out.push(Array.from(t.data.subarray(i * w, (i + 1) * w)));
  return out;
}

if (cmd === "vectors" || cmd === "outputs-predict") {
  const part = rows.slice(0, batch);
  const out = await session.run(feedsOf(part));
  emit(cmd === "vectors" ? matrix(out.vectors, part.length)
    : { probs: matrix(out.probs, part.length), vectors: matrix(out.vectors, part.length) });
} else {
  await bench();
}

async function bench() {
  if (cmd !== "embed" && cmd !== "predict") {
    console.error("hf_onnx_peer.mjs: unknown command " + cmd);
    process.exit(2);
  }

  const fetches = predictGraph ? ["probs"] : ["vectors"];
  const nWarm = Math.min(warmup, rows.length);
  for (let i = 0; i < nWarm; i += batch) {
    await session.run(feedsOf(rows.slice(i, Math.min(i + batch, nWarm))), fetches);
  }
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < rows.length; i += batch) {
    await session.run(feedsOf(rows.slice(i, i + batch)), fetches);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cu = process.cpuUsage(c0);
  const tokens = rows.reduce((s, r) => s + r.length, 0) + (predictGraph ? PROMPT_ROWS * rows.length : 0);
  emit({
    bench: cmd, method: predictGraph ? "dept" : "none", batch, texts: rows.length, tokens,
    seconds: Number(seconds.toFixed(4)), cpu_seconds: Number(((cu.user + cu.system) / 1e6).toFixed(4)),
    warmup_texts: nWarm,
    texts_per_second: Number((rows.length / seconds).toFixed(2)),
    tokens_per_second: Math.round(tokens / seconds),
    open_ms: Number(open_ms.toFixed(1)),
    peak_rss_kb: Math.round(process.resourceUsage().maxRSS),
    peer: "onnxruntime", runtime: "onnxruntime-node " + ortVersion + " (CPU EP), node " + process.versions.node,
    precision: "float32", threads, settings: {
      intraOpNumThreads: settings.intraOpNumThreads, interOpNumThreads: settings.interOpNumThreads,
      graphOptimizationLevel: settings.graphOptimizationLevel, executionMode: settings.executionMode,
      executionProviders: "cpu",
    },
  });
}
