import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { buildOmpfApp } from '../../lib/infra/app';
import { IMAGE_SUFFIXES } from '../../lib/infra/ompf-stack';
import { modelLayer } from '../../lib/infra/packaging';
import { resolveModelSpec } from '../../lib/adapters/models/model-registry';
import { MODELS_DIR } from '../helpers/shared';
import { loadAwsConfig } from '../../lib/runtime/aws';
import { CDK_JSON, synthStage } from './app-fixture';

type Resources = Record<
  string,
  { Type: string; Properties: Record<string, unknown>; DeletionPolicy?: string }
>;

/** What would break production if it changed: asserted on the synthesized template of each stage. */
describe('Ompf stack (dev)', () => {
  const { stack, template } = synthStage('dev');
  const resources = template.toJSON().Resources as Resources;
  const logicalId = (construct: { node: { defaultChild?: unknown } }) =>
    stack.getLogicalId(construct.node.defaultChild as never);
  const indexerId = logicalId(stack.indexer);
  const queryId = logicalId(stack.query);

  it('indexes from SQS with ReportBatchItemFailures, a batch size, a batching window and maxConcurrency', () => {
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: indexerId },
      EventSourceArn: { 'Fn::GetAtt': [logicalId(stack.queue), 'Arn'] },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      BatchSize: 10,
      MaximumBatchingWindowInSeconds: 5,
      ScalingConfig: { MaximumConcurrency: 2 },
    });
  });

  it('sends poison messages to a dead-letter queue, with a visibility timeout >= 6x the indexer timeout', () => {
    const queue = resources[logicalId(stack.queue)]!.Properties;
    const indexer = resources[indexerId]!.Properties;
    expect(queue.RedrivePolicy).toEqual({
      deadLetterTargetArn: { 'Fn::GetAtt': [logicalId(stack.deadLetterQueue), 'Arn'] },
      maxReceiveCount: 5,
    });
    expect(queue.VisibilityTimeout as number).toBeGreaterThanOrEqual(6 * (indexer.Timeout as number));
    expect(queue.MaximumMessageSize as number).toBeGreaterThanOrEqual(64 * 1024);
    for (const q of [stack.queue, stack.deadLetterQueue]) {
      expect(resources[logicalId(q)]!.Properties.SqsManagedSseEnabled).toBe(true);
    }
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          Match.objectLike({
            Effect: 'Allow',
            Principal: { Service: 's3.amazonaws.com' },
            Action: Match.arrayWith(['sqs:SendMessage']),
          }),
        ]),
      },
    });
  });

  it('keeps the bucket private, encrypted and TLS-only', () => {
    const bucket = resources[logicalId(stack.bucket)]!.Properties;
    expect(bucket.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    expect(bucket.BucketEncryption).toEqual({
      ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
    });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: logicalId(stack.bucket) },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Action: 's3:*',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ]),
      },
    });
    expect(bucket.LifecycleConfiguration).toEqual({
      Rules: [
        { Id: 'expire-query-uploads', Prefix: 'query-uploads/', ExpirationInDays: 1, Status: 'Enabled' },
      ],
    });
  });

  it('notifies the queue of created, removed and expired images only, for every image suffix in both cases', () => {
    const [notifications] = Object.values(resources).filter(
      (r) => r.Type === 'Custom::S3BucketNotifications',
    );
    const configs = (
      notifications!.Properties.NotificationConfiguration as {
        QueueConfigurations: {
          Events: string[];
          Filter?: { Key: { FilterRules: { Name: string; Value: string }[] } };
        }[];
      }
    ).QueueConfigurations;
    const pairs = configs.map(
      (c) => `${c.Events.join()} ${c.Filter?.Key.FilterRules.map((r) => `${r.Name}=${r.Value}`).join()}`,
    );
    const expected = IMAGE_SUFFIXES.flatMap((suffix) =>
      ['s3:ObjectCreated:*', 's3:ObjectRemoved:*', 's3:LifecycleExpiration:*'].map(
        (e) => `${e} suffix=${suffix}`,
      ),
    );
    expect(pairs.sort()).toEqual(expected.sort());
    expect(IMAGE_SUFFIXES).toEqual(
      expect.arrayContaining(['.jpg', '.JPG', '.jpeg', '.png', '.webp', '.avif']),
    );
  });

  const statementsOf = (functionId: string) => {
    const roleId = (resources[functionId]!.Properties.Role as { 'Fn::GetAtt': [string] })['Fn::GetAtt'][0];
    return Object.values(resources)
      .filter((r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.Roles).includes(roleId))
      .flatMap(
        (r) =>
          (r.Properties.PolicyDocument as { Statement: { Action: string | string[]; Resource: unknown }[] })
            .Statement,
      );
  };
  const actionsOf = (functionId: string) => statementsOf(functionId).flatMap((s) => [s.Action].flat());

  it('grants the functions exactly what they use: read the bucket, its database role; uploads only under query-uploads/', () => {
    const indexer = actionsOf(indexerId);
    const query = actionsOf(queryId);
    expect(indexer.sort()).toEqual([
      'rds-db:connect',
      's3:GetObject',
      's3:ListBucket',
      'sqs:ChangeMessageVisibility',
      'sqs:DeleteMessage',
      'sqs:GetQueueAttributes',
      'sqs:GetQueueUrl',
      'sqs:ReceiveMessage',
    ]);
    // GetQueueAttributes: GET /status reports the queues' depth.
    expect(query.sort()).toEqual([
      'rds-db:connect',
      's3:GetObject',
      's3:ListBucket',
      's3:PutObject',
      'sqs:GetQueueAttributes',
    ]);
    // Only the migrate step reads the admin secret (test/infra/security.test.ts walks every statement).
    expect(actionsOf(logicalId(stack.migrator)).sort()).toEqual([
      'secretsmanager:DescribeSecret',
      'secretsmanager:GetSecretValue',
    ]);
    for (const actions of [indexer, query]) {
      expect(actions.filter((a) => /^s3:(Delete|\*)|^s3:PutBucket|^iam:|^\*$/.test(a))).toEqual([]);
    }
    expect(indexer).not.toContain('s3:PutObject');
    const put = statementsOf(queryId).find((s) => [s.Action].flat().includes('s3:PutObject'));
    expect(JSON.stringify(put?.Resource)).toContain('/query-uploads/*');
  });

  it('configures every function with an environment its cold-start validation accepts', () => {
    for (const fn of [stack.indexer, stack.query, stack.migrator]) {
      const variables = (
        resources[logicalId(fn)]!.Properties.Environment as { Variables: Record<string, unknown> }
      ).Variables;
      expect(Object.keys(variables)).toEqual(
        expect.arrayContaining([
          'OMPF_BUCKET',
          'OMPF_MODEL',
          'OMPF_MODELS_DIR',
          'OMPF_UPLOADS_PREFIX',
          'NODE_EXTRA_CA_CERTS',
        ]),
      );
      // The migrate step logs in as the admin (its secret); the others as their role, with IAM tokens.
      expect(Object.keys(variables)).toEqual(
        expect.arrayContaining(
          fn === stack.migrator ? ['OMPF_DB_SECRET_ARN'] : ['OMPF_DB_HOST', 'OMPF_DB_PORT', 'OMPF_DB_USER'],
        ),
      );
      // Tokens (bucket name, secret ARN, database address) resolve at deploy time: give them
      // deploy-time-like values.
      const deployed: Record<string, string> = {
        OMPF_BUCKET: 'ompf-dev-gallery-1a2b3c',
        OMPF_DB_SECRET_ARN: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf',
        OMPF_DB_HOST: 'ompf-dev-database.abc123.eu-west-1.rds.amazonaws.com',
        OMPF_DB_PORT: '5433',
      };
      const env = Object.fromEntries(
        Object.entries(variables).map(([k, v]) => [k, typeof v === 'string' ? v : deployed[k]]),
      );
      expect(() => loadAwsConfig(env)).not.toThrow();
      expect(env.OMPF_MODELS_DIR).toBe('/opt/models');
    }
  });

  it('runs the functions on Node.js 24 in the VPC, with the native and model layers', () => {
    for (const id of [indexerId, queryId]) {
      const fn = resources[id]!.Properties;
      expect(fn.Runtime).toBe('nodejs24.x');
      expect(fn.Architectures).toEqual(['x86_64']);
      expect(fn.VpcConfig).toBeDefined();
      expect(fn.Layers).toHaveLength(2);
    }
    const layers = Object.values(resources).filter((r) => r.Type === 'AWS::Lambda::LayerVersion');
    expect(layers.map((l) => l.Properties.Description as string).sort()).toEqual([
      expect.stringMatching(/^ompf model mobilenetv2-int8 \(mobilenetv2-12-int8\.onnx, sha256 83530ad8/),
      expect.stringMatching(/^ompf native runtime: onnxruntime-node .* linux x86_64$/),
    ]);
  });

  it('keeps the database private, encrypted, TLS-only, reachable from the functions only', () => {
    const [db] = Object.values(resources).filter((r) => r.Type === 'AWS::RDS::DBInstance');
    expect(db!.Properties).toMatchObject({
      Engine: 'postgres',
      EngineVersion: expect.stringMatching(/^17\./),
      PubliclyAccessible: false,
      StorageEncrypted: true,
      MultiAZ: false,
      DeletionProtection: false,
    });
    template.hasResourceProperties('AWS::RDS::DBParameterGroup', { Parameters: { 'rds.force_ssl': '1' } });
    const ingress = Object.values(resources).filter(
      (r) => r.Type === 'AWS::EC2::SecurityGroupIngress' && r.Properties.FromPort === 5433,
    );
    expect(ingress).toHaveLength(1);
    expect(ingress[0]!.Properties.SourceSecurityGroupId).toBeDefined();
    expect(ingress[0]!.Properties.CidrIp).toBeUndefined();
    const subnets = Object.values(resources).filter((r) => r.Type === 'AWS::EC2::Subnet');
    expect(subnets.every((s) => s.Properties.MapPublicIpOnLaunch === false)).toBe(true);
    expect(Object.values(resources).some((r) => r.Type === 'AWS::EC2::InternetGateway')).toBe(false);
  });

  it('applies the migrations on deploy, again whenever a migration file, the model or the transform changes', () => {
    const [schema] = Object.values(resources).filter((r) => r.Type === 'AWS::CloudFormation::CustomResource');
    expect(schema!.Properties).toMatchObject({
      migrations: expect.stringMatching(/^[0-9a-f]{64}$/),
      model: 'mobilenetv2-int8',
      index: 'mobilenetv2-int8+whole+gem3+dba3',
    });
    // A transform change alone changes the resource, so CloudFormation runs the schema step (a new index).
    const changed = synthStage('dev', { dba: '0' }).template.toJSON().Resources as Resources;
    const [again] = Object.values(changed).filter((r) => r.Type === 'AWS::CloudFormation::CustomResource');
    expect(again!.Properties.index).toBe('mobilenetv2-int8+whole+gem3');
    const variables = Object.values(changed)
      .filter((r) => r.Type === 'AWS::Lambda::Function')
      .map(
        (r) => (r.Properties.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables,
      )
      .filter((v) => v?.OMPF_MODEL !== undefined);
    expect(variables.every((v) => v?.OMPF_DBA === '0')).toBe(true);
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(1 hour)',
      Targets: [Match.objectLike({ Input: '{"action":"maintain"}' })],
    });
  });

  it('requires an API key on every method, throttles, and answers gateway errors as JSON', () => {
    const methods = Object.values(resources).filter((r) => r.Type === 'AWS::ApiGateway::Method');
    expect(methods.map((m) => m.Properties.HttpMethod).sort()).toEqual([
      'GET',
      'GET',
      'GET',
      'GET',
      'GET',
      'POST',
      'POST',
    ]);
    expect(methods.every((m) => m.Properties.ApiKeyRequired === true)).toBe(true);
    template.hasResourceProperties('AWS::ApiGateway::UsagePlan', {
      Throttle: { RateLimit: 5, BurstLimit: 10 },
      Quota: { Limit: 5000, Period: 'DAY' },
    });
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      MethodSettings: Match.arrayWith([
        Match.objectLike({ ThrottlingRateLimit: 5, ThrottlingBurstLimit: 10 }),
      ]),
    });
    template.hasResourceProperties('AWS::ApiGateway::RestApi', { BinaryMediaTypes: ['image/*'] });
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'THROTTLED',
      StatusCode: '429',
      ResponseTemplates: { 'application/json': Match.stringLikeRegexp('"code":"throttled"') },
    });
  });

  it('alarms on the dead-letter queue, the oldest message age and every function error, with log retention', () => {
    const alarms = Object.values(resources)
      .filter((r) => r.Type === 'AWS::CloudWatch::Alarm')
      .map((r) => r.Properties);
    expect(alarms.map((a) => a.MetricName).sort()).toEqual(
      [
        '5XXError',
        'ApproximateAgeOfOldestMessage',
        'ApproximateNumberOfMessagesVisible',
        'Errors',
        'Errors',
        'Errors',
        'Errors',
      ].sort(),
    );
    expect(alarms.find((a) => a.MetricName === 'ApproximateAgeOfOldestMessage')?.Threshold).toBe(900);
    expect(alarms.every((a) => (a.AlarmActions as unknown[]).length === 1)).toBe(true);
    const groups = Object.values(resources).filter((r) => r.Type === 'AWS::Logs::LogGroup');
    expect(groups.length).toBeGreaterThanOrEqual(5);
    expect(groups.every((g) => g.Properties.RetentionInDays === 14)).toBe(true);
  });

  it('gives the operations function exactly what reconcile and the dead letters need', () => {
    const operations = logicalId(stack.operations);
    expect(actionsOf(operations).sort()).toEqual([
      'rds-db:connect',
      's3:ListBucket',
      'sqs:ChangeMessageVisibility',
      'sqs:DeleteMessage',
      'sqs:GetQueueAttributes',
      'sqs:GetQueueAttributes',
      'sqs:ListMessageMoveTasks',
      'sqs:ReceiveMessage',
      'sqs:SendMessage',
      'sqs:StartMessageMoveTask',
    ]);
    // It reads no object and no secret; it sends to the indexing queue and works the dead letters only.
    const send = statementsOf(operations).find((s) => [s.Action].flat().includes('sqs:SendMessage'));
    expect(JSON.stringify(send?.Resource)).toContain(logicalId(stack.queue));
    const move = statementsOf(operations).find((s) => [s.Action].flat().includes('sqs:StartMessageMoveTask'));
    expect(JSON.stringify(move?.Resource)).toContain(logicalId(stack.deadLetterQueue));
    expect(JSON.stringify(move?.Resource)).not.toContain(logicalId(stack.queue));
    const variables = (
      resources[operations]!.Properties.Environment as { Variables: Record<string, unknown> }
    ).Variables;
    expect(variables.OMPF_DB_USER).toBe('ompf_operator');
    expect(resources[operations]!.Properties.Layers).toBeUndefined();
  });

  it('schedules a daily reconcile and a follow-up pass every 5 minutes, and a dashboard of the metrics', () => {
    const rules = Object.values(resources).filter((r) => r.Type === 'AWS::Events::Rule');
    const inputs = rules.map((r) => [
      r.Properties.ScheduleExpression,
      JSON.parse(String((r.Properties.Targets as { Input?: string }[])[0]?.Input ?? '{}')) as unknown,
    ]);
    expect(inputs).toEqual(
      expect.arrayContaining([
        ['rate(1 day)', { action: 'reconcile', trigger: 'schedule' }],
        ['rate(5 minutes)', { action: 'reconcile', trigger: 'follow-up' }],
        ['rate(1 hour)', { action: 'maintain' }],
      ]),
    );
    const [dashboard] = Object.values(resources).filter((r) => r.Type === 'AWS::CloudWatch::Dashboard');
    const body = JSON.stringify(dashboard?.Properties.DashboardBody);
    for (const name of [
      'ImagesIndexed',
      'ImagesFailed',
      'EmbeddingMs',
      'DatabaseMs',
      'SearchMs',
      'ResultsReturned',
      'ApproximateAgeOfOldestMessage',
    ]) {
      expect(body).toContain(name);
    }
    // Tracing is off by default (a stage turns it on in cdk.json).
    expect(resources[logicalId(stack.query)]!.Properties.TracingConfig).toBeUndefined();
  });

  it('outputs the bucket, the API URL and how to get the API key', () => {
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(Object.keys(outputs)).toEqual(
      expect.arrayContaining(['BucketName', 'ApiUrl', 'GetApiKeyCommand', 'SearchExample']),
    );
    expect(JSON.stringify(outputs.GetApiKeyCommand!.Value)).toContain('aws apigateway get-api-key --api-key');
  });
});

describe('Ompf stack (prod)', () => {
  const { template } = synthStage('prod');
  const resources = template.toJSON().Resources as Resources;

  it('retains data: bucket retained, database snapshotted, deletion protection, Multi-AZ, longer logs', () => {
    const [db] = Object.values(resources).filter((r) => r.Type === 'AWS::RDS::DBInstance');
    expect(db!.DeletionPolicy).toBe('Snapshot');
    expect(db!.Properties).toMatchObject({
      DeletionProtection: true,
      MultiAZ: true,
      BackupRetentionPeriod: 14,
    });
    const buckets = Object.values(resources).filter((r) => r.Type === 'AWS::S3::Bucket');
    expect(buckets.every((b) => b.DeletionPolicy === 'Retain')).toBe(true);
    expect(Object.values(resources).some((r) => r.Type === 'Custom::S3AutoDeleteObjects')).toBe(false);
    const groups = Object.values(resources).filter((r) => r.Type === 'AWS::Logs::LogGroup');
    expect(groups.every((g) => g.Properties.RetentionInDays === 90)).toBe(true);
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      ScalingConfig: { MaximumConcurrency: 10 },
    });
  });
});

describe('stage settings and cdk-nag', () => {
  it.each([
    ['no stage', {}, /Name a stage/],
    ['an unknown stage', { stage: 'staging' }, /Unknown stage 'staging'/],
    ['an unknown model', { stage: 'dev', model: 'vgg16' }, /Unknown model 'vgg16'/],
  ])('refuses %s', (_name, context, message) => {
    const app = new App({ context: { ...CDK_JSON.context, 'aws:cdk:bundling-stacks': [], ...context } });
    expect(() => buildOmpfApp(app)).toThrow(message);
  });

  it('lists every invalid setting of a stage at once', () => {
    const stages = CDK_JSON.context['ompf:stages'] as Record<string, Record<string, unknown>>;
    const broken = {
      ...stages.dev,
      architecture: 'sparc',
      indexer: { ...(stages.dev!.indexer as object), maxConcurrency: 1 },
      query: { memoryMiB: 2048, timeoutSeconds: 60 },
    };
    const app = new App({
      context: {
        ...CDK_JSON.context,
        'ompf:stages': { dev: broken },
        stage: 'dev',
        'aws:cdk:bundling-stacks': [],
      },
    });
    expect(() => buildOmpfApp(app)).toThrow(/architecture.*indexer\.maxConcurrency.*query\.timeoutSeconds/);
  });

  it('fails synth on an AwsSolutions finding nobody acknowledged', () => {
    // Prepare: the real app plus one bucket that breaks the rules (no TLS enforcement, no access logs).
    const app = new App({
      context: {
        ...CDK_JSON.context,
        stage: 'dev',
        model: 'mobilenetv2-int8',
        'aws:cdk:bundling-stacks': [],
      },
    });
    buildOmpfApp(app);
    new s3.Bucket(new Stack(app, 'Careless'), 'Leaky');
    // Act + Assess
    expect(() => app.synth()).toThrow(/Careless\/Leaky[\s\S]*AwsSolutions-S1[\s\S]*AwsSolutions-S10/);
  });
});

describe('model layer', () => {
  const spec = resolveModelSpec('mobilenetv2-int8');
  const layer = (modelsDir: string) =>
    modelLayer(new Stack(new App(), 'ModelOnly'), 'Model', spec, modelsDir);

  it('refuses a model file that is none of the accepted files, saying what to do', () => {
    // Prepare: the shared copy with one byte changed (same size, so only the checksum can tell).
    const dir = mkdtempSync(join(tmpdir(), 'ompf-layer-'));
    const bytes = readFileSync(join(MODELS_DIR, spec.file));
    bytes[bytes.length - 10] = bytes[bytes.length - 10]! ^ 0xff;
    writeFileSync(join(dir, spec.file), bytes);
    // Act / Assess
    expect(() => layer(dir)).toThrow(
      /has SHA-256 [0-9a-f]{64}, expected cc028fe6\S+, 3655033 bytes or 83530ad8\S+, 3655640 bytes.*ompf models pull mobilenetv2-int8.*deploy again/s,
    );
  });

  it('refuses a missing model file, naming the pinned download', () => {
    expect(() => layer(mkdtempSync(join(tmpdir(), 'ompf-layer-')))).toThrow(
      /is not installed.*ompf models pull mobilenetv2-int8.*https:\/\/huggingface\.co\/onnxmodelzoo\/mobilenetv2-12-int8\/resolve\/main\/mobilenetv2-12-int8\.onnx/s,
    );
  });

  it('packages an accepted copy under its own checksum', () => {
    const construct = layer(MODELS_DIR);
    const template = Template.fromStack(Stack.of(construct)).toJSON() as { Resources: Resources };
    const [resource] = Object.values(template.Resources).filter(
      (r) => r.Type === 'AWS::Lambda::LayerVersion',
    );
    expect(resource!.Properties.Description).toBe(
      'ompf model mobilenetv2-int8 (mobilenetv2-12-int8.onnx, sha256 83530ad811bc31d2b60a5599a21265a5057608c9b044b4ee758cc22f2309f54f)',
    );
  });
});

describe('a custom model in the cloud', () => {
  it('ships its spec in the model layer and names it as OMPF_MODEL; the migrate step gets that layer, not the native one', () => {
    // Prepare: a custom spec naming the shared mobilenet file by an absolute path (meaningless in Lambda)
    const dir = mkdtempSync(join(tmpdir(), 'ompf-custom-'));
    const specFile = join(dir, 'my-model.json');
    const builtin = resolveModelSpec('mobilenetv2-int8');
    writeFileSync(
      specFile,
      JSON.stringify({
        id: 'my-model',
        file: join(MODELS_DIR, builtin.file),
        sha256: builtin.accepted[1]!.sha256,
        dimension: builtin.dimension,
      }),
    );

    // Act
    const { template } = synthStage('dev', { model: specFile });

    // Assess
    const resources = (template.toJSON() as { Resources: Resources }).Resources;
    const functions = Object.entries(resources).filter(([, r]) => r.Type === 'AWS::Lambda::Function');
    const ours = functions.filter(([id]) => /^(IndexImages|Search|Migrate)[0-9A-F]{8}$/.test(id));
    expect(ours).toHaveLength(3);
    for (const [id, fn] of ours) {
      const variables = (fn.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
      expect(variables.OMPF_MODEL).toBe('/opt/models/model-spec.json');
      expect(fn.Properties.Layers).toHaveLength(id.startsWith('Migrate') ? 1 : 2);
    }
  });
});
