import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { type App, Tags, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { resolveModelSpec } from '../adapters/models/model-registry';
import { acknowledgeNagFindings } from './nag-suppressions';
import { OmpfStack } from './ompf-stack';
import { parseStageConfig } from './stage-config';

/**
 * Build the stack for the stage named by context (`-c stage=dev`), with that stage's settings from
 * cdk.json. Optional context: `model` (overrides the stage's model), `previousModel` (likewise) and `modelsDir` (where the model
 * file is read from; default OMPF_MODELS_DIR, else the CLI's per-user cache).
 */
export function buildOmpfApp(app: App): OmpfStack {
  const stage = app.node.tryGetContext('stage') as string | undefined;
  if (!stage)
    throw new Error('Name a stage: `npx cdk deploy -c stage=dev` (stages are in cdk.json, "ompf:stages").');
  const stages = (app.node.tryGetContext('ompf:stages') ?? {}) as Record<string, unknown>;
  const parsed = parseStageConfig(stage, stages[stage]);
  const dba = app.node.tryGetContext('dba') as string | undefined;
  const flip = app.node.tryGetContext('flip') as string | undefined;
  const config = {
    ...parsed,
    embedding: {
      ...parsed.embedding,
      dba: dba === undefined ? parsed.embedding.dba : Number(dba),
      flip: flip === undefined ? parsed.embedding.flip : flip === 'true',
    },
  };
  if (!Number.isInteger(config.embedding.dba) || config.embedding.dba < 0 || config.embedding.dba > 10) {
    throw new Error(`-c dba=${dba}: give 0 (off) to 10 neighbours.`);
  }
  const modelName = (app.node.tryGetContext('model') as string | undefined) ?? config.model;
  const model = resolveModelSpec(modelName);
  const previousName =
    (app.node.tryGetContext('previousModel') as string | undefined) ?? config.previousModel;
  const previousModel = previousName === undefined ? undefined : resolveModelSpec(previousName);
  const modelsDir = resolve(
    (app.node.tryGetContext('modelsDir') as string | undefined) ??
      process.env.OMPF_MODELS_DIR ??
      join(homedir(), '.cache', 'ompf', 'models'),
  );
  const stack = new OmpfStack(app, `Ompf-${stage}`, {
    stage,
    config: { ...config, model: model.id },
    model,
    ...(previousModel && previousModel.id !== model.id ? { previousModel } : {}),
    modelsDir,
    description: `ompf image similarity search (${stage})`,
    ...(process.env.CDK_DEFAULT_ACCOUNT && process.env.CDK_DEFAULT_REGION
      ? { env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION } }
      : {}),
  });
  Tags.of(stack).add('project', 'ompf');
  Tags.of(stack).add('stage', stage);
  // cdk-nag v3: a policy-validation plugin; any unacknowledged finding fails synth.
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
  acknowledgeNagFindings(stack, {
    multiAz: config.database.multiAz,
    destroy: config.removalPolicy === 'destroy',
  });
  return stack;
}
