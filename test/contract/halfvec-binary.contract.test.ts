import pgvector from 'pgvector';
import {
  decodeHalfvec,
  encodeHalfvec,
  encodeHalfvecArray,
  toHalfBits,
} from '../../lib/adapters/store/halfvec-binary';
import { PgliteSqlClient, PostgresSqlClient, type SqlClient } from '../../lib/adapters/store/sql-client';
import { testDatabaseUrl } from '../helpers/shared';

/**
 * Vectors sent in pgvector's binary halfvec format must be stored with exactly the bits the text
 * literal would give (the server rounds text to binary16 itself), on both engines.
 */
const url = testDatabaseUrl();
const engines: { name: string; connect: () => Promise<SqlClient> }[] = [
  { name: 'PGlite', connect: () => PgliteSqlClient.open(undefined) },
  { name: 'PostgreSQL', connect: async () => PostgresSqlClient.connect(url) },
];

function seeded(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

/** Values that exercise every rounding branch: normals, subnormals, ties, carries, signs, zeros. */
function awkwardValues(): Float32Array {
  const random = seeded(7);
  const values = [0, -0, 1, -1, 65504, -65504, 6.1035156e-5, 5.9604645e-8, 2.9802322e-8, 8.940697e-8];
  values.push(1 + 2 ** -11, 1 + 3 * 2 ** -11, 2047.5, 2048 + 1, 0.1, 0.2, 0.3, 1 / 3, 2 ** -24 * 1.5);
  values.push(65519, 3e-5, -4.5e-6, 1e-7, 0.99951171875, 0.999755859375);
  while (values.length < 512) {
    const magnitude = 10 ** (-8 + random() * 12);
    values.push((random() < 0.5 ? -1 : 1) * magnitude);
  }
  return Float32Array.from(values);
}

describe.each(engines)('halfvec binary parameters on $name', ({ connect }) => {
  let client: SqlClient;
  let halfvecOid: number;

  beforeAll(async () => {
    client = await connect();
    await client.exec('CREATE EXTENSION IF NOT EXISTS vector');
    const [row] = await client.query<{ oid: number }>("SELECT 'halfvec'::regtype::oid::integer AS oid");
    halfvecOid = row!.oid;
  });

  afterAll(async () => {
    await client.close();
  });

  test('a binary halfvec stores the same bits as its text literal', async () => {
    // pgvector-node's text literal is the reference (the encoding the store used before). It writes an
    // input -0 as "0" (JavaScript's String(-0)) where the binary form keeps the sign, so the input's
    // negative zero is made positive here; values that round to -0 keep their sign in both.
    const vector = awkwardValues().map((v) => (Object.is(v, -0) ? 0 : v));
    const text = pgvector.toSql(Array.from(vector)) as string;
    const [row] = await client.query<{ binary: string; text: string }>(
      'SELECT $1::halfvec::text AS binary, $2::text::halfvec::text AS text',
      [encodeHalfvec(vector), text],
    );
    expect(row!.binary).toBe(row!.text);
  });

  test('a binary halfvec[] of several vectors arrives whole and in order', async () => {
    const random = seeded(11);
    const vectors = Array.from({ length: 5 }, () =>
      Float32Array.from({ length: 2048 }, () => random() - 0.5),
    );
    const rows = await client.query<{ binary: string; text: string }>(
      `SELECT b::text AS binary, t::halfvec::text AS text
         FROM unnest($1::halfvec[], $2::text[]) AS input(b, t)`,
      [encodeHalfvecArray(vectors, halfvecOid), vectors.map((v) => pgvector.toSql(Array.from(v)) as string)],
    );
    expect(rows).toHaveLength(5);
    for (const row of rows) expect(row.binary).toBe(row.text);
  });

  test('halfvec_send output decodes to exactly the stored values', async () => {
    const vector = awkwardValues();
    const [row] = await client.query<{ bytes: Uint8Array; text: string }>(
      'SELECT halfvec_send($1::halfvec) AS bytes, $1::halfvec::text AS text',
      [encodeHalfvec(vector)],
    );
    const decoded = decodeHalfvec(row!.bytes);
    // The server prints the shortest decimal of each float32; fround gives back that float32.
    const parsed = row!.text
      .slice(1, -1)
      .split(',')
      .map((x) => Math.fround(Number(x)));
    expect(Array.from(decoded)).toEqual(parsed);
    expect(() => decodeHalfvec(row!.bytes.subarray(0, 10))).toThrow(/cannot be 10 bytes/);
  });

  test('text parameters beside binary ones keep their own serialisation', async () => {
    const [row] = await client.query<{ key: string; dims: number; n: string }>(
      'SELECT $1::text AS key, vector_dims($2::halfvec) AS dims, $3::bigint::text AS n',
      ["it's a key", encodeHalfvec(Float32Array.of(0.5, 0.25, 0.125)), 12],
    );
    expect(row).toEqual({ key: "it's a key", dims: 3, n: '12' });
  });
});

describe('binary16 rounding', () => {
  test('ties go to even, values that round to infinity are refused, subnormals survive', () => {
    expect(toHalfBits(1)).toBe(0x3c00);
    expect(toHalfBits(1 + 2 ** -11)).toBe(0x3c00); // tie: stays even
    expect(toHalfBits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie: rounds up to even
    expect(toHalfBits(-2)).toBe(0xc000);
    expect(toHalfBits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(toHalfBits(2 ** -26)).toBe(0x0000); // below half of it: zero
    expect(toHalfBits(65504)).toBe(0x7bff);
    expect(toHalfBits(65519)).toBe(0x7bff); // rounds down to the largest half
    expect(() => encodeHalfvec(Float32Array.of(65520))).toThrow(/range/); // rounds to infinity
    expect(() => encodeHalfvec(Float32Array.of(Number.NaN))).toThrow(/finite/);
    expect(() => encodeHalfvec(Float32Array.of(1e30))).toThrow(/range/);
    expect(() => encodeHalfvec(Float32Array.of(-Infinity))).toThrow(/finite/);
  });
});
