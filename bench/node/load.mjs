/**
 * Load generator of the Node API benchmark (driven by bench/node_bench.py): autocannon against one loopback URL
 * for a bounded duration, every request's latency recorded so that p50 / p95 / p99 are exact (autocannon's own
 * summary has no p95). With --ids, each request asks for a track drawn by a seeded generator from that file
 * (one id per line) and the path template's {id} is replaced by it.
 *
 * Usage: node load.mjs --url http://127.0.0.1:PORT --path '/tracks/{id}/nearest?k=5' --ids ids.txt
 *                      --duration 10 --connections 10 [--warmup 1] [--seed 1]
 * Prints one JSON object on stdout.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import autocannon from 'autocannon';

const { values: a } = parseArgs({
  options: {
    url: { type: 'string' },
    path: { type: 'string', default: '/health' },
    ids: { type: 'string' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '1' },
    connections: { type: 'string', default: '10' },
    seed: { type: 'string', default: '1' },
  },
});
if (!a.url || !a.url.startsWith('http://127.0.0.1:')) {
  console.error(`--url must be a loopback http://127.0.0.1:PORT URL, got ${JSON.stringify(a.url)}`);
  process.exit(2);
}
const ids = a.ids ? readFileSync(a.ids, 'utf8').split('\n').filter(Boolean) : null;
if (ids && ids.length === 0) {
  console.error(`--ids file ${a.ids} holds no ids`);
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
const makePath = () => (ids ? a.path.replace('{id}', encodeURIComponent(nextId())) : a.path);

function run(duration, record) {
  return new Promise((resolve, reject) => {
    const latencies = [];
    const statuses = {};
    const inst = autocannon(
      {
        url: a.url,
        connections: Number(a.connections),
        pipelining: 1,
        duration: Number(duration),
        requests: [{ setupRequest: (req) => ({ ...req, path: makePath() }) }],
      },
      (err, res) => (err ? reject(err) : resolve({ res, latencies, statuses })),
    );
    inst.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (!record) return;
      latencies.push(responseTime);
      statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
    });
  });
}

function pct(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

if (Number(a.warmup) > 0) await run(a.warmup, false);
const { res, latencies, statuses } = await run(a.duration, true);
latencies.sort((x, y) => x - y);
const ok = Object.entries(statuses).filter(([s]) => s.startsWith('2')).reduce((t, [, c]) => t + c, 0);
process.stdout.write(
  JSON.stringify({
    url: a.url,
    path: a.path,
    connections: Number(a.connections),
    duration_s: Number(a.duration),
    requests: latencies.length,
    ok_2xx: ok,
    statuses,
    errors: res.errors,
    timeouts: res.timeouts,
    requests_per_s: latencies.length / res.duration,
    requests_per_s_autocannon_mean: res.requests.average,
    latency_ms: {
      p50: pct(latencies, 50),
      p95: pct(latencies, 95),
      p99: pct(latencies, 99),
      max: latencies.at(-1) ?? null,
      mean: latencies.reduce((t, x) => t + x, 0) / Math.max(1, latencies.length),
    },
    autocannon_version: autocannon.version ?? null,
  }) + '\n',
);
