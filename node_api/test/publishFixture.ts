/**
 * Drives test/fixtures/publish_server.py: local moto S3 server and/or pgserver PostgreSQL, plus the Python
 * publisher (research_job.publish), one JSON request per line. Started per test file, stopped by `close()`
 * (stdin EOF: the script stops its servers), killed if it does not exit in time.
 */

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';

import { NODE_API_ROOT } from './helpers.js';

export interface Ready {
  bucket: string;
  s3: string | null;
  pg: string | null;
}

export class PublishFixture {
  private pending: Array<{ resolve: (v: any) => void; reject: (e: Error) => void }> = [];
  private stderr = '';

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    readonly ready: Ready,
    lines: AsyncIterator<string>,
  ) {
    void (async () => {
      for (let r = await lines.next(); !r.done; r = await lines.next()) {
        const p = this.pending.shift();
        if (!p) continue;
        const obj = JSON.parse(r.value) as Record<string, unknown>;
        if (obj.error) p.reject(new Error(`publish_server.py: ${String(obj.error)}\n${String(obj.trace ?? '')}`));
        else p.resolve(obj);
      }
      for (const p of this.pending.splice(0)) p.reject(new Error(`publish_server.py exited: ${this.stderr.slice(-2000)}`));
    })();
  }

  /** Start the script (with `$PYTHON`, PYTHONPATH = repo root) and wait for its ready line (bounded). */
  static async start(opts: { s3?: boolean; pg?: boolean }, timeoutMs = 60_000): Promise<PublishFixture> {
    const python = process.env.PYTHON || 'python3';
    const repo = path.resolve(NODE_API_ROOT, '..');
    const args = [path.join(NODE_API_ROOT, 'test', 'fixtures', 'publish_server.py')];
    if (opts.s3) args.push('--s3');
    if (opts.pg) args.push('--pg');
    const child = spawn(python, args, { env: { ...process.env, PYTHONPATH: repo }, stdio: ['pipe', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const first = await lines.next();
    clearTimeout(timer);
    if (first.done) throw new Error(`publish_server.py did not start (PYTHON=${python}; it needs the /work/venv packages): ${err.slice(-3000)}`);
    const fx = new PublishFixture(child, JSON.parse(first.value) as Ready, lines);
    child.stderr.on('data', (d: Buffer) => (fx.stderr = (fx.stderr + d.toString()).slice(-5000)));
    return fx;
  }

  /** One request; resolves with the script's answer, rejects with its error. */
  request<T = any>(req: Record<string, unknown>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.child.stdin.write(JSON.stringify(req) + '\n');
    });
  }

  /** Close stdin (the script stops its servers and exits); SIGKILL after `timeoutMs`. */
  async close(timeoutMs = 20_000): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(timer);
  }
}
