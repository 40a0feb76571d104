/** Seeded pseudo-random numbers (mulberry32) for reproducible samples, e.g. the start-up recall sample. */

/** A generator of floats in [0, 1) from a 32-bit seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `m` distinct integers of [0, n), ascending, drawn with a seeded partial Fisher-Yates shuffle. */
export function sampleRows(n: number, m: number, seed: number): number[] {
  const rnd = mulberry32(seed);
  const take = Math.min(m, n);
  const pool = new Int32Array(n);
  for (let i = 0; i < n; i++) pool[i] = i;
  for (let i = 0; i < take; i++) {
    const j = i + Math.floor(rnd() * (n - i));
    const t = pool[i]!;
    pool[i] = pool[j]!;
    pool[j] = t;
  }
  return Array.from(pool.subarray(0, take)).sort((a, b) => a - b);
}
