/**
 * In-process micro-benchmark of the /nearest request path (no HTTP): load one artifact folder, then time
 * `nearestToRow` on a seeded sample of tracks and report microseconds per call. Also prints the loader's
 * phases (start-up cost, e.g. of the recall measurement).
 *
 * Usage: node dist/scripts/bench_nearest.js DIR [--calls 2000] [--k 5] [--album] [--repeat 3]
 * The loader options come from the usual environment (VECTOR_BACKEND, HNSW_EF, RECALL_SAMPLE, NEIGHBORS_TABLE, ...).
 */

import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadArtifacts } from '../src/lib/loader.js';
import { sampleRows } from '../src/lib/random.js';
import { SchemaRegistry } from '../src/lib/schemas.js';
import { nearestToRow } from '../src/lib/search.js';
import { LocalDirSource } from '../src/lib/source.js';
import { loadConfig } from '../src/plugins/env.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

async function main(): Promise<void> {
  const dir = process.argv[2];
  if (!dir) throw new Error('usage: bench_nearest.js DIR [--calls N] [--k K] [--album] [--repeat R]');
  const calls = Number(arg('calls', '2000'));
  const k = Number(arg('k', '5'));
  const repeat = Number(arg('repeat', '3'));
  const album = process.argv.includes('--album');
  const schemaDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'artifact_schema');
  const cfg = loadConfig({ ARTIFACT_SCHEMA_DIR: schemaDir, ...process.env, ARTIFACTS_DIR: dir });
  const phases: Record<string, unknown>[] = [];
  const state = await loadArtifacts(new LocalDirSource(dir), new SchemaRegistry(cfg.artifactSchemaDir), {
    backend: cfg.vectorBackend,
    hnswEf: cfg.hnswEf,
    hnswEfMax: cfg.hnswEfMax,
    recallSample: cfg.recallSample,
    recallTarget: cfg.recallTarget,
    neighborsTable: cfg.neighborsTable,
    log: (msg, fields) => phases.push({ msg, ...fields }),
  });
  for (const p of phases) console.log(JSON.stringify(p));
  console.log(JSON.stringify({ load_sec: state.loadSec, backend: state.backend.describe(), recall: state.recall }));
  const rows = sampleRows(state.count, Math.min(calls, state.count), 42);
  const opts = { excludeSameAlbum: album, composer: null };
  let method = '';
  for (let i = 0; i < Math.min(200, rows.length); i++) method = (await nearestToRow(state, rows[i]!, k, opts)).method; // warm-up
  for (let r = 0; r < repeat; r++) {
    const t0 = performance.now();
    for (const row of rows) await nearestToRow(state, row, k, opts);
    const us = ((performance.now() - t0) * 1000) / rows.length;
    console.log(JSON.stringify({ run: r, calls: rows.length, k, exclude_same_album: album, method, us_per_call: Number(us.toFixed(1)) }));
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
