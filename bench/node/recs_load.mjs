/**
 * Latency of the recommendation endpoints (driven by bench/recs_bench.py): keep-alive HTTP/1.1 requests from
 * this process to a loopback Node API, each route in turn for --duration seconds per round, --rounds rounds, so
 * every route and the reference routes (GET /health, GET /tracks/:id/nearest) are measured minutes apart at most
 * (this VM's speed drifts over seconds). Each request's latency is taken with process.hrtime from write to the
 * last byte of the body; p50 / p95 / p99 are exact over all rounds.
 *
 * --spec is a JSON file: {"routes": [{"name", "method": "GET"|"POST", "requests": [{"path", "body"?}, ...]}]};
 * each route cycles through its requests (the caller seeds and draws them); a route with "unique_key" gets
 * a new idempotency_key per request (its body's, numbered). A status other than the route's
 * expected one (200, or "status" in the route) counts as an error and is reported with its first body.
 *
 * Usage: node recs_load.mjs --url http://127.0.0.1:PORT --spec spec.json --duration 2 --rounds 3 --concurrency 1
 * Prints one JSON object: {routes: [{name, n, errors, first_error, p50_ms, p95_ms, p99_ms, mean_ms, rps}]}.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values: a } = parseArgs({
  options: {
    url: { type: 'string' },
    spec: { type: 'string' },
    duration: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '0.5' },
    concurrency: { type: 'string', default: '1' },
  },
});
if (!a.url || !a.url.startsWith('http://127.0.0.1:')) {
  console.error(`--url must be a loopback http://127.0.0.1:PORT URL, got ${JSON.stringify(a.url)}`);
  process.exit(2);
}
if (!a.spec) {
  console.error('--spec FILE is required');
  process.exit(2);
}
const spec = JSON.parse(readFileSync(a.spec, 'utf8'));
const rounds = Number(a.rounds);
const concurrency = Number(a.concurrency);
if (!Number.isInteger(rounds) || rounds < 1 || !Number.isInteger(concurrency) || concurrency < 1) {
  console.error(`--rounds and --concurrency must be positive integers, got ${a.rounds} and ${a.concurrency}`);
  process.exit(2);
}
const url = new URL(a.url);
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });

/** One request; resolves to [status, body, latency ms]. */
function request(method, path, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers = data ? { 'content-type': 'application/json', 'content-length': data.length } : {};
    const t0 = process.hrtime.bigint();
    const req = http.request({ host: url.hostname, port: url.port, method, path, agent, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve([res.statusCode, Buffer.concat(chunks).toString('utf8'),
        Number(process.hrtime.bigint() - t0) / 1e6]));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

/** Numbers the idempotency keys of a route with `unique_key` (every request a new event). */
let keyCounter = 0;

/** Run `route` for `seconds` with `concurrency` loops; add latencies to `acc` when given. */
async function drive(route, seconds, acc) {
  const until = performance.now() + seconds * 1000;
  const expected = route.status ?? 200;
  let next = 0;
  const loop = async () => {
    while (performance.now() < until) {
      const r = route.requests[next++ % route.requests.length];
      const body = route.unique_key ? { ...r.body, idempotency_key: `${r.body.idempotency_key}-${process.pid}-${keyCounter++}` } : r.body;
      const [status, text, ms] = await request(route.method, r.path, body);
      if (!acc) continue;
      acc.lat.push(ms);
      if (status !== expected) {
        acc.errors++;
        if (acc.firstError === null) acc.firstError = `${status} ${text.slice(0, 300)}`;
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, loop));
  if (acc) acc.seconds += (performance.now() - t0) / 1000;
}

const pct = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
const accs = spec.routes.map(() => ({ lat: [], errors: 0, firstError: null, seconds: 0 }));
for (const route of spec.routes) await drive(route, Number(a.warmup), null);
for (let i = 0; i < rounds; i++) {
  for (const [j, route] of spec.routes.entries()) await drive(route, Number(a.duration), accs[j]);
}
const out = spec.routes.map((route, j) => {
  const s = Float64Array.from(accs[j].lat).sort();
  const mean = s.reduce((x, y) => x + y, 0) / Math.max(1, s.length);
  return {
    name: route.name, n: s.length, errors: accs[j].errors, first_error: accs[j].firstError,
    p50_ms: pct(s, 0.5), p95_ms: pct(s, 0.95), p99_ms: pct(s, 0.99), mean_ms: mean,
    rps: s.length / Math.max(1e-9, accs[j].seconds),
  };
});
agent.destroy();
console.log(JSON.stringify({ concurrency, rounds, duration_s: Number(a.duration), routes: out }));
