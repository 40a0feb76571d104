/**
 * Read and bounds-check an hnswlib 0.8.0 index file (`HierarchicalNSW::saveIndex`) before the native addon
 * sees it. hnswlib trusts every offset, link and level in the file: a link pointing past the element count, an
 * entry point above the graph, or an upper-level link to an element that has no such level makes the addon
 * read outside its buffers and the process die with SIGSEGV; a large `max_elements` makes it allocate that many
 * elements. A sha256 only proves the file is the one that was recorded, so every structural fact the addon's
 * search relies on is checked here, over the same bytes the addon is then given.
 *
 * File layout (little-endian; size_t is 8 bytes on every platform the wheels ship for):
 *   header (96 bytes): offset_level0, max_elements, cur_element_count, size_data_per_element, label_offset,
 *     offset_data (size_t x 6), maxlevel (int32), enterpoint_node (uint32), maxM, maxM0, M (size_t x 3),
 *     mult (double), ef_construction (size_t)
 *   level 0, count x size_data_per_element: per element [link count (uint16) | flags (uint8) | pad (uint8)]
 *     [maxM0 x uint32 links] [dim x float32] [label (size_t)]
 *   upper levels, per element: uint32 byte size L (0: the element is on level 0 only), then L bytes =
 *     level x ([link count (uint16) | 2 bytes] [maxM x uint32 links])
 * The file records neither space nor dim; the caller passes the dim the embeddings have ('ip': 4 x dim bytes).
 */

export const HNSW_HEADER_BYTES = 96;
/** hnswlib's DELETE_MARK in the flags byte of an element's level-0 list header */
const DELETE_MARK = 0x01;
/** hnswlib draws levels as floor(-ln(u) * mult), u > 0 a double: no file it writes reaches this */
const MAX_LEVEL = 64;

export interface HnswHeader {
  maxElements: number;
  count: number;
  sizeDataPerElement: number;
  /** bytes of vector data per element = label offset - data offset */
  dataSize: number;
  /** where an element's vector and its label start (hnswlib reads both from the file) */
  offsetData: number;
  labelOffset: number;
  maxLevel: number;
  entryPoint: number;
  maxM: number;
  maxM0: number;
  M: number;
  efConstruction: number;
}

/** A structural problem of an index file: the message names the field, element or link and its bound. */
export class HnswFormatError extends Error {
  override readonly name = 'HnswFormatError';
}

/**
 * Parse the header; returns null when the buffer is too short or a size field is beyond 2^53 (no real file).
 */
export function readHnswHeader(buf: Buffer): HnswHeader | null {
  if (buf.length < HNSW_HEADER_BYTES) return null;
  let o = 0;
  let unsafe = false;
  const u64 = (): number => {
    const v = buf.readBigUInt64LE(o);
    o += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) unsafe = true;
    return Number(v);
  };
  const offsetLevel0 = u64();
  const maxElements = u64();
  const count = u64();
  const sizeDataPerElement = u64();
  const labelOffset = u64();
  const offsetData = u64();
  const maxLevel = buf.readInt32LE(o);
  const entryPoint = buf.readUInt32LE(o + 4);
  o += 8;
  const maxM = u64();
  const maxM0 = u64();
  const M = u64();
  o += 8; // mult_ (double): used only when inserting
  const efConstruction = u64();
  if (unsafe || offsetLevel0 !== 0) return null;
  const dataSize = labelOffset - offsetData;
  return { maxElements, count, sizeDataPerElement, dataSize, offsetData, labelOffset, maxLevel, entryPoint, maxM, maxM0, M, efConstruction };
}

/**
 * Check that `buf` is an hnswlib index of exactly `n` elements of dimension `dim` ('ip' space) that the addon
 * can load and search without reading outside its buffers: the header's sizes agree with each other, with dim
 * and with the file length; `max_elements` equals the count (as the research job writes it); every link of
 * every level names an element that exists and has that level; link counts fit their lists; the entry point
 * exists and sits on the top level; no element is marked deleted; the labels are the row indices 0..n-1.
 * @returns the header
 * @throws HnswFormatError naming the first problem (never file content beyond the numbers checked)
 */
export function checkHnswFile(buf: Buffer, n: number, dim: number): HnswHeader {
  const h = readHnswHeader(buf);
  if (!h) throw new HnswFormatError(`is not an hnswlib index (header of ${HNSW_HEADER_BYTES} bytes unreadable or out of range)`);
  checkHeader(h, n, dim);
  const sizeLinks0 = 4 + 4 * h.maxM0;
  const sizeLinks = 4 + 4 * h.maxM;
  const level0Bytes = h.count * h.sizeDataPerElement;
  if (HNSW_HEADER_BYTES + level0Bytes > buf.length) {
    throw new HnswFormatError(`is ${buf.length} bytes, shorter than its header and ${h.count} level-0 elements of ${h.sizeDataPerElement} bytes`);
  }
  // upper-level lists: sizes give each element's level; their offsets are kept for the link pass
  const levels = new Uint8Array(h.count);
  const upperAt = new Float64Array(h.count);
  let o = HNSW_HEADER_BYTES + level0Bytes;
  for (let i = 0; i < h.count; i++) {
    if (o + 4 > buf.length) throw new HnswFormatError(`ends inside the upper-level list size of element ${i}`);
    const size = buf.readUInt32LE(o);
    o += 4;
    if (size % sizeLinks !== 0) throw new HnswFormatError(`element ${i} has upper-level lists of ${size} bytes, not a multiple of ${sizeLinks} (4 + 4 x maxM ${h.maxM})`);
    const level = size / sizeLinks;
    if (level > h.maxLevel) throw new HnswFormatError(`element ${i} has level ${level}, above the index's maxlevel ${h.maxLevel}`);
    if (o + size > buf.length) throw new HnswFormatError(`ends inside the upper-level lists of element ${i}`);
    levels[i] = level;
    upperAt[i] = o;
    o += size;
  }
  if (o !== buf.length) throw new HnswFormatError(`has ${buf.length - o} bytes after the last element's lists`);
  if (h.count > 0 && levels[h.entryPoint]! !== h.maxLevel) {
    throw new HnswFormatError(`entry point ${h.entryPoint} has level ${levels[h.entryPoint]}, but the search starts at maxlevel ${h.maxLevel}`);
  }
  checkLevel0(buf, h, n, sizeLinks0);
  checkUpperLevels(buf, h, levels, upperAt, sizeLinks);
  return h;
}

function checkHeader(h: HnswHeader, n: number, dim: number): void {
  if (h.count !== n) throw new HnswFormatError(`holds ${h.count} elements, expected ${n}`);
  if (h.maxElements !== h.count) throw new HnswFormatError(`has max_elements ${h.maxElements}, expected its element count ${h.count} (the research job writes a full index)`);
  if (h.M < 1 || h.maxM !== h.M || h.maxM0 < h.M || h.maxM0 > 0xffff) {
    throw new HnswFormatError(`has M ${h.M}, maxM ${h.maxM}, maxM0 ${h.maxM0}; expected M >= 1, maxM = M and M <= maxM0 <= 65535`);
  }
  const sizeLinks0 = 4 + 4 * h.maxM0;
  const labelOffset = sizeLinks0 + h.dataSize;
  if (h.dataSize !== dim * 4) throw new HnswFormatError(`stores ${h.dataSize} bytes per vector (dim ${h.dataSize / 4}), expected dim ${dim}`);
  // hnswlib reads vectors and labels at these offsets from the file: each must sit where the layout puts it
  if (h.offsetData !== sizeLinks0 || h.labelOffset !== labelOffset) {
    throw new HnswFormatError(`has offset_data ${h.offsetData} and label_offset ${h.labelOffset}, expected ${sizeLinks0} and ${labelOffset} (links 4 + 4 x ${h.maxM0}, then the vector)`);
  }
  if (h.sizeDataPerElement !== labelOffset + 8) {
    throw new HnswFormatError(`has ${h.sizeDataPerElement} bytes per element, expected ${labelOffset + 8} (links 4 + 4 x ${h.maxM0}, vector ${h.dataSize}, label 8)`);
  }
  if (h.maxLevel < 0 || h.maxLevel > MAX_LEVEL) throw new HnswFormatError(`has maxlevel ${h.maxLevel}, outside [0, ${MAX_LEVEL}]`);
  if (h.count > 0 && h.entryPoint >= h.count) throw new HnswFormatError(`has entry point ${h.entryPoint}, outside [0, ${h.count})`);
}

/** Level-0 list of every element (count, links, delete mark) and its label (a permutation of 0..n-1). */
function checkLevel0(buf: Buffer, h: HnswHeader, n: number, sizeLinks0: number): void {
  const seenLabel = new Uint8Array(n);
  const labelAt = h.labelOffset;
  for (let i = 0; i < h.count; i++) {
    const base = HNSW_HEADER_BYTES + i * h.sizeDataPerElement;
    const links = buf.readUInt16LE(base);
    if (buf[base + 2]! & DELETE_MARK) throw new HnswFormatError(`element ${i} is marked deleted (the research job never deletes)`);
    if (links > h.maxM0) throw new HnswFormatError(`element ${i} lists ${links} links at level 0, more than maxM0 ${h.maxM0}`);
    for (let j = 0; j < links; j++) {
      const to = buf.readUInt32LE(base + 4 + 4 * j);
      if (to >= h.count) throw new HnswFormatError(`element ${i} links to ${to} at level 0, outside [0, ${h.count})`);
    }
    const lo = buf.readUInt32LE(base + labelAt);
    const hi = buf.readUInt32LE(base + labelAt + 4);
    if (hi !== 0 || lo >= n) throw new HnswFormatError(`element ${i} has label ${hi * 2 ** 32 + lo}, outside the row indices [0, ${n})`);
    if (seenLabel[lo]) throw new HnswFormatError(`label ${lo} appears twice (element ${i}); labels must be the row indices 0..${n - 1}`);
    seenLabel[lo] = 1;
  }
}

/** Every upper-level list: its link count fits maxM, every link exists and has at least that level. */
function checkUpperLevels(buf: Buffer, h: HnswHeader, levels: Uint8Array, upperAt: Float64Array, sizeLinks: number): void {
  for (let i = 0; i < h.count; i++) {
    for (let level = 1; level <= levels[i]!; level++) {
      const base = upperAt[i]! + (level - 1) * sizeLinks;
      const links = buf.readUInt16LE(base);
      if (links > h.maxM) throw new HnswFormatError(`element ${i} lists ${links} links at level ${level}, more than maxM ${h.maxM}`);
      for (let j = 0; j < links; j++) {
        const to = buf.readUInt32LE(base + 4 + 4 * j);
        if (to >= h.count) throw new HnswFormatError(`element ${i} links to ${to} at level ${level}, outside [0, ${h.count})`);
        if (levels[to]! < level) throw new HnswFormatError(`element ${i} links to ${to} at level ${level}, but element ${to} has level ${levels[to]}`);
      }
    }
  }
}
