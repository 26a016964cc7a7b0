import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface SynthOptions {
  readonly repoRoot: string;
  readonly stage: string;
  /** A built-in model name or a spec .json path (cdk context `model`); the stage's own when unset. */
  readonly model?: string | undefined;
  /** The stage's model before a change (cdk context `previousModel`). */
  readonly previousModel?: string | undefined;
  /** More cdk context (`dba`, `flip`: the embedding transform). */
  readonly context?: Readonly<Record<string, string>>;
  readonly modelsDir: string;
  readonly outDir: string;
}

/**
 * `cdk synth` exactly as a user runs it before `cdk deploy` (the repository's cdk.json, local bundling,
 * cdk-nag), into `outDir`. Returns the stack name.
 */
export async function synthStage(options: SynthOptions): Promise<string> {
  const args = ['synth', '-c', `stage=${options.stage}`, '-c', `modelsDir=${options.modelsDir}`];
  if (options.model) args.push('-c', `model=${options.model}`);
  if (options.previousModel) args.push('-c', `previousModel=${options.previousModel}`);
  for (const [key, value] of Object.entries(options.context ?? {})) args.push('-c', `${key}=${value}`);
  args.push('--no-notices', '-q', '-o', options.outDir);
  try {
    await run(join(options.repoRoot, 'node_modules', '.bin', 'cdk'), args, {
      cwd: options.repoRoot,
      env: { ...process.env, CDK_DISABLE_VERSION_CHECK: '1' },
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    const detail = (stderr ?? (error as Error).message).trim().split('\n');
    // CDK prints its own stack first; the line that says what failed starts with «ErrorName».
    const reason = detail.find((line) => /^«\w+»/.test(line.trim())) ?? detail.slice(-8).join('\n');
    throw new Error(`cdk synth of stage ${options.stage} failed: ${reason.trim()}`);
  }
  return `Ompf-${options.stage}`;
}
