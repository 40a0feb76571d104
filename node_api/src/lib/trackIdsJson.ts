/**
 * embeddings/track_ids.json parsed in one scan of its bytes: JSON.parse (with the UTF-8 decode before it) took
 * 0.3-0.5 s of the start-up at 1M ids; a scan that cuts each id out of the bytes takes about a third of that. It
 * takes only the shape Python writes: one object whose members are strings without escapes, numbers, true,
 * false, null, and `track_ids`, an array of such strings. Anything else (an escape, a control character in a
 * string, a nested value elsewhere, a repeated or `__proto__` key, bytes after the object, invalid JSON) goes
 * to JSON.parse (parseJson), so the value, or the error naming the file, is always the one JSON.parse gives.
 */

import { parseJson } from './json.js';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** A JSON number (the grammar of RFC 8259), at a position. */
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

/** Thrown inside the scan: the bytes are not of the fast shape (JSON.parse decides). */
class NotFast extends Error {}

class Scanner {
  private at = 0;
  /** the bytes as latin1: ASCII spans of it are the text of those bytes */
  private readonly text: string;

  constructor(private readonly bytes: Buffer) {
    this.text = bytes.toString('latin1');
  }

  private ws(): void {
    const b = this.bytes;
    for (;;) {
      const c = b[this.at];
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.at++;
      else return;
    }
  }

  private expect(c: number): void {
    if (this.bytes[this.at] !== c) throw new NotFast();
    this.at++;
  }

  /** A string without escapes or control characters; non-ASCII bytes are decoded as UTF-8 (as the file is). */
  private string(): string {
    const b = this.bytes;
    this.expect(QUOTE);
    const start = this.at;
    const end = b.indexOf(QUOTE, start);
    if (end < 0) throw new NotFast();
    let ascii = true;
    for (let i = start; i < end; i++) {
      const c = b[i]!;
      if (c < 0x20 || c === BACKSLASH) throw new NotFast();
      if (c >= 0x80) ascii = false;
    }
    this.at = end + 1;
    return ascii ? this.text.slice(start, end) : b.toString('utf8', start, end);
  }

  private scalar(): unknown {
    const c = this.bytes[this.at];
    if (c === QUOTE) return this.string();
    for (const [word, value] of [['true', true], ['false', false], ['null', null]] as const) {
      if (this.text.startsWith(word, this.at)) {
        this.at += word.length;
        return value;
      }
    }
    NUMBER.lastIndex = this.at;
    const m = NUMBER.exec(this.text);
    if (m === null) throw new NotFast();
    this.at += m[0].length;
    return Number(m[0]);
  }

  private stringArray(): string[] {
    const out: string[] = [];
    this.expect(0x5b);
    this.ws();
    if (this.bytes[this.at] === 0x5d) {
      this.at++;
      return out;
    }
    for (;;) {
      this.ws();
      out.push(this.string());
      this.ws();
      if (this.bytes[this.at] === 0x2c) this.at++;
      else break;
    }
    this.expect(0x5d);
    return out;
  }

  /** The whole file: one object of the fast shape, then only whitespace. */
  document(): Record<string, unknown> {
    const obj: Record<string, unknown> = {};
    this.ws();
    this.expect(0x7b);
    this.ws();
    if (this.bytes[this.at] === 0x7d) this.at++;
    else {
      for (;;) {
        this.ws();
        const key = this.string();
        if (key === '__proto__' || Object.hasOwn(obj, key)) throw new NotFast();
        this.ws();
        this.expect(0x3a);
        this.ws();
        obj[key] = key === 'track_ids' && this.bytes[this.at] === 0x5b ? this.stringArray() : this.scalar();
        this.ws();
        if (this.bytes[this.at] === 0x2c) this.at++;
        else break;
      }
      this.expect(0x7d);
    }
    this.ws();
    if (this.at !== this.bytes.length) throw new NotFast();
    return obj;
  }
}

/**
 * `bytes` (UTF-8) parsed as JSON, as parseJson parses them.
 * @throws ArtifactError naming `file`: not valid JSON (and where)
 */
export function parseTrackIdsJson(file: string, bytes: Buffer): unknown {
  try {
    return new Scanner(bytes).document();
  } catch (err) {
    if (!(err instanceof NotFast)) throw err;
    return parseJson(file, bytes);
  }
}
