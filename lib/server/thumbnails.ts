import sharp from 'sharp';
import { UnsupportedImageError } from '../core/errors';

/**
 * Small WebP thumbnails for the page's result grid, so a grid of 100 results does not ship 100 full-size
 * photos. Kept in a small in-memory LRU, keyed by file identity (size, mtime) and width.
 */
export class ThumbnailCache {
  private readonly entries = new Map<string, Buffer>();

  constructor(
    private readonly maxPixels: number,
    private readonly capacity = 500,
  ) {}

  async get(path: string, identity: string, width: number): Promise<Buffer> {
    const cacheKey = `${identity}\u0000${width}`;
    const cached = this.entries.get(cacheKey);
    if (cached) {
      this.entries.delete(cacheKey);
      this.entries.set(cacheKey, cached);
      return cached;
    }
    let thumbnail: Buffer;
    try {
      thumbnail = await sharp(path, { limitInputPixels: this.maxPixels, pages: 1 })
        .autoOrient()
        .resize(width, width, { fit: 'inside', withoutEnlargement: true })
        .webp({ quality: 78 })
        .toBuffer();
    } catch (cause) {
      throw new UnsupportedImageError('This image cannot be decoded for a thumbnail.', {
        cause,
        hint: 'Fetch it without ?w= to get the original file.',
      });
    }
    this.entries.set(cacheKey, thumbnail);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
    return thumbnail;
  }
}
