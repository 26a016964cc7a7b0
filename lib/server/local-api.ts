import { readFile } from 'node:fs/promises';
import { duplicateRoutes } from '../api/duplicate-routes';
import { DuplicateFinder } from '../core/duplicates';
import { extname } from 'node:path';
import sharp from 'sharp';
import {
  defineRoute,
  handleApiRequest,
  json,
  parseMultipart,
  type ApiDependencies,
  type ApiRequest,
  type ApiResponse,
} from '../api/http-api';
import {
  InvalidInputError,
  isOmpfError,
  NotFoundError,
  TooLargeError,
  UnsupportedImageError,
} from '../core/errors';
import type { ImagePreprocessor, VectorStore } from '../core/ports';
import { MAX_RESULTS, type SearchService } from '../core/search';
import { CONTENT_TYPES, isControlCharacter, validateGalleryKey, type GalleryFiles } from './gallery-files';
import type { IndexQueue } from './index-queue';
import { ThumbnailCache } from './thumbnails';

export interface LocalApiOptions {
  readonly search: SearchService;
  readonly store: VectorStore;
  readonly preprocessor: ImagePreprocessor;
  readonly modelId: string;
  readonly files: GalleryFiles;
  readonly queue: IndexQueue;
  readonly maxImageBytes: number;
  readonly maxPixels: number;
  readonly maxRequestBytes: number;
}

export interface UploadResult {
  readonly key: string;
  /** queued: written and waiting for the indexer; duplicate: the same bytes were already there. */
  readonly status: 'queued' | 'duplicate';
  readonly url: string;
}

/** Files accepted in one multipart upload to the gallery. */
export const MAX_UPLOAD_FILES = 20;
const IMAGE_BODY = /^image\//;
/** Extension for a detected format when an upload's name has none (sharp's format names). */
const FORMAT_EXTENSIONS: Readonly<Record<string, string>> = {
  jpeg: '.jpg',
  png: '.png',
  webp: '.webp',
  gif: '.gif',
  heif: '.avif',
  tiff: '.tiff',
  svg: '.svg',
};

/** URL of an image served by the local server: one percent-encoded path segment, like the API's keys. */
export function imagePath(key: string): string {
  return `/images/${encodeURIComponent(key)}`;
}

/**
 * The local server's API: the shared cloud contract (lib/api/http-api.ts) plus the routes that only a
 * server owning the gallery folder can offer: the image bytes, uploads into the gallery, deletes, status.
 */
export function createLocalApi(options: LocalApiOptions): (request: ApiRequest) => Promise<ApiResponse> {
  const { files, queue } = options;
  const thumbnails = new ThumbnailCache(options.maxPixels);
  const deps: ApiDependencies = {
    search: options.search,
    modelId: options.modelId,
    source: files.root,
    imageUrl: (key) => Promise.resolve(imagePath(key)),
    maxInlineImageBytes: options.maxImageBytes,
    duplicates: new DuplicateFinder(options.store),
  };

  /** Decode the upload exactly as the indexer will, so a bad image is refused before it is written. */
  const checkImage = async (name: string, bytes: Uint8Array): Promise<string> => {
    try {
      await options.preprocessor.prepare(bytes);
    } catch (error) {
      if (isOmpfError(error)) error.message = `${name}: ${error.message}`;
      throw error;
    }
    const { format } = await sharp(bytes, { limitInputPixels: options.maxPixels }).metadata();
    return FORMAT_EXTENSIONS[format] ?? '.jpg';
  };

  const queued = (key: string, duplicate: boolean): UploadResult => {
    queue.mark([key]);
    return { key, status: duplicate ? 'duplicate' : 'queued', url: imagePath(key) };
  };

  const routes = [
    defineRoute('GET', '/images/{key}', async (request, [key]) => {
      validateGalleryKey(key!);
      const info = await files.info(key!);
      const width = thumbnailWidth(request.query.w);
      const etag = `"${info.size.toString(36)}-${Math.round(info.mtimeMs).toString(36)}${width ? `-w${width}` : ''}"`;
      const headers = { etag, 'cache-control': 'no-cache' };
      if (request.headers['if-none-match'] === etag) return { status: 304, headers, body: '' };
      if (width) {
        const body = await thumbnails.get(info.path, `${etag}:${info.path}`, width);
        return { status: 200, headers: { ...headers, 'content-type': 'image/webp' }, body };
      }
      const contentType = CONTENT_TYPES[extname(key!).toLowerCase()] ?? 'application/octet-stream';
      return {
        status: 200,
        headers: { ...headers, 'content-type': contentType },
        body: await readFile(info.path),
      };
    }),

    defineRoute('PUT', '/images/{key}', async (request, [key]) => {
      validateGalleryKey(key!);
      const body = requireImageBody(request, options.maxImageBytes);
      await checkImage(key!, body);
      const written = await files.write(key!, body, { replace: true });
      return json(202, queued(written.key, false));
    }),

    defineRoute('POST', '/images', async (request) => {
      const contentType = mediaType(request);
      const uploads: { name: string; bytes: Buffer }[] = [];
      let folder = request.query.folder;
      if (contentType === 'multipart/form-data') {
        const form = await parseMultipart(request, {
          maxFiles: MAX_UPLOAD_FILES,
          maxFileBytes: options.maxImageBytes,
        });
        folder = form.fields.folder ?? folder;
        for (const file of form.files) {
          if (file.truncated) throw tooLarge(file.filename, options.maxImageBytes);
          uploads.push({ name: file.filename, bytes: file.bytes });
        }
        if (uploads.length === 0) {
          throw new InvalidInputError('The form holds no file.', {
            hint: 'Send the images as file parts (curl -F file=@photo.jpg).',
          });
        }
      } else {
        const body = requireImageBody(request, options.maxImageBytes);
        uploads.push({ name: request.query.name ?? 'image', bytes: body });
      }
      const prefix = folderPrefix(folder);
      // Validate every file before writing any: a request either adds all its images or none.
      const planned: { key: string; bytes: Buffer }[] = [];
      for (const upload of uploads) {
        if (upload.bytes.byteLength === 0) {
          throw new InvalidInputError(`${upload.name || 'The file'} is empty (0 bytes).`, {
            hint: 'Check that the file is complete.',
          });
        }
        const detected = await checkImage(upload.name || 'The file', upload.bytes);
        const key = prefix + uploadName(upload.name, detected);
        validateGalleryKey(key);
        planned.push({ key, bytes: upload.bytes });
      }
      const results: UploadResult[] = [];
      for (const { key, bytes } of planned) {
        const written = await files.write(key, bytes, { replace: false });
        results.push(queued(written.key, written.duplicate));
      }
      return json(results.some((r) => r.status === 'queued') ? 202 : 200, { images: results });
    }),

    defineRoute('DELETE', '/images/{key}', async (_request, [key]) => {
      validateGalleryKey(key!);
      const file = await files.delete(key!);
      const index = (await options.store.remove(files.root, [key!])) > 0;
      queue.forget(key!);
      if (!file && !index) {
        throw new NotFoundError(`The gallery holds no image '${key!}'.`, {
          hint: 'GET /status lists what is indexed; keys are paths relative to the gallery.',
          context: { key },
        });
      }
      return json(200, { key, deleted: true, file, index });
    }),

    defineRoute('GET', '/status', async () => {
      const status = await queue.status();
      return json(200, {
        model: options.modelId,
        ...status,
        limits: {
          maxImageBytes: options.maxImageBytes,
          maxRequestBytes: options.maxRequestBytes,
          maxResults: MAX_RESULTS,
          maxUploadFiles: MAX_UPLOAD_FILES,
        },
      });
    }),
  ];

  return (request) => handleApiRequest(deps, request, [...routes, ...duplicateRoutes]);
}

function mediaType(request: ApiRequest): string {
  return (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

function requireImageBody(request: ApiRequest, maxBytes: number): Buffer {
  const contentType = mediaType(request);
  if (!IMAGE_BODY.test(contentType)) {
    throw new UnsupportedImageError(`Content type '${contentType || '(none)'}' is not an image.`, {
      hint: 'Send the image bytes with Content-Type image/jpeg, image/png, ..., or a multipart/form-data form.',
    });
  }
  const body = request.body ?? Buffer.alloc(0);
  if (body.byteLength === 0) {
    throw new InvalidInputError('The request body is empty.', { hint: 'Send the image bytes as the body.' });
  }
  if (body.byteLength > maxBytes) throw tooLarge('The image', maxBytes);
  return body;
}

function tooLarge(name: string, maxBytes: number): TooLargeError {
  return new TooLargeError(`${name || 'The file'} is larger than the ${maxBytes}-byte limit.`, {
    hint: 'Shrink the image, or raise OMPF_MAX_IMAGE_BYTES.',
    context: { limit: maxBytes },
  });
}

/** A safe file name from an untrusted one: no folders, no control characters, not hidden, an image extension. */
export function uploadName(name: string, detectedExtension: string): string {
  let base = name.split(/[\\/]/).pop() ?? '';
  base = [...base]
    .filter((char) => !isControlCharacter(char))
    .join('')
    .trim()
    .replace(/^\.+/, '');
  if (base === '') base = 'image';
  let ext = extname(base);
  let stem = base.slice(0, base.length - ext.length) || 'image';
  if (!(ext.toLowerCase() in CONTENT_TYPES)) {
    stem = base;
    ext = detectedExtension;
  }
  return `${stem.slice(0, 150)}${ext}`;
}

function folderPrefix(folder: string | undefined): string {
  const trimmed = (folder ?? '').trim().replace(/^\/+|\/+$/g, '');
  if (trimmed === '') return '';
  validateGalleryKey(trimmed, { requireImageExtension: false });
  return `${trimmed}/`;
}

function thumbnailWidth(w: string | undefined): number | undefined {
  if (w === undefined) return undefined;
  if (!/^\d{2,4}$/.test(w) || Number(w) < 16 || Number(w) > 1024) {
    throw new InvalidInputError(`w must be a whole number of pixels from 16 to 1024; got '${w}'.`);
  }
  return Number(w);
}
