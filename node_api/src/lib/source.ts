/**
 * Where artifacts come from. `ArtifactSource` is the small interface the loader reads through; `LocalDirSource`
 * reads a version folder on disk. The S3 source (`s3source.ts`) downloads and verifies a release into a
 * local cache folder first and then reads it as a local folder.
 *
 * A version folder is untrusted input: `LocalDirSource` reads only regular files whose real path (links
 * resolved) lies inside the folder, opens them without following a final link and without blocking (a FIFO
 * never hangs the load), checks the size against the caller's limit before reading a byte (`/dev/zero` or a
 * huge file is refused, not read), reads in parts (files above 2 GiB), and its errors name the file and the
 * reason, never the folder's absolute path nor any of the file's content.
 */

import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, realpath, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

import { ArtifactError } from './errors.js';
import type { ArtifactFile } from './layout.js';

/**
 * How many bytes a read may return: exactly `exactBytes` (what the metadata says), or at most `maxBytes`;
 * `why` says where the figure comes from, for the error. `transient`: a read at request time (a preview),
 * which `localPath` never asks about, so the source keeps no record of it.
 */
export type ReadLimit = ({ readonly exactBytes: number } | { readonly maxBytes: number }) & { readonly why?: string; readonly transient?: boolean };

/**
 * The cap of a read without a limit (JSON sidecars, the CSV): larger files are refused unread. It is V8's
 * longest string (2^29 - 24 UTF-16 units; a UTF-8 file of that many bytes decodes to no more), since those
 * files are parsed as text.
 */
export const DEFAULT_MAX_BYTES = 2 ** 29 - 24;

/** Read access to one artifact version, by fixed relative file name only. */
export interface ArtifactSource {
  /** Human-readable location, for logs (not for responses: it may hold a local path). */
  readonly description: string;
  /** The S3 release this source holds (verified against its manifest), absent for a plain local folder. */
  readonly release?: { release: string; contentSha256: string };
  /**
   * Whole file contents, within `limit` (default: at most DEFAULT_MAX_BYTES); raises ArtifactError naming the
   * file when it is missing, not a regular file inside the folder, of the wrong size, or unreadable.
   */
  read(file: ArtifactFile, limit?: ReadLimit): Promise<Buffer>;
  /**
   * Read the whole file into `target` (exactly `target.length` bytes, checked before a byte is read): one read
   * pass straight into memory the caller owns (the embeddings into the SIMD kernel's wasm memory, no copy).
   * `onChunk(start, end)`, when given, is called for each part as it lands, in order, while the next part is
   * being read: the caller hashes and checks the bytes it has while the disk (or page cache) delivers the rest.
   * Sources without it are read with `read` and copied.
   */
  readInto?(file: ArtifactFile, target: Uint8Array, why?: string, onChunk?: ChunkHandler): Promise<void>;
  /**
   * The sha256 (hex) of the file, checked as `read` checks, read in parts through one small buffer: for a file
   * only its digest is needed of (a staleness guard), without holding it in memory. Sources without it are read
   * with `read` and hashed.
   */
  sha256?(file: ArtifactFile, limit?: ReadLimit): Promise<string>;
  /** Whether something exists at the file's path (a file `read` would refuse still exists: it is then refused, not skipped). */
  exists(file: ArtifactFile): Promise<boolean>;
  /**
   * A local file path holding the file's bytes (for native readers that want a path), checked as `read`
   * checks and, after a `read` of the same file, still the same file (device, inode, size, mtime).
   */
  localPath(file: ArtifactFile): Promise<string>;
}

/** Bytes per read call: well under the 2 GiB a single read may return. */
const READ_CHUNK = 64 << 20;

/**
 * Bytes per read call when the caller consumes parts as they land (`readInto`'s `onChunk`): small enough that the
 * last part, consumed after the read ends, is a small share of the file, large enough to keep the calls few.
 */
const PIPELINE_CHUNK = 8 << 20;

/** Called with the byte range `[start, end)` of the target that has just been read (see `readInto`). */
export type ChunkHandler = (start: number, end: number) => void;

/** Bytes per read of `sha256`: the one buffer it reads through. */
const HASH_CHUNK = 4 << 20;

/** Identity of an opened file, to tell whether the path still names it. */
interface FileIdentity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

function sameFile(a: FileIdentity, b: FileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;
}

function describeLimit(limit: ReadLimit): string {
  const why = limit.why ? ` (${limit.why})` : '';
  return 'exactBytes' in limit ? `${limit.exactBytes} bytes${why}` : `at most ${limit.maxBytes} bytes${why}`;
}

/** An artifact version folder on the local file system. */
export class LocalDirSource implements ArtifactSource {
  readonly description: string;
  /** what each `read` opened, for `localPath` to check that the path still names it */
  private readonly opened = new Map<string, FileIdentity>();
  private realDir: string | null = null;

  constructor(readonly dir: string) {
    this.dir = path.resolve(dir);
    this.description = `local dir ${this.dir}`;
  }

  private full(file: ArtifactFile): string {
    return path.join(this.dir, file);
  }

  /**
   * The real path of `file`, refused unless it is inside the (real) folder.
   * @throws ArtifactError: missing, a link out of the folder, or unresolvable
   */
  private async resolve(file: ArtifactFile): Promise<string> {
    let real: string;
    try {
      this.realDir ??= await realpath(this.dir);
      real = await realpath(this.full(file));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new ArtifactError(file, code === 'ENOENT' ? 'missing from the version folder' : `unreadable (${code})`);
    }
    const rel = path.relative(this.realDir, real);
    if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) {
      throw new ArtifactError(file, 'is a link to a path outside the version folder (only files inside it are read)');
    }
    return real;
  }

  async read(file: ArtifactFile, limit: ReadLimit = { maxBytes: DEFAULT_MAX_BYTES }): Promise<Buffer> {
    return (await this.readFile(file, limit, null)) as Buffer;
  }

  async readInto(file: ArtifactFile, target: Uint8Array, why?: string, onChunk?: ChunkHandler): Promise<void> {
    await this.readFile(file, { exactBytes: target.length, ...(why === undefined ? {} : { why }) }, target, onChunk);
  }

  async sha256(file: ArtifactFile, limit: ReadLimit = { maxBytes: DEFAULT_MAX_BYTES }): Promise<string> {
    const hash = createHash('sha256');
    const chunk = Buffer.allocUnsafe(HASH_CHUNK);
    await this.withFile(file, limit, async (fh, size) => {
      let at = 0;
      while (at < size) {
        const { bytesRead } = await fh.read(chunk, 0, Math.min(HASH_CHUNK, size - at), at);
        if (bytesRead === 0) throw new ArtifactError(file, `ended after ${at} of ${size} bytes (changed while reading)`);
        hash.update(chunk.subarray(0, bytesRead));
        at += bytesRead;
      }
    });
    return hash.digest('hex');
  }

  /**
   * `read`, into `into` when given (its length is then the exact size allowed). With `onChunk`, part k + 1 is
   * requested before `onChunk` sees part k, so the consumer's work overlaps the read.
   */
  private async readFile(file: ArtifactFile, limit: ReadLimit, into: Uint8Array | null, onChunk?: ChunkHandler): Promise<Uint8Array> {
    return this.withFile(file, limit, async (fh, size) => {
      let buf: Uint8Array;
      try {
        buf = into ?? Buffer.allocUnsafe(size);
      } catch {
        throw new ArtifactError(file, `is ${size} bytes, more than this process can hold in memory; not read`);
      }
      const step = onChunk ? PIPELINE_CHUNK : READ_CHUNK;
      const readAt = (at: number) => fh.read(buf, at, Math.min(step, size - at), at);
      let at = 0;
      let pending = size > 0 ? readAt(0) : null;
      while (pending !== null) {
        const { bytesRead } = await pending;
        if (bytesRead === 0) throw new ArtifactError(file, `ended after ${at} of ${size} bytes (changed while reading)`);
        const start = at;
        at += bytesRead;
        pending = at < size ? readAt(at) : null;
        try {
          onChunk?.(start, at);
        } catch (err) {
          // let the read in flight settle before the file is closed (withFile closes it)
          await pending?.catch(() => undefined);
          throw err;
        }
      }
      return buf;
    });
  }

  /** `consume` the file opened and checked (a regular file inside the folder, its size within `limit`). */
  private async withFile<T>(file: ArtifactFile, limit: ReadLimit, consume: (fh: FileHandle, size: number) => Promise<T>): Promise<T> {
    const real = await this.resolve(file);
    let fh;
    try {
      // O_NONBLOCK: opening a FIFO returns at once (and fstat refuses it) instead of waiting for a writer
      fh = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      throw new ArtifactError(file, `unreadable (${(err as NodeJS.ErrnoException).code})`);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new ArtifactError(file, `is not a regular file (${kindOf(st)}); only regular files are read`);
      const ok = 'exactBytes' in limit ? st.size === limit.exactBytes : st.size <= limit.maxBytes;
      if (!ok) throw new ArtifactError(file, `is ${st.size} bytes, expected ${describeLimit(limit)}; not read`);
      const out = await consume(fh, st.size);
      if (!limit.transient) this.opened.set(file, { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs });
      return out;
    } catch (err) {
      if (err instanceof ArtifactError) throw err;
      throw new ArtifactError(file, `unreadable (${(err as NodeJS.ErrnoException).code ?? (err as Error).name})`);
    } finally {
      await fh.close();
    }
  }

  async exists(file: ArtifactFile): Promise<boolean> {
    try {
      await lstat(this.full(file));
      return true;
    } catch {
      return false;
    }
  }

  async localPath(file: ArtifactFile): Promise<string> {
    const real = await this.resolve(file);
    const st = await lstat(real).catch((err: NodeJS.ErrnoException) => {
      throw new ArtifactError(file, `unreadable (${err.code})`);
    });
    if (!st.isFile()) throw new ArtifactError(file, `is not a regular file (${kindOf(st)}); only regular files are read`);
    const before = this.opened.get(file);
    if (before && !sameFile(before, { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs })) {
      throw new ArtifactError(file, 'changed between its checks and its use (replaced or rewritten while loading)');
    }
    return real;
  }
}

function kindOf(st: Awaited<ReturnType<typeof stat>>): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}
