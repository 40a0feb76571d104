/**
 * The RFC 4180 reader behind the metadata CSV (src/lib/csv.ts): equal to csv-parse (the library it replaced,
 * kept as a test-only reference) on seeded random files with quoted separators, doubled quotes, line breaks in
 * fields, non-ASCII, LF or CRLF, with and without BOM and final line break; every malformed input refused with
 * its line.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { parse } from 'csv-parse/sync';

import { CsvError, parseCsv } from '../src/lib/csv.js';
import { mulberry32 } from '../src/lib/random.js';

const PIECES = ['a', 'Bach', ' ', ',', '"', 'é', 'Dvořák', '🎻', '\n', '\r\n', '\r', '0.5', 'x y', "'", '\t'];

function field(rnd: () => number): { text: string; needsQuotes: boolean } {
  const len = Math.floor(rnd() * 5);
  let text = '';
  for (let i = 0; i < len; i++) text += PIECES[Math.floor(rnd() * PIECES.length)]!;
  return { text, needsQuotes: /[",\r\n]/.test(text) };
}

function render(rows: string[][], quoteAll: boolean, eol: string, rnd: () => number): string {
  return rows
    .map((r) =>
      r
        .map((f) => (quoteAll || /[",\r\n]/.test(f) || rnd() < 0.1 ? `"${f.replaceAll('"', '""')}"` : f))
        .join(','),
    )
    .join(eol);
}

describe('parseCsv', () => {
  it('equals csv-parse on 300 seeded random files', () => {
    const rnd = mulberry32(2024);
    for (let trial = 0; trial < 300; trial++) {
      const width = 1 + Math.floor(rnd() * 6);
      const rows = Array.from({ length: 1 + Math.floor(rnd() * 8) }, () => Array.from({ length: width }, () => field(rnd).text));
      // csv-parse reads a one-column record holding '' as an empty line; keep such files out of the comparison
      if (width === 1 && rows.some((r) => r[0] === '')) continue;
      const eol = rnd() < 0.5 ? '\n' : '\r\n';
      let text = render(rows, rnd() < 0.2, eol, rnd);
      if (rnd() < 0.5) text += eol;
      if (rnd() < 0.3) text = '\ufeff' + text;
      const want = parse(text, { bom: true, relax_column_count: false, skip_empty_lines: false }) as string[][];
      assert.deepEqual(parseCsv(text), want, `trial ${trial}: ${JSON.stringify(text)}`);
      assert.deepEqual(parseCsv(text), rows, `trial ${trial}: round trip`);
    }
  });

  it('reads the empty text as no records, and empty fields as empty strings', () => {
    assert.deepEqual(parseCsv(''), []);
    assert.deepEqual(parseCsv('\ufeff'), []);
    assert.deepEqual(parseCsv('a,,c\n,,\n'), [['a', '', 'c'], ['', '', '']]);
    assert.deepEqual(parseCsv('"",""\r\n'), [['', '']]);
  });

  it('refuses malformed input, naming the line', () => {
    const bad: Array<[string, RegExp]> = [
      ['a,b\nc,"d\ne,f\n', /^line 2: quoted field never closed$/],
      ['a,b\nc,d"e\n', /^line 2: a quote inside an unquoted field/],
      ['a,b\n"c"x,d\n', /^line 2: "x" after a closing quote \(expected ',' or a line break\)$/],
      ['a,b\n"multi\nline",d\ne\n', /^line 4: record 3 has 1 fields, the first has 2$/],
      ['a,b\n\nc,d\n', /^line 2: record 2 has 1 fields, the first has 2$/],
    ];
    for (const [text, message] of bad) {
      assert.throws(() => parseCsv(text), (err: Error) => err instanceof CsvError && message.test(err.message), JSON.stringify(text));
    }
  });
});
