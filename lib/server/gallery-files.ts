import { createHash, randomUUID } from 'node:crypto';
import {
  link,
  lstat,
  mkdir,
  readdir,
  readFile,
  realpath,
  rename,
  rm,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { dirname, extname, join, posix, relative, sep } from 'node:path';
import { IMAGE_EXTENSIONS } from '../adapters/fs/fs-gallery';
import { InvalidInputError, NotFoundError, TooLargeError } from '../core/errors';
import type { GalleryItem } from '../core/indexing';
import { validateKey } from '../core/search';

/** Hidden folder inside the gallery where uploads are written before they appear under their key. */
const STAGING_DIR = '.ompf-uploads';

export const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.jpe': 'image/jpeg',
  '.png': 'image/png',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.avif': 'image/avif',
  '.tif': 'image/tiff',
  '.tiff': 'image/tiff',
  '.svg': 'image/svg+xml',
  '.bmp': 'image/bmp',
  '.heic': 'image/heic',
  '.heif': 'image/heif',
};

/**
 * Check a gallery key (a '/'-separated path relative to the gallery root) before it touches the file
 * system. Keys that could escape the gallery or name hidden or non-image files are refused outright
 * (never "cleaned up"): `../`, `./`, absolute paths, backslashes, empty or hidden segments.
 */
export function validateGalleryKey(key: string, { requireImageExtension = true } = {}): void {
  validateKey(key);
  const refuse = (why: string) =>
    new InvalidInputError(`The key '${key}' is not a valid gallery path: ${why}.`, {
      hint: "Keys are paths relative to the gallery folder, such as 'cats/tom.jpg' (percent-encode '/' as %2F in URLs).",
      context: { key },
    });
  if (key.includes('\\')) throw refuse('it contains a backslash');
  if (key.startsWith('/')) throw refuse('it is an absolute path');
  if ([...key].some(isControlCharacter)) throw refuse('it contains a control character');
  for (const segment of key.split('/')) {
    if (segment === '..') throw refuse("it contains a '..' segment (path traversal)");
    if (segment === '.' || segment === '') throw refuse('it contains an empty or "." segment');
    if (segment.startsWith('.')) throw refuse('it names a hidden file or folder');
  }
  if (requireImageExtension && !IMAGE_EXTENSIONS.has(extname(key).toLowerCase())) {
    throw refuse(`the extension is not one of ${[...IMAGE_EXTENSIONS].join(' ')}`);
  }
}

/** Key of an absolute path under the root, or undefined for paths outside it or hidden ones. */
export function keyOf(root: string, path: string): string | undefined {
  const rel = relative(root, path);
  if (rel === '' || rel.startsWith('..') || rel.split(sep).some((s) => s.startsWith('.'))) return undefined;
  return rel.split(sep).join('/');
}

/** C0 controls and DEL: never part of a file name we create or serve. */
export function isControlCharacter(char: string): boolean {
  const code = char.charCodeAt(0);
  return code < 0x20 || code === 0x7f;
}

export function isImageKey(key: string): boolean {
  return IMAGE_EXTENSIONS.has(extname(key).toLowerCase());
}

/**
 * The gallery folder as the server sees it: validated keys in, files out, uploads written atomically so
 * the watcher, the indexer and a crash never see half a file.
 */
export class GalleryFiles {
  private constructor(
    /** Canonical absolute path: the `source` of every image indexed from it. */
    readonly root: string,
    private readonly maxBytes: number,
  ) {}

  /** Create the folder if it is missing, and clear uploads a crash left half-written. */
  static async open(dir: string, maxBytes: number): Promise<GalleryFiles> {
    await mkdir(dir, { recursive: true });
    const root = await realpath(dir);
    if (!(await stat(root)).isDirectory()) {
      throw new InvalidInputError(`The gallery ${dir} is a file, not a folder.`, {
        hint: 'Set OMPF_GALLERY_DIR to a folder.',
      });
    }
    await rm(join(root, STAGING_DIR), { recursive: true, force: true });
    return new GalleryFiles(root, maxBytes);
  }

  /** Absolute path of a validated key; symlinks leading out of the gallery are refused. */
  async pathOf(key: string): Promise<string> {
    validateGalleryKey(key, { requireImageExtension: false });
    const path = join(this.root, ...key.split('/'));
    let real: string;
    try {
      real = await realpath(path);
    } catch {
      return path; // does not exist (yet): nothing to escape through
    }
    if (keyOf(this.root, real) === undefined) throw notInGallery(key);
    return path;
  }

  async exists(key: string): Promise<boolean> {
    try {
      return (await stat(await this.pathOf(key))).isFile();
    } catch (error) {
      if (error instanceof InvalidInputError) throw error;
      return false;
    }
  }

  /** Size and modification time of an image file; NotFoundError when absent. */
  async info(key: string): Promise<{ path: string; size: number; mtimeMs: number }> {
    const path = await this.pathOf(key);
    try {
      const info = await stat(path);
      if (info.isFile()) return { path, size: info.size, mtimeMs: info.mtimeMs };
    } catch {
      // fall through
    }
    throw notInGallery(key);
  }

  /** A GalleryItem for the indexing core: read() checks the size before reading the bytes. */
  item(key: string): GalleryItem {
    return {
      key,
      read: async () => {
        const { path, size } = await this.info(key).catch(() => {
          throw new NotFoundError(`${key} disappeared before it could be read.`);
        });
        if (size > this.maxBytes) {
          throw new TooLargeError(`The file is ${size} bytes; the limit is ${this.maxBytes} bytes.`, {
            hint: 'Shrink the image, or raise OMPF_MAX_IMAGE_BYTES.',
          });
        }
        return readFile(path);
      },
    };
  }

  /** Every image key on disk (hidden entries skipped, symlinks not followed), sorted. */
  async listKeys(): Promise<string[]> {
    const keys: string[] = [];
    const walk = async (folder: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(folder, { withFileTypes: true });
      } catch {
        return; // removed while walking
      }
      for (const entry of entries) {
        if (entry.name.startsWith('.')) continue;
        const path = join(folder, entry.name);
        if (entry.isDirectory()) await walk(path);
        else if (entry.isFile() && isImageKey(entry.name)) keys.push(keyOf(this.root, path)!);
      }
    };
    await walk(this.root);
    return keys.sort();
  }

  /**
   * Write `bytes` under `key`. With `replace`, an existing file is replaced atomically (rename). Without
   * it, the file is created only if the key is free (hard link: atomic create-if-absent, safe against
   * concurrent uploads); when taken by identical content the upload is a duplicate, when taken by other
   * content the next free name (`name-2.jpg`, ...) is used. Nothing already in the gallery is lost.
   */
  async write(
    key: string,
    bytes: Uint8Array,
    { replace }: { replace: boolean },
  ): Promise<{ key: string; duplicate: boolean }> {
    validateGalleryKey(key);
    const staging = join(this.root, STAGING_DIR);
    await mkdir(staging, { recursive: true });
    const temp = join(staging, randomUUID());
    await writeFile(temp, bytes, { flag: 'wx' });
    try {
      if (replace) {
        const path = await this.pathOf(key);
        await this.makeParent(path, key);
        await rename(temp, path);
        return { key, duplicate: false };
      }
      const hash = sha256(bytes);
      const ext = posix.extname(key);
      const stem = key.slice(0, key.length - ext.length);
      for (let attempt = 1; attempt <= 1000; attempt++) {
        const candidate = attempt === 1 ? key : `${stem}-${attempt}${ext}`;
        const path = await this.pathOf(candidate);
        await this.makeParent(path, candidate);
        try {
          await link(temp, path);
          return { key: candidate, duplicate: false };
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        }
        const existing = await readFile(path).catch(() => undefined);
        if (existing && sha256(existing) === hash) return { key: candidate, duplicate: true };
      }
      throw new InvalidInputError(`Too many files are already named like '${key}'.`, {
        hint: 'Rename the file before uploading it.',
      });
    } finally {
      await rm(temp, { force: true });
    }
  }

  /** Delete the file of a key; false when there was none. */
  async delete(key: string): Promise<boolean> {
    const path = await this.pathOf(key);
    try {
      if (!(await lstat(path)).isFile()) return false;
      await unlink(path);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw error;
    }
  }

  private async makeParent(path: string, key: string): Promise<void> {
    try {
      await mkdir(dirname(path), { recursive: true });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' || code === 'ENOTDIR') {
        throw new InvalidInputError(`Cannot store '${key}': part of its folder path is a file.`, {
          hint: 'Choose another folder or file name.',
        });
      }
      throw error;
    }
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function notInGallery(key: string): NotFoundError {
  return new NotFoundError(`The gallery holds no image '${key}'.`, {
    hint: 'Keys are paths relative to the gallery folder; GET /status shows what is indexed.',
    context: { key },
  });
}
