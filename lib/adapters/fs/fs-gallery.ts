import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { extname, join, relative, sep } from 'node:path';
import { InvalidInputError, NotFoundError, TooLargeError } from '../../core/errors';
import type { GalleryItem } from '../../core/indexing';

/** File extensions treated as images; anything else in a gallery folder is ignored, not failed. */
export const IMAGE_EXTENSIONS = new Set([
  '.jpg',
  '.jpeg',
  '.jpe',
  '.png',
  '.webp',
  '.gif',
  '.avif',
  '.tif',
  '.tiff',
  '.heic',
  '.heif',
  '.svg',
  '.bmp',
]);

export interface FsGallery {
  /** Canonical absolute path of the folder: the `source` of its images. */
  readonly root: string;
  readonly items: GalleryItem[];
  /** Files skipped because their extension is not an image extension. */
  readonly ignored: number;
}

/**
 * Walk a folder recursively (hidden files and folders skipped, symlinks not followed). Keys are paths
 * relative to the root with '/' separators, so the same gallery gets the same keys on every OS.
 */
export async function scanGallery(dir: string, maxBytes: number): Promise<FsGallery> {
  let root: string;
  try {
    root = await realpath(dir);
  } catch {
    throw new NotFoundError(`The folder ${dir} does not exist.`, {
      hint: 'Check the path (it is resolved from the current directory).',
    });
  }
  if (!(await stat(root)).isDirectory()) {
    throw new InvalidInputError(`${dir} is a file, not a folder.`, {
      hint: 'Pass the folder that holds the images.',
    });
  }
  const items: GalleryItem[] = [];
  let ignored = 0;
  const walk = async (folder: string): Promise<void> => {
    const entries = await readdir(folder, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const path = join(folder, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile() && IMAGE_EXTENSIONS.has(extname(entry.name).toLowerCase())) {
        items.push(fileItem(root, path, maxBytes));
      } else if (entry.isFile()) ignored++;
    }
  };
  await walk(root);
  return { root, items, ignored };
}

function fileItem(root: string, path: string, maxBytes: number): GalleryItem {
  return {
    key: relative(root, path).split(sep).join('/'),
    read: async () => {
      let size: number;
      try {
        size = (await stat(path)).size;
      } catch {
        throw new NotFoundError(`${path} disappeared before it could be read.`);
      }
      if (size > maxBytes) {
        throw new TooLargeError(`The file is ${size} bytes; the limit is ${maxBytes} bytes.`, {
          hint: 'Shrink the image, or raise OMPF_MAX_IMAGE_BYTES.',
        });
      }
      return readFile(path);
    },
  };
}
