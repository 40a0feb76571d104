/**
 * The audio previews of a loaded version (previews/previews.json and its `previews/<name>.ogg` files). The
 * JSON is read and checked at load (`PreviewStore.fromFile`): every entry names a catalogue track once, a file
 * of the listed previews folder with a safe name, its size (at most MAX_PREVIEW_BYTES) and sha256. The audio
 * is not read at load (a catalogue may have a million previews): `bytes` reads one file when it is asked for,
 * through the version's source, refusing it unless it has exactly the recorded size (checked before a byte is
 * read) and sha256; verified files are kept in a small least-recently-used cache (CACHE_BYTES), since a player
 * asks for one file in several ranges.
 */

import { createHash } from 'node:crypto';

import { ArtifactError, HttpError } from './errors.js';
import { fileInFolder, type ArtifactFile } from './layout.js';
import type { ArtifactSource } from './source.js';
import type { PreviewsFile } from './types.js';

/** Largest preview file (previews.schema.json's size_bytes maximum; the research job refuses larger ones). */
export const MAX_PREVIEW_BYTES = 4 * 1024 * 1024;
/** The only media type served (the schema's mime_type). */
export const PREVIEW_MIME_TYPE = 'audio/ogg';
/** Bytes of verified previews kept in memory. */
const CACHE_BYTES = 32 * 1024 * 1024;

/** One track's preview. */
export interface PreviewEntry {
  readonly trackId: string;
  readonly file: ArtifactFile;
  readonly sizeBytes: number;
  readonly sha256: string;
  /** the strong entity tag of the file: a quoted prefix of its sha256 */
  readonly etag: string;
  readonly startSec: number;
  readonly durationSec: number;
}

/** Where the previews of a version are: the JSON's path and the listed folder. */
export interface PreviewPaths {
  readonly json: ArtifactFile;
  readonly dir: ArtifactFile;
}

/** The previews of one loaded version; `bytes` reads a file on request. */
export class PreviewStore {
  private readonly cache = new Map<number, Buffer>();
  private cached = 0;

  private constructor(
    private readonly source: ArtifactSource,
    private readonly paths: PreviewPaths,
    private readonly byRow: ReadonlyArray<PreviewEntry | undefined>,
    /** previews listed (tracks that have one) */
    readonly count: number,
    /** rows previews.json records as failed (its `failed` list, catalogue tracks only) */
    private readonly failedRows: ReadonlySet<number>,
  ) {}

  /**
   * The previews of a schema-valid previews.json, by catalogue row.
   * @throws ArtifactError naming previews.json: another artifact_version or media type, a track id that is not
   *   in the catalogue or repeats, a file outside the previews folder or not a safe `.ogg` name, a file two
   *   tracks share, a size over MAX_PREVIEW_BYTES
   */
  static fromFile(source: ArtifactSource, paths: PreviewPaths, obj: PreviewsFile, artifactVersion: string, rowById: ReadonlyMap<string, number>): PreviewStore {
    const bad = (detail: string) => new ArtifactError(paths.json, detail);
    if (obj.artifact_version !== artifactVersion) throw bad(`artifact_version is '${obj.artifact_version}' but the embeddings are of '${artifactVersion}'`);
    if (obj.mime_type !== PREVIEW_MIME_TYPE) throw bad(`mime_type is '${obj.mime_type}'; the API serves '${PREVIEW_MIME_TYPE}' only`);
    const byRow: Array<PreviewEntry | undefined> = new Array(rowById.size);
    const files = new Set<string>();
    obj.tracks.forEach((t, i) => {
      const row = rowById.get(t.track_id);
      if (row === undefined) throw bad(`tracks[${i}]: track id ${JSON.stringify(t.track_id)} is not in the catalogue (track_ids.json)`);
      if (byRow[row]) throw bad(`tracks[${i}]: track id ${JSON.stringify(t.track_id)} has a second preview`);
      const name = t.file.startsWith(paths.dir) ? t.file.slice(paths.dir.length) : null;
      const file = name !== null && name.endsWith('.ogg') ? fileInFolder(paths.dir, name) : null;
      if (file === null) throw bad(`tracks[${i}] (${JSON.stringify(t.track_id)}): file ${JSON.stringify(t.file)} is not a '${paths.dir}<name>.ogg' with a safe name`);
      if (files.has(file)) throw bad(`tracks[${i}] (${JSON.stringify(t.track_id)}): file '${file}' is another track's preview too`);
      if (t.size_bytes > MAX_PREVIEW_BYTES) throw bad(`tracks[${i}] (${JSON.stringify(t.track_id)}): size_bytes ${t.size_bytes} is over the ${MAX_PREVIEW_BYTES} served`);
      files.add(file);
      byRow[row] = Object.freeze({
        trackId: t.track_id,
        file,
        sizeBytes: t.size_bytes,
        sha256: t.sha256,
        etag: `"${t.sha256.slice(0, 32)}"`,
        startSec: t.start_sec,
        durationSec: t.duration_sec,
      });
    });
    const failed = new Set<number>();
    for (const f of obj.failed) {
      const row = rowById.get(f.track_id);
      if (row !== undefined && !byRow[row]) failed.add(row);
    }
    return new PreviewStore(source, paths, byRow, files.size, failed);
  }

  /** The preview of catalogue row `row`, if it has one. */
  entry(row: number): PreviewEntry | undefined {
    return this.byRow[row];
  }

  /** Tracks previews.json records as failed (no preview). */
  get failed(): number {
    return this.failedRows.size;
  }

  /**
   * Why row `row` has no preview: previews.json records it as failed, or lists none. (The recorded reason is
   * not repeated: it may name the research job's local files.)
   */
  whyNone(row: number): string {
    return this.failedRows.has(row) ? `${this.paths.json} records its preview as failed (see its 'failed' list)` : `${this.paths.json} lists no preview of it`;
  }

  /**
   * The bytes of `entry`'s file (of row `row`), verified.
   * @throws HttpError 404 when the listed file is missing from the version folder; 500 when it is not the file
   *   previews.json records (size, sha256) or cannot be read; both name the track and the file, never a server path
   */
  async bytes(row: number, entry: PreviewEntry): Promise<Buffer> {
    const hit = this.cache.get(row);
    if (hit) {
      this.cache.delete(row);
      this.cache.set(row, hit);
      return hit;
    }
    let buf: Buffer;
    try {
      buf = await this.source.read(entry.file, { exactBytes: entry.sizeBytes, why: `size_bytes in ${this.paths.json}`, transient: true });
    } catch (err) {
      if (!(err instanceof ArtifactError)) throw err;
      const missing = !(await this.source.exists(entry.file));
      throw new HttpError(missing ? 404 : 500, `The preview of track '${entry.trackId}' cannot be served: ${err.message}${missing ? ` (listed in ${this.paths.json})` : ''}`);
    }
    const sha = createHash('sha256').update(buf).digest('hex');
    if (sha !== entry.sha256) {
      throw new HttpError(500, `The preview of track '${entry.trackId}' cannot be served: ${entry.file}: sha256 is ${sha} but ${this.paths.json} records ${entry.sha256}`);
    }
    this.remember(row, buf);
    return buf;
  }

  private remember(row: number, buf: Buffer): void {
    if (buf.length > CACHE_BYTES / 4) return;
    const old = this.cache.get(row);
    if (old) this.cached -= old.length;
    this.cache.delete(row);
    this.cache.set(row, buf);
    this.cached += buf.length;
    for (const [r, b] of this.cache) {
      if (this.cached <= CACHE_BYTES) break;
      this.cache.delete(r);
      this.cached -= b.length;
    }
  }
}
