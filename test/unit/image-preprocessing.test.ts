import sharp from 'sharp';
import { SharpImagePreprocessor } from '../../lib/adapters/image/sharp-preprocessor';
import { TooLargeError, UnsupportedImageError } from '../../lib/core/errors';
import { IMAGENET_PREPROCESS } from '../../lib/core/model-spec';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { heicHeader, jpeg, png, pngHeaderClaiming, solid, split } from '../helpers/images';
import { CALTECH_DIR, requirePath } from '../helpers/shared';

const preprocessor = new SharpImagePreprocessor(IMAGENET_PREPROCESS, {
  maxBytes: 5_000_000,
  maxPixels: 40_000_000,
});
const PLANE = 224 * 224;

/** Mean of one channel, converted back to 0..255 pixel units. */
function channelMean(tensor: Float32Array, channel: number): number {
  let sum = 0;
  for (let i = 0; i < PLANE; i++) sum += tensor[channel * PLANE + i]!;
  const { mean, std } = IMAGENET_PREPROCESS;
  return ((sum / PLANE) * std[channel]! + mean[channel]!) * 255;
}

function rgbMeans(tensor: Float32Array): number[] {
  return [0, 1, 2].map((c) => channelMean(tensor, c));
}

describe('SharpImagePreprocessor', () => {
  it('produces a 3x224x224 float tensor normalised with the ImageNet mean and std', async () => {
    // Act
    const image = await preprocessor.prepare(await jpeg(320, 240, { r: 200, g: 60, b: 30 }));
    // Assess
    expect(image.tensor).toHaveLength(3 * PLANE);
    expect({ width: image.width, height: image.height }).toEqual({ width: 320, height: 240 });
    const [r, g, b] = rgbMeans(image.tensor);
    expect(r).toBeCloseTo(200, -1);
    expect(g).toBeCloseTo(60, -1);
    expect(b).toBeCloseTo(30, -1);
  });

  it('resizes the shorter side to 256 and crops the centre 224 (torchvision recipe)', async () => {
    // Prepare: 512x256 with a 32-px red border left and right; after resizing to 512x256 the centre
    // 224 crop starts at x=144, so no red survives; a plain 224 resize of the whole image would keep it.
    const red = await solid(32, 256, { r: 255, g: 0, b: 0 }).png().toBuffer();
    const picture = await solid(512, 256, { r: 0, g: 0, b: 255 })
      .composite([
        { input: red, left: 0, top: 0 },
        { input: red, left: 480, top: 0 },
      ])
      .png()
      .toBuffer();
    // Act
    const image = await preprocessor.prepare(picture);
    // Assess
    const [r, , b] = rgbMeans(image.tensor);
    expect(r).toBeLessThan(2);
    expect(b).toBeGreaterThan(250);
  });

  it('cuts the same centre crop as libvips would, pixel for pixel, from a real photo', async () => {
    const photo = readFileSync(requirePath(join(CALTECH_DIR, 'dolphin', 'image_0001.jpg'), 'the dev set'));
    const { width, height } = await sharp(photo).metadata();
    const scale = 256 / Math.min(width, height);
    const [w, h] = [Math.max(224, Math.round(width * scale)), Math.max(224, Math.round(height * scale))];
    const reference = await sharp(photo)
      .resize(w, h, { fit: 'fill', kernel: 'linear' })
      .extract({ left: Math.round((w - 224) / 2), top: Math.round((h - 224) / 2), width: 224, height: 224 })
      .raw()
      .toBuffer();
    const { tensor } = await preprocessor.prepare(photo);
    const { mean, std } = IMAGENET_PREPROCESS;
    let worst = 0;
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < PLANE; i++) {
        const pixel = (tensor[c * PLANE + i]! * std[c]! + mean[c]!) * 255;
        worst = Math.max(worst, Math.abs(pixel - reference[i * 3 + c]!));
      }
    }
    expect(worst).toBeLessThan(0.01);
  });

  it("offers the picture's perceptual hash: stable under resizing and re-encoding, different for another photo", async () => {
    const hashOf = async (bytes: Buffer) => (await preprocessor.prepare(bytes)).perceptualHash!();
    const bitsApart = (a: string, b: string) => [...a].filter((c, i) => c !== b[i]).length;
    const photo = readFileSync(requirePath(join(CALTECH_DIR, 'dolphin', 'image_0001.jpg'), 'the dev set'));
    const other = readFileSync(join(CALTECH_DIR, 'dolphin', 'image_0002.jpg'));
    const original = await hashOf(photo);
    expect(original).toMatch(/^[01]{64}$/);
    const { width } = await sharp(photo).metadata();
    const smaller = await sharp(photo)
      .resize(Math.round(width / 4))
      .jpeg({ quality: 30 })
      .toBuffer();
    expect(bitsApart(original, await hashOf(smaller))).toBeLessThanOrEqual(6);
    expect(bitsApart(original, await hashOf(other))).toBeGreaterThan(16);
  });

  it('applies EXIF orientation before cropping', async () => {
    // Prepare: left half red, right half blue, stored with orientation 6 (display rotated 90 deg CW),
    // so the displayed image has red on top and blue at the bottom.
    const stored = await sharp(await split(300, 200))
      .withMetadata({ orientation: 6 })
      .jpeg()
      .toBuffer();
    // Act
    const image = await preprocessor.prepare(stored);
    // Assess
    expect({ width: image.width, height: image.height }).toEqual({ width: 200, height: 300 });
    const topRowRed = image.tensor[0 * PLANE + 5 * 224 + 112]!; // channel R, row 5, centre column
    const bottomRowRed = image.tensor[0 * PLANE + 218 * 224 + 112]!;
    expect(topRowRed).toBeGreaterThan(bottomRowRed);
  });

  it.each([
    [
      'greyscale (1 channel)',
      () =>
        sharp(Buffer.alloc(64 * 48, 128), { raw: { width: 64, height: 48, channels: 1 } })
          .png()
          .toBuffer(),
      [128, 128, 128],
      3,
    ],
    [
      '16-bit PNG',
      () => solid(64, 48, { r: 200, g: 100, b: 50 }).toColourspace('rgb16').png().toBuffer(),
      [200, 100, 50],
      3,
    ],
    [
      'CMYK JPEG',
      () => solid(64, 48, { r: 200, g: 100, b: 50 }).toColourspace('cmyk').jpeg().toBuffer(),
      [200, 100, 50],
      40,
    ],
    [
      'alpha PNG (transparent, flattened on white)',
      () =>
        sharp({ create: { width: 64, height: 48, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
          .png()
          .toBuffer(),
      [255, 255, 255],
      3,
    ],
    ['1x1 image', () => png(1, 1, { r: 10, g: 20, b: 30 }), [10, 20, 30], 3],
  ])('decodes a %s to 8-bit sRGB', async (_name, make, expected, tolerance) => {
    // Act
    const image = await preprocessor.prepare(await make());
    // Assess: CMYK goes through ICC profiles and loses some gamut; an inverted or channel-swapped
    // decode would be off by more than 100 levels.
    rgbMeans(image.tensor).forEach((value, c) =>
      expect(Math.abs(value - expected[c]!)).toBeLessThan(tolerance),
    );
  });

  it('takes the first frame of an animated GIF', async () => {
    // Prepare: two frames, red then blue.
    const frames = Buffer.concat([Buffer.alloc(32 * 32 * 3), Buffer.alloc(32 * 32 * 3)]);
    for (let i = 0; i < 32 * 32; i++) {
      frames[i * 3] = 255; // frame 1 red
      frames[32 * 32 * 3 + i * 3 + 2] = 255; // frame 2 blue
    }
    const gif = await sharp(frames, { raw: { width: 32, height: 64, channels: 3, pageHeight: 32 } })
      .gif({ loop: 0, delay: [100, 100] })
      .toBuffer();
    expect((await sharp(gif, { pages: -1 }).metadata()).pages).toBe(2);
    // Act
    const image = await preprocessor.prepare(gif);
    // Assess
    const [r, , b] = rgbMeans(image.tensor);
    expect(r).toBeGreaterThan(240);
    expect(b).toBeLessThan(15);
  });

  describe('bad input', () => {
    it.each([
      ['zero-byte file', async () => Buffer.alloc(0), /empty/],
      [
        'text named .jpg',
        async () => Buffer.from('this is not a picture, just text saved as photo.jpg'),
        /not an image in a supported format/i,
      ],
      [
        'corrupt JPEG',
        async () => {
          const b = Buffer.from(await jpeg());
          b.fill(0x55, 200, 600);
          return b;
        },
        /could not be decoded/,
      ],
      ['truncated PNG', async () => (await png(320, 240)).subarray(0, 120), /could not be decoded/],
      [
        'HEIC (not decodable by the prebuilt sharp)',
        async () => heicHeader(),
        /HEIC\/HEIF images are not supported/,
      ],
    ])('rejects a %s with UnsupportedImageError', async (_name, make, message) => {
      // Act
      const attempt = preprocessor.prepare(await make());
      // Assess
      await expect(attempt).rejects.toBeInstanceOf(UnsupportedImageError);
      await expect(attempt).rejects.toThrow(message);
    });

    it('rejects an image over the pixel limit (decompression bomb) before decoding it', async () => {
      // Prepare: header says 50,000 x 50,000 (2.5 gigapixels), data is 1 KB.
      const bomb = pngHeaderClaiming(50_000, 50_000);
      expect(bomb.length).toBeLessThan(2_000);
      // Act / Assess
      await expect(preprocessor.prepare(bomb)).rejects.toBeInstanceOf(TooLargeError);
      await expect(preprocessor.prepare(bomb)).rejects.toThrow(/pixel/);
    });

    it('rejects a file over the byte limit without decoding it', async () => {
      const small = new SharpImagePreprocessor(IMAGENET_PREPROCESS, { maxBytes: 1000, maxPixels: 1e6 });
      await expect(small.prepare(await jpeg(640, 480))).rejects.toBeInstanceOf(TooLargeError);
    });

    it('still decodes a good image after each bad one (no poisoned state)', async () => {
      await expect(preprocessor.prepare(Buffer.from('garbage'))).rejects.toThrow();
      await expect(preprocessor.prepare(await png(16, 16))).resolves.toHaveProperty('width', 16);
    });
  });
});
