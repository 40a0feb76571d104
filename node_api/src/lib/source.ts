/**
 * Where artifacts come from. `ArtifactSource` is the small interface the loader reads through; `LocalDirSource`
 * reads a version folder on disk. The S3 source (`s3source.ts`) downloads and verifies a release into a
 * local cache folder first and then reads it as a local folder.
 */

import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

import { ArtifactError } from './errors.js';
import type { ArtifactFile } from './layout.js';

/** Read access to one artifact version, by fixed relative file name only. */
export interface ArtifactSource {
  /** Human-readable location, for logs and error messages. */
  readonly description: string;
  /** The S3 release this source holds (verified against its manifest), absent for a plain local folder. */
  readonly release?: { release: string; contentSha256: string };
  /** Whole file contents; raises ArtifactError naming the file when it is missing or unreadable. */
  read(file: ArtifactFile): Promise<Buffer>;
  /** Whether the file exists (optional artifacts such as the HNSW index). */
  exists(file: ArtifactFile): Promise<boolean>;
  /** A local file path holding the file's bytes (for native readers that want a path). */
  localPath(file: ArtifactFile): Promise<string>;
}

/** An artifact version folder on the local file system. */
export class LocalDirSource implements ArtifactSource {
  readonly description: string;

  constructor(readonly dir: string) {
    this.dir = path.resolve(dir);
    this.description = `local dir ${this.dir}`;
  }

  private full(file: ArtifactFile): string {
    return path.join(this.dir, file);
  }

  async read(file: ArtifactFile): Promise<Buffer> {
    try {
      return await readFile(this.full(file));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new ArtifactError(file, code === 'ENOENT' ? `missing (looked in ${this.dir})` : `unreadable (${code})`);
    }
  }

  async exists(file: ArtifactFile): Promise<boolean> {
    try {
      await access(this.full(file), constants.R_OK);
      return (await stat(this.full(file))).isFile();
    } catch {
      return false;
    }
  }

  async localPath(file: ArtifactFile): Promise<string> {
    if (!(await this.exists(file))) throw new ArtifactError(file, `missing (looked in ${this.dir})`);
    return this.full(file);
  }
}
