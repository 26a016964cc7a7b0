/**
 * pgvector's binary wire format for halfvec, so vectors travel to PostgreSQL and PGlite as 2 bytes per
 * dimension instead of about 11 characters of decimal text that the server must parse. Measured on
 * PGlite (WASM) at 2048-d: parsing the text literal costs about 1.7 ms per vector, more than the rest
 * of the insert; the binary form is copied as is (about 0.3 ms per row all told, see README
 * "Benchmarks"). Both drivers send a Buffer parameter in binary format (node-postgres natively,
 * PGlite through PgliteSqlClient), and the server decodes it with halfvec_recv.
 *
 * Layout (pgvector src/halfvec.c, halfvec_recv): int16 dim, int16 unused (0), then dim IEEE 754
 * binary16 values, all big-endian.
 */

/** binary16 infinity (sign bit masked off): pgvector refuses values that round to it. */
const HALF_INFINITY = 0x7c00;

const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);

/**
 * The binary16 bit pattern nearest to a float32 value, ties to even: the same rounding pgvector
 * applies when it parses a text literal into a halfvec (so both paths store identical bits).
 * Values past binary16's range round to infinity (refused by encodeHalfvec).
 */
export function toHalfBits(value: number): number {
  scratch[0] = value;
  const bits = scratchBits[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = ((bits >>> 23) & 0xff) - 127 + 15;
  let mantissa = bits & 0x7fffff;
  // Infinity, NaN and anything too large for binary16 (callers refuse these).
  if (exponent >= 31) return sign | HALF_INFINITY | (Number.isNaN(value) ? 0x200 : 0);
  if (exponent <= 0) {
    // Subnormal in binary16 (or zero): shift the implicit leading 1 into the 10-bit mantissa.
    if (exponent < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - exponent;
    let half = mantissa >>> shift;
    const rest = mantissa & ((1 << shift) - 1);
    const midpoint = 1 << (shift - 1);
    if (rest > midpoint || (rest === midpoint && (half & 1) === 1)) half++;
    return sign | half;
  }
  // Rounding may carry into the exponent; that is still the correct nearest value.
  let half = (exponent << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half++;
  return sign | half;
}

function writeHalfvec(vector: Float32Array, target: Buffer, offset: number): number {
  let at = target.writeInt16BE(vector.length, offset);
  at = target.writeInt16BE(0, at);
  for (const value of vector) {
    const half = toHalfBits(value);
    // NaN, infinities and values that round past 65504: refused, as pgvector refuses their text form.
    if ((half & HALF_INFINITY) === HALF_INFINITY) {
      throw new RangeError(`halfvec values must be finite and within binary16's range; got ${value}.`);
    }
    at = target.writeUInt16BE(half, at);
  }
  return at;
}

/** One halfvec parameter in binary format (use as `$n::halfvec`). */
export function encodeHalfvec(vector: Float32Array): Buffer {
  const buffer = Buffer.allocUnsafe(4 + 2 * vector.length);
  writeHalfvec(vector, buffer, 0);
  return buffer;
}

/**
 * A one-dimensional halfvec[] parameter in PostgreSQL's binary array format (use as
 * `$n::halfvec[]`). `elementOid` is halfvec's type OID in this database (the extension's types get
 * their OIDs when it is created), as the array format requires.
 */
export function encodeHalfvecArray(vectors: readonly Float32Array[], elementOid: number): Buffer {
  const size = vectors.reduce((sum, vector) => sum + 4 + 4 + 2 * vector.length, 20);
  const buffer = Buffer.allocUnsafe(size);
  let at = buffer.writeInt32BE(1, 0); // dimensions
  at = buffer.writeInt32BE(0, at); // flags: no NULLs
  at = buffer.writeUInt32BE(elementOid, at);
  at = buffer.writeInt32BE(vectors.length, at);
  at = buffer.writeInt32BE(1, at); // lower bound
  for (const vector of vectors) {
    at = buffer.writeInt32BE(4 + 2 * vector.length, at);
    at = writeHalfvec(vector, buffer, at);
  }
  return buffer;
}

/** float32 value of every binary16 bit pattern: decoding is one table lookup per dimension. */
let halfToFloat: Float32Array | undefined;

function halfTable(): Float32Array {
  if (halfToFloat) return halfToFloat;
  const table = new Float32Array(65536);
  for (let bits = 0; bits < 65536; bits++) {
    const sign = bits & 0x8000 ? -1 : 1;
    const exponent = (bits >>> 10) & 0x1f;
    const mantissa = bits & 0x3ff;
    table[bits] =
      exponent === 0
        ? sign * mantissa * 2 ** -24
        : exponent === 31
          ? mantissa === 0
            ? sign * Infinity
            : Number.NaN
          : sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  halfToFloat = table;
  return table;
}

/**
 * Decode pgvector's binary halfvec (what `halfvec_send(column)` returns as bytea) into float32:
 * the read-side twin of encodeHalfvec, exact, and without formatting and parsing decimal text.
 */
export function decodeHalfvec(bytes: Uint8Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dimension = view.getInt16(0);
  if (bytes.byteLength !== 4 + 2 * dimension) {
    throw new RangeError(
      `A binary halfvec of ${dimension} dimensions cannot be ${bytes.byteLength} bytes long.`,
    );
  }
  const table = halfTable();
  const vector = new Float32Array(dimension);
  for (let i = 0; i < dimension; i++) vector[i] = table[view.getUint16(4 + 2 * i)]!;
  return vector;
}
