/**
 * Arithmetic in GF(2^8), the field every Reed-Solomon codec of HDFS, ISA-L and Jerasure works in.
 *
 * Addition is XOR. Multiplication goes through log/exp tables built from the primitive polynomial
 * x^8 + x^4 + x^3 + x^2 + 1 (0x11d), whose root 2 generates all 255 non-zero elements; the same
 * polynomial as ISA-L and Hadoop's GF256, so our coefficients are theirs.
 */

export const GF_PRIMITIVE_POLYNOMIAL = 0x11d;

/** GF_EXP[i] = 2^i; doubled in length so that GF_EXP[log a + log b] needs no modulo 255. */
export const GF_EXP = new Uint8Array(512);
/** GF_LOG[a] = i such that 2^i = a, for a != 0 (GF_LOG[0] is unused). */
export const GF_LOG = new Uint8Array(256);

{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    GF_EXP[i] = x;
    GF_LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= GF_PRIMITIVE_POLYNOMIAL;
  }
  for (let i = 255; i < 512; i++) GF_EXP[i] = GF_EXP[i - 255]!;
}

export function gfMul(a: number, b: number): number {
  if (a === 0 || b === 0) return 0;
  return GF_EXP[GF_LOG[a]! + GF_LOG[b]!]!;
}

export function gfInv(a: number): number {
  if (a === 0) throw new RangeError("0 has no multiplicative inverse in GF(2^8)");
  return GF_EXP[255 - GF_LOG[a]!]!;
}

export function gfDiv(a: number, b: number): number {
  return gfMul(a, gfInv(b));
}

/**
 * The full 256x256 product table, row c at [c*256, c*256+256): the reference codec multiplies a
 * whole cell by one coefficient with a single lookup per byte.
 */
export const GF_MUL_TABLE: Uint8Array = (() => {
  const table = new Uint8Array(256 * 256);
  for (let a = 0; a < 256; a++) {
    for (let b = 0; b < 256; b++) table[a * 256 + b] = gfMul(a, b);
  }
  return table;
})();

/**
 * The split-nibble tables of coefficient c (the technique of ISA-L's gf_vect_mul_init): 16 bytes
 * of c·x for the low nibble x, then 16 bytes of c·(x << 4) for the high nibble, so that
 * c·b = low[b & 15] ^ high[b >> 4]. A 16-byte table is exactly what one byte shuffle
 * (pshufb, WebAssembly's i8x16.swizzle) looks up 16 lanes at a time.
 */
export function writeNibbleTables(c: number, target: Uint8Array, offset: number): void {
  for (let x = 0; x < 16; x++) {
    target[offset + x] = gfMul(c, x);
    target[offset + 16 + x] = gfMul(c, x << 4);
  }
}
