import sharp, { type Sharp } from 'sharp';

/**
 * A copy-detection protocol in the style of INRIA Copydays (Jégou et al. 2008), built deterministically
 * with sharp from any photos: each original gets attacked copies in five families. JPEG: quality 75,
 * 50, 30, 20, 10, 3. Crops keeping 80, 50, 30, 20 and 10 % of the area, centred and off-centre (top-left
 * anchored). Resize to 50 % and 25 % of each side. A mirror. Strong edits: rotation, colour shift, blur,
 * a text overlay, a border. Every copy except the JPEG family's is re-encoded at quality 90.
 */
export type AttackFamily = 'jpeg' | 'crop' | 'resize' | 'mirror' | 'strong';

export interface Attack {
  readonly family: AttackFamily;
  readonly name: string;
  apply(image: Sharp, width: number, height: number): Sharp;
}

const cropped = (fraction: number, centred: boolean) => (image: Sharp, width: number, height: number) => {
  const side = Math.sqrt(fraction);
  const w = Math.max(8, Math.round(width * side));
  const h = Math.max(8, Math.round(height * side));
  return image.extract({
    left: centred ? Math.round((width - w) / 2) : 0,
    top: centred ? Math.round((height - h) / 2) : 0,
    width: w,
    height: h,
  });
};

const overlay = (width: number, height: number) =>
  Buffer.from(
    `<svg width="${width}" height="${height}" xmlns="http://www.w3.org/2000/svg"><text x="${Math.round(width * 0.05)}" y="${Math.round(height * 0.55)}" font-size="${Math.max(12, Math.round(height / 7))}" font-family="sans-serif" font-weight="bold" fill="yellow" stroke="black" stroke-width="2">COPYRIGHT 2026</text></svg>`,
  );

export const ATTACKS: readonly Attack[] = [
  ...[75, 50, 30, 20, 10, 3].map((quality): Attack => ({
    family: 'jpeg',
    name: `jpeg q${quality}`,
    apply: (image) => image,
  })),
  ...[0.8, 0.5, 0.3, 0.2, 0.1].flatMap((fraction): Attack[] => [
    { family: 'crop', name: `centre crop ${fraction * 100}%`, apply: cropped(fraction, true) },
    { family: 'crop', name: `corner crop ${fraction * 100}%`, apply: cropped(fraction, false) },
  ]),
  ...[0.5, 0.25].map((scale): Attack => ({
    family: 'resize',
    name: `resize ${scale * 100}%`,
    apply: (image, width, height) =>
      image.resize(Math.max(8, Math.round(width * scale)), Math.max(8, Math.round(height * scale))),
  })),
  { family: 'mirror', name: 'mirror', apply: (image) => image.flop() },
  { family: 'strong', name: 'rotate 10°', apply: (image) => image.rotate(10, { background: '#000000' }) },
  {
    family: 'strong',
    name: 'colour shift',
    apply: (image) => image.modulate({ hue: 40, saturation: 1.4, brightness: 1.1 }),
  },
  { family: 'strong', name: 'blur', apply: (image) => image.blur(3) },
  {
    family: 'strong',
    name: 'text overlay',
    apply: (image, width, height) => image.composite([{ input: overlay(width, height), top: 0, left: 0 }]),
  },
  {
    family: 'strong',
    name: 'border',
    apply: (image, width, height) =>
      image.extend({
        top: Math.round(height * 0.1),
        bottom: Math.round(height * 0.1),
        left: Math.round(width * 0.1),
        right: Math.round(width * 0.1),
        background: '#ffffff',
      }),
  },
];

/** Every attacked copy of one original, in ATTACKS order. */
export async function attackedCopies(original: Uint8Array): Promise<Buffer[]> {
  // The original as decoded once, orientation applied: every attack starts from the same pixels.
  const { data, info } = await sharp(original).rotate().raw().toBuffer({ resolveWithObject: true });
  const raw = { raw: { width: info.width, height: info.height, channels: info.channels } };
  return Promise.all(
    ATTACKS.map((attack) => {
      const quality = attack.family === 'jpeg' ? Number(attack.name.slice(6)) : 90;
      return attack.apply(sharp(data, raw), info.width, info.height).jpeg({ quality }).toBuffer();
    }),
  );
}
