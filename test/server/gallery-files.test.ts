import { mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidInputError, NotFoundError } from '../../lib/core/errors';
import { GalleryFiles, validateGalleryKey } from '../../lib/server/gallery-files';
import { uploadName } from '../../lib/server/local-api';

function freshGallery(): Promise<GalleryFiles> {
  return GalleryFiles.open(join(mkdtempSync(join(tmpdir(), 'ompf-files-')), 'gallery'), 1024 * 1024);
}

describe('gallery keys', () => {
  it.each([
    ['../outside.jpg', "'..' segment"],
    ['a/../../outside.jpg', "'..' segment"],
    ['..', "'..' segment"],
    ['/etc/passwd.jpg', 'absolute path'],
    ['a\\..\\b.jpg', 'backslash'],
    ['a//b.jpg', 'empty'],
    ['./a.jpg', 'empty or "." segment'],
    ['.ompf-uploads/x.jpg', 'hidden'],
    ['cats/.secret.jpg', 'hidden'],
    ['cats/tom.txt', 'extension'],
    ['tab\there.jpg', 'control character'],
    ['', 'non-empty'],
    ['k'.repeat(1025) + '.jpg', 'longer than 1024 bytes'],
  ])('refuses %.40p (%s) with a clear InvalidInputError', (key, why) => {
    // Act
    const act = () => validateGalleryKey(key);
    // Assess
    expect(act).toThrow(InvalidInputError);
    expect(act).toThrow(why);
  });

  it.each(['tom.jpg', 'cats/tom.JPG', 'a b/ö+%20.png', 'deep/er/still.webp', 'x..y.jpg'])(
    'accepts %p',
    (key) => {
      expect(() => validateGalleryKey(key)).not.toThrow();
    },
  );

  it.each([
    ['photo.jpg', '.png', 'photo.jpg'],
    ['../../evil.jpg', '.jpg', 'evil.jpg'],
    ['C:\\Users\\me\\cat.png', '.png', 'cat.png'],
    ['.hidden.jpg', '.jpg', 'hidden.jpg'],
    ['no-extension', '.webp', 'no-extension.webp'],
    ['notes.txt', '.jpg', 'notes.txt.jpg'],
    ['', '.gif', 'image.gif'],
    ['bell\u0007.jpg', '.jpg', 'bell.jpg'],
  ])('names an upload sent as %p (detected %s) %p', (name, detected, expected) => {
    expect(uploadName(name, detected)).toBe(expected);
  });
});

describe('GalleryFiles', () => {
  it('creates a missing gallery folder', async () => {
    // Prepare
    const parent = mkdtempSync(join(tmpdir(), 'ompf-files-'));
    // Act
    const files = await GalleryFiles.open(join(parent, 'not', 'yet'), 100);
    // Assess
    expect(readdirSync(files.root)).toEqual([]);
  });

  it('never overwrites other content under a taken name: the next free name is used', async () => {
    // Prepare
    const files = await freshGallery();
    await files.write('cats/tom.jpg', Buffer.from('first'), { replace: false });
    // Act
    const second = await files.write('cats/tom.jpg', Buffer.from('second'), { replace: false });
    const again = await files.write('cats/tom.jpg', Buffer.from('second'), { replace: false });
    // Assess
    expect(second).toEqual({ key: 'cats/tom-2.jpg', duplicate: false });
    expect(again).toEqual({ key: 'cats/tom-2.jpg', duplicate: true });
    expect(readFileSync(join(files.root, 'cats', 'tom.jpg'), 'utf8')).toBe('first');
    expect(await files.listKeys()).toEqual(['cats/tom-2.jpg', 'cats/tom.jpg']);
  });

  it('keeps one file for concurrent writes of the same bytes and every file for different bytes', async () => {
    // Prepare
    const files = await freshGallery();
    // Act
    const same = await Promise.all(
      Array.from({ length: 8 }, () => files.write('same.jpg', Buffer.from('identical'), { replace: false })),
    );
    const different = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        files.write('clash.jpg', Buffer.from(`content ${i}`), { replace: false }),
      ),
    );
    // Assess
    expect(new Set(same.map((w) => w.key))).toEqual(new Set(['same.jpg']));
    expect(same.filter((w) => !w.duplicate)).toHaveLength(1);
    const contents = different.map((w) => readFileSync(join(files.root, w.key), 'utf8')).sort();
    expect(contents).toEqual(['content 0', 'content 1', 'content 2', 'content 3', 'content 4']);
    expect(readdirSync(join(files.root, '.ompf-uploads'))).toEqual([]);
  });

  it('refuses a key that leaves the gallery through a symbolic link', async () => {
    // Prepare
    const files = await freshGallery();
    const outside = mkdtempSync(join(tmpdir(), 'ompf-outside-'));
    writeFileSync(join(outside, 'secret.jpg'), 'secret');
    symlinkSync(outside, join(files.root, 'link'));
    // Act
    const act = files.info('link/secret.jpg');
    // Assess
    await expect(act).rejects.toThrow(NotFoundError);
  });

  it('refuses to write under a folder path that is a file', async () => {
    // Prepare
    const files = await freshGallery();
    await files.write('taken.jpg', Buffer.from('x'), { replace: false });
    mkdirSync(join(files.root, 'ok'));
    // Act
    const act = files.write('taken.jpg/inside.jpg', Buffer.from('y'), { replace: false });
    // Assess
    await expect(act).rejects.toThrow(InvalidInputError);
  });
});
