import sharp, { type Sharp } from 'sharp';

/**
 * Seven edits of one photo (mirror, crops, rotation, colour, blur), each re-encoded as JPEG: what a
 * photo library holds beside the original (edited copies, bursts, re-crops). The recall stage uses
 * them to grow the 1,348 labelled photos into a 10,784-image gallery of real embeddings, where each
 * query's nearest neighbours are close together and the candidate search has to rank them finely.
 */
export async function photoVariants(bytes: Uint8Array): Promise<Buffer[]> {
  const { width = 0, height = 0 } = await sharp(bytes).metadata();
  const crop = (left: number, top: number, fraction: number) => ({
    left: Math.round(width * left),
    top: Math.round(height * top),
    width: Math.round(width * fraction),
    height: Math.round(height * fraction),
  });
  const edits: ((image: Sharp) => Sharp)[] = [
    (image) => image.flop(),
    (image) => image.extract(crop(0.125, 0.125, 0.75)),
    (image) => image.rotate(12, { background: '#ffffff' }),
    (image) => image.modulate({ brightness: 1.25, saturation: 0.6 }),
    (image) => image.blur(1.5),
    (image) => image.extract(crop(0, 0, 0.8)),
    (image) => image.flop().modulate({ brightness: 0.8, hue: 15 }),
  ];
  return Promise.all(edits.map((edit) => edit(sharp(bytes)).jpeg({ quality: 90 }).toBuffer()));
}
