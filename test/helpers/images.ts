import sharp, { type Sharp } from 'sharp';
import { deflateSync } from 'node:zlib';

/** Small images generated in the test, so every odd format is covered without committed files. */
export function solid(width: number, height: number, colour: { r: number; g: number; b: number }): Sharp {
  return sharp({ create: { width, height, channels: 3, background: colour } });
}

export async function jpeg(width = 320, height = 240, colour = { r: 200, g: 60, b: 30 }): Promise<Buffer> {
  return solid(width, height, colour).jpeg().toBuffer();
}

export async function png(width = 320, height = 240, colour = { r: 30, g: 160, b: 90 }): Promise<Buffer> {
  return solid(width, height, colour).png().toBuffer();
}

/** A picture with structure (left half one colour, right half another) so orientation matters. */
export async function split(width: number, height: number): Promise<Buffer> {
  const left = await solid(Math.floor(width / 2), height, { r: 255, g: 0, b: 0 })
    .png()
    .toBuffer();
  return solid(width, height, { r: 0, g: 0, b: 255 })
    .composite([{ input: left, left: 0, top: 0 }])
    .png()
    .toBuffer();
}

/**
 * A PNG whose header claims `width` x `height` but whose data is a few bytes: what a decompression
 * bomb looks like to a decoder before it allocates.
 */
export function pngHeaderClaiming(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body) >>> 0);
    return Buffer.concat([length, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(1024))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** An ISO-BMFF file with a HEIC brand, the container iPhones write. */
export function heicHeader(): Buffer {
  const ftyp = Buffer.alloc(24);
  ftyp.writeUInt32BE(24, 0);
  ftyp.write('ftypheic', 4, 'latin1');
  ftyp.writeUInt32BE(0, 12);
  ftyp.write('mif1heic', 16, 'latin1');
  return Buffer.concat([ftyp, Buffer.alloc(512, 0)]);
}

function crc32(data: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return crc ^ 0xffffffff;
}
