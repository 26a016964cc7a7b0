import { copyFileSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import type { LocalServer } from '../../lib/server/serve';
import { CHROMIUM, oneLineError } from '../helpers/shared';
import { eventually, photo, startTestServer, workDir } from '../server/server-helpers';

const ARTIFACTS = resolve(__dirname, '..', '..', 'test-artifacts');
const CLASSES = ['okapi', 'rhino', 'dolphin', 'Leopards', 'starfish'];
const PER_CLASS = 8;

/**
 * The search page in a real headless Chromium (Debian's package, driven by playwright-core): pick a
 * query image, see the grid, click through, change N and the prefix, add images, see failures.
 */
describe('search page (headless Chromium)', () => {
  const gallery: Record<string, string> = {};
  for (const cls of CLASSES) {
    for (let i = 1; i <= PER_CLASS; i++) gallery[`${cls}/${i}.jpg`] = photo(cls, i);
  }
  const work = workDir(gallery);
  writeFileSync(join(work.gallery, 'corrupt.png'), 'not really a png');
  let server: LocalServer;
  let context: BrowserContext;
  let page: Page;
  const pageErrors: string[] = [];
  const foreignRequests: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw oneLineError(
        `${CHROMIUM} is missing: run the tests with \`npm test\` (its globalSetup installs Debian's chromium as root) or run \`sudo apt-get install -y --no-install-recommends chromium\`.`,
      );
    }
    server = await startTestServer(work);
    context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'ompf-chromium-')), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-quic',
        '--no-first-run',
      ],
      viewport: { width: 1360, height: 900 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (error) => pageErrors.push(error.message));
    page.on('request', (request) => {
      const url = request.url();
      if (!url.startsWith(server.url) && !url.startsWith('blob:') && !url.startsWith('data:')) {
        foreignRequests.push(url);
      }
    });
    await page.goto(server.url);
  });

  afterAll(async () => {
    await context?.close();
    await server?.close();
  });

  /** The keys of the result cards, read in one step (the grid may be re-rendered at any moment). */
  const resultKeys = (): Promise<string[]> =>
    page
      .locator('#results .result')
      .evaluateAll((cards: { getAttribute(name: string): string | null }[]) =>
        cards.map((card) => card.getAttribute('data-key') ?? ''),
      );

  it('shows the indexing status with counts and the failed file with its reason', async () => {
    // Assess
    await page
      .getByTestId('count-indexed')
      .filter({ hasText: String(CLASSES.length * PER_CLASS) })
      .waitFor();
    await page.getByTestId('count-failed').filter({ hasText: '1' }).waitFor();
    await expectText(page.getByTestId('failures'), /corrupt\.png: .*not an image/i);
    await expectText(page.locator('#status-pill'), /40 images indexed · 1 failed/);
  });

  it('searches by a picked image and shows its class first, in ranking order, with distances', async () => {
    // Act
    await page.getByTestId('query-file').setInputFiles(photo('okapi', 30));
    await page.locator('#results .result').nth(11).waitFor();
    // Assess
    const keys = await resultKeys();
    expect(keys).toHaveLength(12);
    expect(keys.slice(0, 5).every((key) => key.startsWith('okapi/'))).toBe(true);
    const distances = (await page.locator('#results .result .distance').allTextContents()).map(Number);
    // In ranking order (DBA-augmented vectors), each distance to the image's own vector.
    expect(distances.every((d) => Number.isFinite(d) && d >= 0)).toBe(true);
    const thumbnail = page.locator('#results .result img').first();
    await eventually(async () =>
      expect(await thumbnail.evaluate((img: { naturalWidth: number }) => img.naturalWidth)).toBeGreaterThan(
        0,
      ),
    );
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'search-page.png'), fullPage: true });
  });

  it('searches by a result when it is clicked, leaving that image out', async () => {
    // Prepare
    const clicked = (await resultKeys())[2]!;
    // Act
    await page.locator('#results .result').nth(2).locator('button.pick').click();
    await page.locator('#query-caption').filter({ hasText: clicked }).waitFor();
    await eventually(async () => expect(await resultKeys()).not.toContain(clicked));
    // Assess
    const keys = await resultKeys();
    expect(keys[0]!.split('/')[0]).toBe(clicked.split('/')[0]);
    expect(page.url()).toContain(`#key=${encodeURIComponent(clicked)}`);
  });

  it('honours N and the prefix filter', async () => {
    // Act
    await page.getByTestId('n').fill('5');
    await page.getByTestId('n').dispatchEvent('change');
    await eventually(async () => expect(await resultKeys()).toHaveLength(5));
    await page.getByTestId('prefix').fill('rhino/');
    // Assess
    await eventually(async () => {
      const keys = await resultKeys();
      expect(keys).toHaveLength(5);
      expect(keys.filter((key) => !key.startsWith('rhino/'))).toEqual([]);
    });
    await page.getByTestId('prefix').fill('');
  });

  it('explains an N out of range instead of searching', async () => {
    // Act
    await page.getByTestId('n').fill('500');
    await page.getByTestId('n').dispatchEvent('change');
    // Assess
    await expectText(page.locator('#message'), /from 1 to 100/);
    await page.getByTestId('n').fill('12');
    await page.getByTestId('n').dispatchEvent('change');
    await page.locator('#message').waitFor({ state: 'hidden' });
  });

  it('adds images to the gallery, refuses a non-image, and shows the new count', async () => {
    // Prepare
    const notAnImage = join(work.dir, 'notes.jpg');
    writeFileSync(notAnImage, 'plain text pretending to be a JPEG');
    await page.locator('#add-folder').fill('added');
    // Act
    await page.getByTestId('add-files').setInputFiles([photo('rhino', 40), notAnImage]);
    // Assess
    await expectText(page.locator('#uploads'), /queued ✓/);
    await expectText(page.locator('#uploads'), /not an image/);
    await page
      .getByTestId('count-indexed')
      .filter({ hasText: String(CLASSES.length * PER_CLASS + 1) })
      .waitFor();
    expect(existsSync(join(work.gallery, 'added', 'image_0040.jpg'))).toBe(true);
    expect(existsSync(join(work.gallery, 'added', 'notes.jpg'))).toBe(false);
    await page.locator('#failures-box summary').click();
    await page.evaluate('window.scrollTo(0, 0)');
    await page.screenshot({ path: join(ARTIFACTS, 'search-page-after-upload.png'), fullPage: true });
  });

  it('lists duplicate groups with thumbnails, and deletes a member from the view', async () => {
    // Prepare: a byte-identical copy of a gallery photo, dropped into the folder.
    copyFileSync(photo('okapi', 1), join(work.gallery, 'okapi', 'copy of 1.jpg'));
    await page
      .getByTestId('count-indexed')
      .filter({ hasText: String(CLASSES.length * PER_CLASS + 2) })
      .waitFor();
    // Act
    await page.getByTestId('find-duplicates').click();
    // Assess: its group, the copy marked exact, thumbnails loaded.
    const group = page.locator('#duplicate-groups .group', {
      has: page.locator('[data-key="okapi/copy of 1.jpg"]'),
    });
    await group.waitFor();
    expect(
      await group
        .locator('.duplicate')
        .evaluateAll((cards: { getAttribute(name: string): string | null }[]) =>
          cards.map((card) => card.getAttribute('data-key')).sort(),
        ),
    ).toEqual(['okapi/1.jpg', 'okapi/copy of 1.jpg']);
    await expectText(group.locator('[data-key="okapi/copy of 1.jpg"] .distance'), /exact copy/);
    await expectText(page.getByTestId('duplicates-summary'), /\d+ groups? at threshold/);
    const thumbnail = group.locator('img').first();
    await eventually(async () =>
      expect(await thumbnail.evaluate((img: { naturalWidth: number }) => img.naturalWidth)).toBeGreaterThan(
        0,
      ),
    );
    await page.screenshot({ path: join(ARTIFACTS, 'duplicates-view.png'), fullPage: true });
    // Act: delete the copy from the view (confirming the dialog).
    page.once('dialog', (dialog) => void dialog.accept());
    await group.locator('[data-key="okapi/copy of 1.jpg"] button', { hasText: 'delete' }).click();
    // Assess: gone from the view and from the folder. (Scoped to the groups: an earlier test's search
    // results may still list the same key, which would make the page-wide locator ambiguous.)
    await page
      .getByTestId('duplicate-groups')
      .locator('[data-key="okapi/copy of 1.jpg"]')
      .waitFor({ state: 'detached' });
    expect(existsSync(join(work.gallery, 'okapi', 'copy of 1.jpg'))).toBe(false);
  });

  it('made no request beyond this server and threw no script error', () => {
    expect(foreignRequests).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});

async function expectText(locator: ReturnType<Page['locator']>, pattern: RegExp): Promise<void> {
  await eventually(async () => expect((await locator.textContent()) ?? '').toMatch(pattern));
}
