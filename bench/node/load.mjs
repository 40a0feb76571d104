/**
 * Load generator of the Node API benchmark (driven by bench/node_bench.py): autocannon against loopback URLs for
 * bounded durations, every request's latency recorded so that p50 / p95 / p99 are exact (autocannon's own
 * summary has no p95). With --ids, each request of a path containing {id} asks for a track drawn by a seeded
 * generator from that file (one id per line).
 *
 * Several --path values are measured in alternation: --rounds rounds, each running every path for --duration
 * seconds in turn. This VM's speed drifts by up to ~1.7x over seconds (the same trivial route measured 13k and
 * 22k requests/s in consecutive runs), so a ratio between two routes is only meaningful when both were measured
 * close together: each round gives one ratio per path against the first path (the reference), and the caller
 * takes their median. Each path's latency percentiles pool all its rounds.
 *
 * Usage: node load.mjs --url http://127.0.0.1:PORT --path /health --path '/tracks/{id}/nearest?k=5'
 *                      --ids ids.txt --duration 2 --rounds 10 --connections 10 [--warmup 1] [--seed 1]
 * Prints one JSON object on stdout: {paths: [summary per path], rounds: [[requests/s per path] per round]}.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import autocannon from 'autocannon';

const { values: a } = parseArgs({
  options: {
    url: { type: 'string' },
    path: { type: 'string', multiple: true, default: ['/health'] },
    ids: { type: 'string' },
    duration: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '1' },
    warmup: { type: 'string', default: '1' },
    connections: { type: 'string', default: '10' },
    seed: { type: 'string', default: '1' },
  },
});
if (!a.url || !a.url.startsWith('http://127.0.0.1:')) {
  console.error(`--url must be a loopback http://127.0.0.1:PORT URL, got ${JSON.stringify(a.url)}`);
  process.exit(2);
}
const rounds = Number(a.rounds);
if (!Number.isInteger(rounds) || rounds < 1) {
  console.error(`--rounds must be a positive integer, got ${JSON.stringify(a.rounds)}`);
  process.exit(2);
}
const ids = a.ids ? readFileSync(a.ids, 'utf8').split('\n').filter(Boolean) : null;
if (ids && ids.length === 0) {
  console.error(`--ids file ${a.ids} holds no ids`);
  process.exit(2);
}
const needsIds = a.path.filter((p) => p.includes('{id}'));
if (needsIds.length > 0 && !ids) {
  console.error(`path ${JSON.stringify(needsIds[0])} holds {id} but no --ids file was given`);
  process.exit(2);
}
let state = (Number(a.seed) >>> 0) || 1;
function nextId() {
  // xorshift32: seeded, uniform enough for picking ids
  state ^= state << 13; state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5; state >>>= 0;
  return ids[state % ids.length];
}
const makePath = (path) => (path.includes('{id}') ? path.replace('{id}', encodeURIComponent(nextId())) : path);

/** One autocannon run of `path`; when `acc` is given, each response's latency and status are added to it. */
function run(path, duration, acc) {
  return new Promise((resolve, reject) => {
    let count = 0;
    const inst = autocannon(
      {
        url: a.url,
        connections: Number(a.connections),
        pipelining: 1,
        duration: Number(duration),
        requests: [{ setupRequest: (req) => ({ ...req, path: makePath(path) }) }],
      },
      (err, res) => (err ? reject(err) : resolve({ res, count })),
    );
    inst.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (!acc) return;
      count++;
      acc.latencies.push(responseTime);
      acc.statuses[statusCode] = (acc.statuses[statusCode] ?? 0) + 1;
    });
  });
}

function pct(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

const accs = a.path.map(() => ({ latencies: [], statuses: {}, seconds: 0, errors: 0, timeouts: 0 }));
if (Number(a.warmup) > 0) for (const path of a.path) await run(path, a.warmup, null);
const perRound = [];
for (let r = 0; r < rounds; r++) {
  const rps = [];
  for (let i = 0; i < a.path.length; i++) {
    const { res, count } = await run(a.path[i], a.duration, accs[i]);
    accs[i].seconds += res.duration;
    accs[i].errors += res.errors;
    accs[i].timeouts += res.timeouts;
    rps.push(count / res.duration);
  }
  perRound.push(rps);
}

const summaries = a.path.map((path, i) => {
  const { latencies, statuses, seconds, errors, timeouts } = accs[i];
  latencies.sort((x, y) => x - y);
  const ok = Object.entries(statuses).filter(([s]) => s.startsWith('2')).reduce((t, [, c]) => t + c, 0);
  return {
    url: a.url,
    path,
    connections: Number(a.connections),
    duration_s: Number(a.duration),
    rounds,
    requests: latencies.length,
    ok_2xx: ok,
    statuses,
    errors,
    timeouts,
    requests_per_s: latencies.length / seconds,
    latency_ms: {
      p50: pct(latencies, 50),
      p95: pct(latencies, 95),
      p99: pct(latencies, 99),
      max: latencies.at(-1) ?? null,
      mean: latencies.reduce((t, x) => t + x, 0) / Math.max(1, latencies.length),
    },
  };
});
process.stdout.write(
  JSON.stringify({ paths: summaries, rounds: perRound, autocannon_version: autocannon.version ?? null }) + '\n',
);
