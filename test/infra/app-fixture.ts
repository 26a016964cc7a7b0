import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { buildOmpfApp } from '../../lib/infra/app';
import type { OmpfStack } from '../../lib/infra/ompf-stack';
import { MODELS_DIR } from '../helpers/shared';

export const CDK_JSON = JSON.parse(readFileSync(join(__dirname, '..', '..', 'cdk.json'), 'utf8')) as {
  app: string;
  context: Record<string, unknown>;
};

/**
 * The stack of one stage as `cdk synth -c stage=...` builds it, with cdk.json's context. Bundling is
 * skipped here (the synth test does it for real); the model is the small one the tests have.
 */
export function synthStage(
  stage: string,
  extra: Record<string, unknown> = {},
): { stack: OmpfStack; template: Template } {
  const app = new App({
    context: {
      ...CDK_JSON.context,
      stage,
      model: 'mobilenetv2-int8',
      modelsDir: MODELS_DIR,
      'aws:cdk:bundling-stacks': [],
      ...extra,
    },
  });
  const stack = buildOmpfApp(app);
  return { stack, template: Template.fromStack(stack) };
}
