/**
 * A WebAssembly SIMD kernel for the exact scan: scores of every row against one query, in float64 from the
 * float32 components. It keeps four partial sums (dims ≡ 0, 1, 2, 3 mod 4) and combines them as
 * (s0 + s1) + (s2 + s3) — the same order as `dotRow` in exact.ts, so both give bit-identical scores (the HNSW
 * re-scoring and the exact scan always agree). Used when dim is a multiple of 4 and the rows fit in wasm32
 * memory; otherwise the plain JS loop runs. The module is assembled here from its bytes (no toolchain).
 */

// @types/node 20 does not declare the WebAssembly global; the few members used here:
declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace WebAssembly {
    class Module {
      constructor(bytes: Uint8Array);
    }
    class Instance {
      constructor(module: Module, imports: object);
      readonly exports: Record<string, unknown>;
    }
    class Memory {
      readonly buffer: ArrayBuffer;
      grow(pages: number): number;
    }
  }
}

const uleb = (v: number): number[] => {
  const o: number[] = [];
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v) b |= 0x80;
    o.push(b);
  } while (v);
  return o;
};
const sleb = (v: number): number[] => {
  const o: number[] = [];
  for (;;) {
    const b = v & 0x7f;
    v >>= 7;
    if ((v === 0 && !(b & 0x40)) || (v === -1 && b & 0x40)) {
      o.push(b);
      return o;
    }
    o.push(b | 0x80);
  }
};
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, bytes: number[]): number[] => [id, ...uleb(bytes.length), ...bytes];
const name = (s: string): number[] => vec([...Buffer.from(s)].map((x) => [x]));

/** Bytes of a module exporting `memory` and `scores(emb, q, out, n, dim)` (byte offsets; dim % 4 == 0). */
function moduleBytes(): Uint8Array {
  const I32 = 0x7f;
  const V128 = 0x7b;
  const simd = (op: number): number[] => [0xfd, ...uleb(op)];
  const get = (i: number): number[] => [0x20, i];
  const set = (i: number): number[] => [0x21, i];
  const i32 = (v: number): number[] => [0x41, ...sleb(v)];
  const zero = [...simd(0x0c), ...new Array<number>(16).fill(0)]; // v128.const 0
  const load = (offset: number): number[] => [...simd(0x00), 3, offset]; // v128.load align=8
  const promoteLow = simd(0x5f); // f64x2.promote_low_f32x4
  const mul = simd(0xf2); // f64x2.mul
  const add = simd(0xf0); // f64x2.add
  const lane = (l: number): number[] => [...simd(0x21), l]; // f64x2.extract_lane
  const swapHalves = [...simd(0x0d), 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7]; // i8x16.shuffle
  // params 0 emb, 1 q, 2 out, 3 n, 4 dim; locals 5 r, 6 d, 7 ep, 8 qp (i32); 9 acc0, 10 acc1, 11 v (v128)
  const code = [
    ...vec([[4, I32], [3, V128]]),
    ...get(0), ...set(7),
    ...i32(0), ...set(5),
    0x02, 0x40, 0x03, 0x40, // block, loop over rows
    ...get(5), ...get(3), 0x4e, 0x0d, 1, // r >= n -> exit
    ...zero, ...set(9), ...zero, ...set(10),
    ...get(1), ...set(8), ...i32(0), ...set(6),
    0x02, 0x40, 0x03, 0x40, // block, loop over dims, 4 at a time
    ...get(6), ...get(4), 0x4e, 0x0d, 1, // d >= dim -> exit
    ...get(7), ...simd(0x00), 2, 0, ...set(11), // v = four float32 of the row
    ...get(9), ...get(11), ...promoteLow, ...get(8), ...load(0), ...mul, ...add, ...set(9),
    ...get(10), ...get(11), ...get(11), ...swapHalves, ...promoteLow, ...get(8), ...load(16), ...mul, ...add, ...set(10),
    ...get(7), ...i32(16), 0x6a, ...set(7),
    ...get(8), ...i32(32), 0x6a, ...set(8),
    ...get(6), ...i32(4), 0x6a, ...set(6),
    0x0c, 0, 0x0b, 0x0b,
    // out[r] = (s0 + s1) + (s2 + s3)
    ...get(2), ...get(5), ...i32(3), 0x74, 0x6a,
    ...get(9), ...lane(0), ...get(9), ...lane(1), 0xa0,
    ...get(10), ...lane(0), ...get(10), ...lane(1), 0xa0, 0xa0,
    0x39, 3, 0, // f64.store
    ...get(5), ...i32(1), 0x6a, ...set(5),
    0x0c, 0, 0x0b, 0x0b, 0x0b,
  ];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, vec([[0x60, ...vec([[I32], [I32], [I32], [I32], [I32]]), 0]])),
    ...section(3, vec([[0]])),
    ...section(5, vec([[0x00, 1]])),
    ...section(7, vec([[...name('scores'), 0x00, 0], [...name('memory'), 0x02, 0]])),
    ...section(10, vec([[...uleb(code.length), ...code]])),
  ]);
}

const PAGE = 65536;
const MAX_BYTES = 65536 * PAGE - PAGE; // wasm32 limit (4 GiB), one page of slack

/** Scores of all rows against a query, computed in wasm memory that also holds the embeddings. */
export class SimdScorer {
  private constructor(
    private readonly run: (emb: number, q: number, out: number, n: number, dim: number) => void,
    /** the embeddings, living in wasm memory (use this view instead of the original array) */
    readonly embeddings: Float32Array,
    private readonly q: Float64Array,
    private readonly out: Float64Array,
    private readonly qOff: number,
    private readonly outOff: number,
    readonly dim: number,
    readonly count: number,
  ) {}

  /**
   * Copy `emb` (count x dim) into a new wasm instance; null when SIMD is unavailable, dim % 4 != 0 or the
   * rows do not fit in wasm32 memory.
   */
  static create(emb: Float32Array, dim: number, count: number): SimdScorer | null {
    const scorer = SimdScorer.allocate(dim, count);
    scorer?.embeddings.set(emb.subarray(0, count * dim));
    return scorer;
  }

  /**
   * A new wasm instance with room for count x dim rows, all zero: the caller fills `embeddings` (the loader
   * reads the file straight into it); null when SIMD is unavailable, dim % 4 != 0 or the rows do not fit.
   */
  static allocate(dim: number, count: number): SimdScorer | null {
    if (dim % 4 !== 0 || count === 0) return null;
    const embBytes = count * dim * 4;
    const qOff = embBytes; // multiple of 16: dim % 4 == 0
    const outOff = qOff + dim * 8;
    const total = outOff + count * 8;
    if (total > MAX_BYTES) return null;
    let instance: WebAssembly.Instance;
    try {
      instance = new WebAssembly.Instance(new WebAssembly.Module(moduleBytes()), {});
    } catch {
      return null;
    }
    const memory = instance.exports.memory as WebAssembly.Memory;
    try {
      memory.grow(Math.ceil(total / PAGE) - memory.buffer.byteLength / PAGE);
    } catch {
      return null;
    }
    // views are taken after the one grow; the memory never grows again, so they stay attached
    const view = new Float32Array(memory.buffer, 0, count * dim);
    return new SimdScorer(
      instance.exports.scores as (emb: number, q: number, out: number, n: number, dim: number) => void,
      view,
      new Float64Array(memory.buffer, qOff, dim),
      new Float64Array(memory.buffer, outOff, count),
      qOff,
      outOff,
      dim,
      count,
    );
  }

  /** Scores of every row against `query`; the returned array is reused by the next call. */
  scoreAll(query: Float64Array): Float64Array {
    this.q.set(query);
    this.run(0, this.qOff, this.outOff, this.count, this.dim);
    return this.out;
  }
}
