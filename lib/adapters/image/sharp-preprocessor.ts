import sharp, { type Metadata } from 'sharp';
import phash from 'sharp-phash';
import { TooLargeError, UnsupportedImageError } from '../../core/errors';
import { MAX_WHOLE_ASPECT, type PreprocessSpec } from '../../core/model-spec';
import type { ImagePreprocessor, PreparedImage, TensorShape } from '../../core/ports';

export interface ImageLimits {
  /** Refuse inputs larger than this many bytes before decoding anything. */
  readonly maxBytes: number;
  /**
   * Refuse images with more pixels than this (width x height from the header, before decoding):
   * the guard against decompression bombs. sharp's own default is 268,402,689.
   */
  readonly maxPixels: number;
}

// sharp 0.35 (libvips 8.18) runs on the libuv pool; one vips thread per pipeline lets two images decode
// in parallel on two cores instead of one image fighting with onnxruntime for both.
sharp.concurrency(1);

/**
 * Decode -> EXIF orientation -> flatten alpha on white -> 8-bit sRGB -> resize shorter side (bilinear) ->
 * centre crop -> [0,1] -> (x - mean) / std -> NCHW float32. The torchvision / ONNX Model Zoo recipe.
 */
export class SharpImagePreprocessor implements ImagePreprocessor {
  constructor(
    private readonly spec: PreprocessSpec,
    private readonly limits: ImageLimits,
  ) {}

  async prepare(bytes: Uint8Array): Promise<PreparedImage> {
    if (bytes.byteLength === 0) {
      throw new UnsupportedImageError('The file is empty (0 bytes).', {
        hint: 'Check that the upload or copy completed.',
      });
    }
    if (bytes.byteLength > this.limits.maxBytes) {
      throw new TooLargeError(
        `The image is ${bytes.byteLength} bytes; the limit is ${this.limits.maxBytes} bytes.`,
        {
          hint: 'Shrink the image, or raise OMPF_MAX_IMAGE_BYTES.',
          context: { bytes: bytes.byteLength, limit: this.limits.maxBytes },
        },
      );
    }
    if (isHeif(bytes)) {
      throw new UnsupportedImageError('HEIC/HEIF images are not supported by the bundled image decoder.', {
        hint: 'Convert the image to JPEG, PNG, WebP or AVIF first (for example with `heif-convert`).',
      });
    }
    const input = sharp(bytes, {
      limitInputPixels: this.limits.maxPixels,
      // Truncated or corrupt data is an error, not a half-grey picture silently indexed.
      failOn: 'error',
      // Animated GIF/WebP: first frame only.
      pages: 1,
    });
    let metadata: Metadata;
    try {
      metadata = await input.metadata();
    } catch (cause) {
      throw decodeError(cause);
    }
    const { width, height } = orientedSize(metadata);
    if (width * height > this.limits.maxPixels) {
      throw pixelLimitError(width, height, this.limits.maxPixels);
    }
    const { width: resizedWidth, height: resizedHeight } = framedSize(width, height, this.spec);
    let pixels: Buffer;
    try {
      pixels = await input
        .autoOrient()
        .flatten({ background: '#ffffff' })
        .toColourspace('srgb')
        // Bilinear, as torchvision's Resize (the recipe the ImageNet models were trained with). Measured
        // against lanczos3 with `ompf eval --compare plain dba3` (mobilenetv2-int8, 1,348 images): Top-1
        // 0.920 vs 0.918, mAP 0.692 vs 0.691, dba3 mAP 0.776 vs 0.776, for 35 % less decode CPU on
        // small photos (3.0 vs 4.6 ms each), which is what the indexing pipeline is short of.
        .resize(resizedWidth, resizedHeight, { fit: 'fill', kernel: 'linear' })
        .removeAlpha()
        .raw({ depth: 'uchar' })
        .toBuffer();
    } catch (cause) {
      throw decodeError(cause);
    }
    if (pixels.length !== resizedWidth * resizedHeight * 3) {
      throw new UnsupportedImageError(
        `Decoding produced ${pixels.length / (resizedWidth * resizedHeight)} channels instead of 3.`,
      );
    }
    // The centre crop is cut here rather than by libvips so that the whole resized picture stays
    // available to the perceptual hash (copy detection wants the whole frame, the model its crop).
    const frame = { pixels, width: resizedWidth, height: resizedHeight };
    const whole = this.spec.framing === 'whole';
    return {
      tensor: whole
        ? toNormalisedChw(frame, frame, this.spec)
        : toNormalisedChw(frame, square(this.spec.cropSize), this.spec),
      tensorShape: whole ? { height: resizedHeight, width: resizedWidth } : undefined,
      width,
      height,
      perceptualHash: () =>
        phash(pixels, { raw: { width: resizedWidth, height: resizedHeight, channels: 3 } }),
    };
  }
}

/**
 * The size the decoded picture is resized to. 'crop': shorter side resizeShorterTo (the centre crop is
 * cut afterwards); 'squash': cropSize square; 'whole': shorter side cropSize, aspect kept up to
 * MAX_WHOLE_ASPECT (a longer panorama is squashed to that).
 */
export function framedSize(width: number, height: number, spec: PreprocessSpec): TensorShape {
  const { resizeShorterTo, cropSize } = spec;
  if (spec.framing === 'squash') return square(cropSize);
  const shorter = spec.framing === 'whole' ? cropSize : resizeShorterTo;
  const longest = spec.framing === 'whole' ? cropSize * MAX_WHOLE_ASPECT : Number.POSITIVE_INFINITY;
  const scale = shorter / Math.min(width, height);
  return {
    width: Math.min(longest, Math.max(cropSize, Math.round(width * scale))),
    height: Math.min(longest, Math.max(cropSize, Math.round(height * scale))),
  };
}

function square(side: number): TensorShape {
  return { width: side, height: side };
}

/** The centred window of an RGB frame, as normalised NCHW float32. */
function toNormalisedChw(
  frame: { readonly pixels: Buffer; readonly width: number; readonly height: number },
  window: TensorShape,
  spec: PreprocessSpec,
): Float32Array {
  const plane = window.width * window.height;
  const tensor = new Float32Array(plane * 3);
  const left = Math.round((frame.width - window.width) / 2);
  const top = Math.round((frame.height - window.height) / 2);
  for (let channel = 0; channel < 3; channel++) {
    const scale = 1 / (255 * spec.std[channel]!);
    const offset = spec.mean[channel]! / spec.std[channel]!;
    const base = channel * plane;
    for (let y = 0; y < window.height; y++) {
      const row = ((top + y) * frame.width + left) * 3 + channel;
      const out = base + y * window.width;
      for (let x = 0; x < window.width; x++) tensor[out + x] = frame.pixels[row + x * 3]! * scale - offset;
    }
  }
  return tensor;
}

function orientedSize(metadata: Metadata): { width: number; height: number } {
  const { width, height } = metadata;
  if (!width || !height) throw new UnsupportedImageError('The image has no dimensions.');
  // EXIF orientations 5-8 rotate by 90 degrees: width and height swap.
  return (metadata.orientation ?? 1) >= 5 ? { width: height, height: width } : { width, height };
}

function pixelLimitError(width: number, height: number, limit: number): TooLargeError {
  return new TooLargeError(
    `The image is ${width}x${height} (${width * height} pixels); the limit is ${limit} pixels.`,
    {
      hint: 'Downscale the image, or raise OMPF_MAX_PIXELS if you trust the source.',
      context: { width, height, limit },
    },
  );
}

function decodeError(cause: unknown): Error {
  const detail = cause instanceof Error ? cause.message : String(cause);
  if (/pixel limit/i.test(detail)) {
    return new TooLargeError('The image exceeds the pixel limit (possible decompression bomb).', {
      cause,
      hint: 'Downscale the image, or raise OMPF_MAX_PIXELS if you trust the source.',
    });
  }
  if (/unsupported image format/i.test(detail)) {
    return new UnsupportedImageError(
      'Not an image in a supported format (JPEG, PNG, WebP, GIF, AVIF, TIFF, SVG).',
      {
        cause,
        hint: 'Check the file is really an image; convert other formats to JPEG or PNG.',
      },
    );
  }
  return new UnsupportedImageError(`The image could not be decoded: ${firstLine(detail)}.`, {
    cause,
    hint: 'The file is corrupt or truncated; re-export or re-upload it.',
  });
}

function firstLine(text: string): string {
  return (text.split('\n')[0] ?? text).replace(/\.$/, '');
}

/** ISO-BMFF 'ftyp' box with a HEIF brand. sharp's prebuilt libvips has no HEVC decoder. */
function isHeif(bytes: Uint8Array): boolean {
  if (bytes.byteLength < 12) return false;
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.byteLength, 32)).toString('latin1');
  if (text.slice(4, 8) !== 'ftyp') return false;
  const brands = text.slice(8);
  return /heic|heix|hevc|hevx|heim|heis|mif1|msf1/.test(brands) && !/avif|avis/.test(brands);
}
