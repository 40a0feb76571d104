/**
 * Read the fixed header of an hnswlib 0.8.0 index file (`HierarchicalNSW::saveIndex`). The file records
 * neither space nor dim, and the addon loads a wrong dim silently, so the loader checks the per-element data
 * size found here (4 bytes x dim for the 'ip' space) and the element count against the embeddings.
 */

export interface HnswHeader {
  maxElements: number;
  count: number;
  sizeDataPerElement: number;
  /** bytes of vector data per element = label offset - data offset */
  dataSize: number;
  maxLevel: number;
  M: number;
  maxM0: number;
  efConstruction: number;
}

/** Parse the header; returns null when the buffer is too short or inconsistent. */
export function readHnswHeader(buf: Buffer): HnswHeader | null {
  // size_t fields are 8 bytes little-endian on every platform hnswlib wheels ship for
  const need = 8 * 6 + 4 + 4 + 8 * 3 + 8 + 8;
  if (buf.length < need) return null;
  let o = 0;
  const u64 = (): number => {
    const v = Number(buf.readBigUInt64LE(o));
    o += 8;
    return v;
  };
  const offsetLevel0 = u64();
  const maxElements = u64();
  const count = u64();
  const sizeDataPerElement = u64();
  const labelOffset = u64();
  const offsetData = u64();
  const maxLevel = buf.readInt32LE(o);
  o += 4;
  o += 4; // enterpoint_node_
  const maxM = u64();
  const maxM0 = u64();
  const M = u64();
  o += 8; // mult_ (double)
  const efConstruction = u64();
  void offsetLevel0;
  void maxM;
  const dataSize = labelOffset - offsetData;
  if (dataSize <= 0 || count > maxElements) return null;
  return { maxElements, count, sizeDataPerElement, dataSize, maxLevel, M, maxM0, efConstruction };
}
