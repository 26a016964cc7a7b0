import { InvalidArgumentError, type Command } from 'commander';
import {
  DEFAULT_DUPLICATE_THRESHOLD,
  DEFAULT_HASH_BITS,
  DuplicateFinder,
  HASH_CONFIRMED_CEILING,
  MAX_DUPLICATE_GROUPS_PAGE,
  MAX_HASH_BITS,
} from '../core/duplicates';
import type { Config } from '../runtime/config';
import { resolveModelSpec } from '../adapters/models/model-registry';
import { runCopyDetection } from '../bench/copy-detection-run';
import type { OperatingPoint } from '../core/copy-detection';
import { openEvaluation, openStore } from '../runtime/local';
import { productEmbedder } from '../runtime/product';
import { printJson, progressBar, table } from './output';

/** `ompf duplicates`: near-duplicate groups of the local index (lib/core/duplicates.ts). Thin. */
export interface DuplicatesCommandContext {
  readonly config: () => Config;
  readonly json: () => boolean;
  readonly say: (text: string) => void;
  readonly run: <Args extends unknown[]>(
    action: (...args: Args) => Promise<void>,
  ) => (...args: Args) => Promise<void>;
}

function distance(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n > 0.5)
    throw new InvalidArgumentError('a cosine distance from 0 to 0.5');
  return n;
}

function hashBits(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > MAX_HASH_BITS) {
    throw new InvalidArgumentError(`a whole number of bits from 0 to ${MAX_HASH_BITS}`);
  }
  return n;
}

function groupCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_DUPLICATE_GROUPS_PAGE) {
    throw new InvalidArgumentError(`a whole number from 1 to ${MAX_DUPLICATE_GROUPS_PAGE}`);
  }
  return n;
}

export function addDuplicatesCommand(
  program: Command,
  { config, json, say, run }: DuplicatesCommandContext,
): void {
  program
    .command('duplicates')
    .description(
      'Groups of near-duplicates in the index (the same picture re-saved, resized, cropped, re-encoded or lightly edited), largest group first; byte-identical copies are marked exact.',
    )
    .option(
      '--threshold <distance>',
      `cosine distance between two images' own vectors up to which they are duplicates (default ${DEFAULT_DUPLICATE_THRESHOLD})`,
      distance,
    )
    .option(
      '--hash-bits <bits>',
      `perceptual-hash bits (of 64) within which two images the vectors place up to ${HASH_CONFIRMED_CEILING} apart are duplicates too (default ${DEFAULT_HASH_BITS}; 0: equal hashes only)`,
      hashBits,
    )
    .option('--limit <groups>', 'groups to list', groupCount, 50)
    .option('--cursor <cursor>', 'the next page (nextCursor of the previous one)')
    .action(
      run(async (options: { threshold?: number; hashBits?: number; limit: number; cursor?: string }) => {
        const store = await openStore(config());
        try {
          const page = await new DuplicateFinder(store).groups(options);
          if (json()) return printJson(page);
          say(
            `${page.total} groups of duplicates at threshold ${page.threshold}, hash bits ${page.hashBits} (${page.basis})`,
          );
          for (const [n, group] of page.groups.entries()) {
            say(`\ngroup ${n + 1}: ${group.members.length} images`);
            say(
              table(
                ['key', 'distance', 'hash bits', 'exact', 'size'],
                group.members.map((m) => [
                  m.key,
                  m.distance.toFixed(4),
                  m.hashBits === undefined ? '' : String(m.hashBits),
                  m.exact ? 'yes' : '',
                  `${m.width}x${m.height}, ${m.bytes} B`,
                ]),
              ),
            );
          }
          if (page.nextCursor) say(`\nmore: ompf duplicates --cursor ${page.nextCursor}`);
        } finally {
          await store.close();
        }
      }),
    );

  program
    .command('eval-duplicates')
    .description(
      "Copy detection in the style of INRIA Copydays: attacked copies (JPEG, crops, resizes, mirror, strong edits) of photos of DIR, mixed into a gallery of distractors; precision and recall per attack family and over the threshold, for the model's vectors alone, a perceptual hash (pHash) alone, and the duplicate groups' rule combining them (with the store's neighbour lists, OMPF_DBA). Chooses the threshold with precision >= --min-precision outside the 'strong' family.",
    )
    .argument('<dir>', 'labelled photos to attack (the dev set)')
    .option(
      '--distractors <dir>',
      'photos to mix in (caltech101-other; its Faces_easy/Faces pairs become a family)',
    )
    .option('--originals <n>', 'photos of DIR to attack', groupCount, 100)
    .option(
      '--distractor-count <n>',
      'distractor photos, spread over the folder',
      (v) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0 || n > 100_000)
          throw new InvalidArgumentError('a whole number from 0 to 100000');
        return n;
      },
      2000,
    )
    .option(
      '--min-precision <p>',
      'precision the chosen threshold must keep',
      (v) => {
        const n = Number(v);
        if (!(n > 0 && n <= 1)) throw new InvalidArgumentError('a fraction in (0, 1]');
        return n;
      },
      0.99,
    )
    .option(
      '--hash-bits <bits>',
      `the duplicate rule's perceptual-hash tolerance to measure (default ${DEFAULT_HASH_BITS})`,
      hashBits,
    )
    .action(
      run(
        async (
          dir: string,
          options: {
            distractors?: string;
            originals: number;
            distractorCount: number;
            minPrecision: number;
            hashBits?: number;
          },
        ) => {
          const cfg = config();
          const evaluation = await openEvaluation(cfg);
          const embedder = productEmbedder(evaluation.embedder, resolveModelSpec(cfg.model), cfg);
          const bar = progressBar('embedding and hashing', !json());
          let started = false;
          const report = await runCopyDetection(
            embedder,
            evaluation.preprocessor,
            {
              dir,
              distractorsDir: options.distractors,
              originals: options.originals,
              distractors: options.distractorCount,
              minPrecision: options.minPrecision,
              neighbours: cfg.dba,
              hashBits: options.hashBits,
            },
            (done, total) => {
              if (!started) bar.start(total);
              started = true;
              bar.update(done);
            },
          );
          bar.stop();
          if (json()) return printJson({ model: embedder.modelId, ...report });
          const families = (point: OperatingPoint) =>
            Object.entries(point.byFamily).map(([family, f]) => [
              family,
              f.queries,
              f.precision.toFixed(3),
              f.recall.toFixed(3),
            ]);
          say(
            `${report.queries} queries (${report.originals} originals x ${report.attacks.length} attacks, plus real pairs), gallery of ${report.gallery}`,
          );
          say(
            `\n${embedder.modelId}: threshold ${report.cnn.chosen.threshold} (cosine distance), precision ${report.cnn.chosen.precision.toFixed(3)}, recall ${report.cnn.chosen.recall.toFixed(3)}`,
          );
          say(table(['family', 'queries', 'precision', 'recall'], families(report.cnn.chosen)));
          say(
            `\npHash at 10 bits: precision ${report.phash.at10Bits.precision.toFixed(3)}, recall ${report.phash.at10Bits.recall.toFixed(3)}; chosen ${report.phash.chosen.threshold} bits: precision ${report.phash.chosen.precision.toFixed(3)}, recall ${report.phash.chosen.recall.toFixed(3)}`,
          );
          say(table(['family', 'queries', 'precision', 'recall'], families(report.phash.chosen)));
          const product = report.product;
          say(
            `\nduplicate groups (vectors, or hash within ${product.hashBits} bits and ${HASH_CONFIRMED_CEILING} cosine, among each image's ${product.neighbours} nearest): threshold ${product.chosen.threshold}, precision ${product.chosen.precision.toFixed(3)}, recall ${product.chosen.recall.toFixed(3)}`,
          );
          say(table(['family', 'queries', 'precision', 'recall'], families(product.chosen)));
          say(
            table(
              ['hash bits', 'precision', 'recall'],
              product.byHashBits.map((p) => [
                String(p.hashBits),
                p.precision.toFixed(3),
                p.recall.toFixed(3),
              ]),
            ),
          );
        },
      ),
    );
}
