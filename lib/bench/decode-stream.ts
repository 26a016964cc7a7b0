import { readFileSync } from 'node:fs';
import { SharpImagePreprocessor } from '../adapters/image/sharp-preprocessor';
import { IMAGENET_PREPROCESS } from '../core/model-spec';

/**
 * Child process entry of the bench's interference stage (forked from the built bench): decodes the
 * photos named in argv[2] (a JSON array of paths) back to back, as the indexer's preprocessing does,
 * from the parent's 'start' message to its 'stop' message, then reports how many it decoded and in how
 * many seconds. A separate process, so that its share of the cores is taken the way another program's
 * would be, whatever the parent's JavaScript thread is doing.
 */
const photos = (JSON.parse(process.argv[2] ?? '[]') as string[]).map((path) => readFileSync(path));
const preprocessor = new SharpImagePreprocessor(IMAGENET_PREPROCESS, { maxBytes: 1e9, maxPixels: 1e9 });
let running = false;

process.on('message', (message) => {
  if (message === 'start') {
    running = true;
    void decode();
  } else if (message === 'stop') {
    running = false;
  }
});
process.send?.('ready');

async function decode(): Promise<void> {
  const started = performance.now();
  let decoded = 0;
  while (running) {
    await preprocessor.prepare(photos[decoded % photos.length]!);
    decoded++;
  }
  process.send?.({ decoded, seconds: (performance.now() - started) / 1000 }, () => process.exit(0));
}
