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
 * cdk.json. Optional context: `model` (overrides the stage's model) and `modelsDir` (where the model
 * file is read from; default OMPF_MODELS_DIR, else the CLI's per-user cache).
 */
export function buildOmpfApp(app: App): OmpfStack {
  const stage = app.node.tryGetContext('stage') as string | undefined;
  if (!stage)
    throw new Error('Name a stage: `npx cdk deploy -c stage=dev` (stages are in cdk.json, "ompf:stages").');
  const stages = (app.node.tryGetContext('ompf:stages') ?? {}) as Record<string, unknown>;
  const config = parseStageConfig(stage, stages[stage]);
  const modelName = (app.node.tryGetContext('model') as string | undefined) ?? config.model;
  const model = resolveModelSpec(modelName);
  const modelsDir = resolve(
    (app.node.tryGetContext('modelsDir') as string | undefined) ??
      process.env.OMPF_MODELS_DIR ??
      join(homedir(), '.cache', 'ompf', 'models'),
  );
  const stack = new OmpfStack(app, `Ompf-${stage}`, {
    stage,
    config: { ...config, model: model.id },
    model,
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
