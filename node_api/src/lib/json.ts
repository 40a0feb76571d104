/**
 * JSON.parse for artifact files: a file that is not JSON is an ArtifactError naming it, with the position of the
 * first error at most. V8's own message quotes the text around the error, and an error message (a log line, a
 * reload's 422 body) must never carry a file's content.
 */

import { ArtifactError } from './errors.js';

/**
 * `bytes` (UTF-8) parsed as JSON.
 * @throws ArtifactError naming `file`: not valid JSON (and where, when V8 says)
 */
export function parseJson(file: string, bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    const msg = (err as Error).message;
    const pos = /at position (\d+)/.exec(msg)?.[1];
    const where = pos !== undefined ? ` (first error at character ${pos})` : /end of JSON input/.test(msg) ? ' (it ends early)' : '';
    throw new ArtifactError(file, `not valid JSON${where}`);
  }
}
