#!/usr/bin/env node
/*
 * onnx_peer.mjs: the ONNX Runtime peer of bench/run -- the use-lite graphs
 * of onnx_export.py (same weights as ours) run by onnxruntime-node's CPU
 * execution provider, float32.
 *
 *   node bench/peers/onnx_peer.mjs embed   ONNX_DIR IDS BATCH THREADS   sentence vectors
 *   node bench/peers/onnx_peer.mjs predict ONNX_DIR IDS BATCH THREADS   DePT adapter + head
 *   node bench/peers/onnx_peer.mjs vectors ONNX_DIR IDS N THREADS       the first N vectors, JSON
 *   node bench/peers/onnx_peer.mjs vectors-predict ONNX_DIR IDS N THREADS
 *                                  the predict graph's encoder output for the first N
 *
 * torch_peer.py's CLI with ONNX_DIR (onnx_export.py's output) in place of
 * the weights: IDS is `dept-bench tokenize`'s output (label, then the
 * token ids of one text a line), so every engine reads the same tokens and
 * the tokenizer is outside this peer's timing, as for the PyTorch peer.
 * Each batch is padded to its longest row (ids 0 and mask 0 past the
 * text); building the input tensors is inside the timing.  One warm-up
 * batch, then every row.
 *
 * Session settings, fixed and printed with the figures: intraOpNumThreads =
 * THREADS (ours), interOpNumThreads = 1, graphOptimizationLevel 'all',
 * executionMode 'sequential', the CPU execution provider.  The package is
 * looked up from bench/peers (npm install --ignore-scripts there; see
 * bench/peers/package.json) or ONNX_PEER_MODULES.
 */
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.resolve(process.env.ONNX_PEER_MODULES || here, "package.json"));
const ort = require("onnxruntime-node");

const [cmd, onnxDir, idsPath, batchArg, threadsArg] = process.argv.slice(2);
if (!cmd || !onnxDir || !idsPath) {
  console.error("usage: onnx_peer.mjs embed|predict|vectors|vectors-predict ONNX_DIR IDS BATCH THREADS");
  process.exit(2);
}
const batch = Number(batchArg || 1);
const threads = Number(threadsArg || 1);
const PROMPT_ROWS = 60;   // onnx_export.py's DePT m

const rows = readFileSync(idsPath, "utf8").split("\n").filter((l) => l.length > 0)
  .map((l) => l.trim().split(/\s+/).slice(1).map(Number));

const settings = {
  executionProviders: ["cpu"],
  intraOpNumThreads: threads,
  interOpNumThreads: 1,
  graphOptimizationLevel: "all",
  executionMode: "sequential",
};
const predictGraph = cmd === "predict" || cmd === "vectors-predict";
const session = await ort.InferenceSession.create(
  path.join(onnxDir, predictGraph ? "use_lite_predict.onnx" : "use_lite_embed.onnx"), settings);

function feedsOf(part) {
  const T = Math.max(1, ...part.map((r) => r.length));
  const ids = new BigInt64Array(part.length * T);
  const mask = new Float32Array(part.length * T);
  part.forEach((r, i) => {
    for (let j = 0; j < r.length; j++) {
      ids[i * T + j] = BigInt(r[j]);
      mask[i * T + j] = 1;
    }
  });
  return {
    ids: new ort.Tensor("int64", ids, [part.length, T]),
    mask: new ort.Tensor("float32", mask, [part.length, T]),
  };
}

if (cmd === "vectors" || cmd === "vectors-predict") {
  const part = rows.slice(0, batch);
  const out = await session.run(feedsOf(part));
  const v = out.vectors.data;
  const res = [];
  for (let i = 0; i < part.length; i++) res.push(Array.from(v.subarray(i * 512, (i + 1) * 512)));
  console.log(JSON.stringify(res));
  process.exit(0);
}
if (cmd !== "embed" && cmd !== "predict") {
  console.error("onnx_peer.mjs: unknown command " + cmd);
  process.exit(2);
}

const fetches = predictGraph ? ["probs"] : ["vectors"];
await session.run(feedsOf(rows.slice(0, batch)), fetches);
const t0 = process.hrtime.bigint();
for (let i = 0; i < rows.length; i += batch) {
  await session.run(feedsOf(rows.slice(i, i + batch)), fetches);
}
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const tokens = rows.reduce((s, r) => s + r.length, 0) + (predictGraph ? PROMPT_ROWS * rows.length : 0);
console.log(JSON.stringify({
  bench: cmd, method: predictGraph ? "dept" : "none", batch, texts: rows.length, tokens,
  seconds: Number(seconds.toFixed(4)),
  texts_per_second: Number((rows.length / seconds).toFixed(1)),
  tokens_per_second: Math.round(tokens / seconds),
  peak_rss_kb: Math.round(process.resourceUsage().maxRSS),
  peer: "onnxruntime", runtime: "onnxruntime-node " + ort.env.versions.node + " (CPU EP)",
  precision: "float32", threads, settings: {
    intraOpNumThreads: settings.intraOpNumThreads, interOpNumThreads: settings.interOpNumThreads,
    graphOptimizationLevel: settings.graphOptimizationLevel, executionMode: settings.executionMode,
  },
}));
process.exit(0);
