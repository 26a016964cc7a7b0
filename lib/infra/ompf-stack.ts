import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CfnOutput, CustomResource, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import type * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3n from 'aws-cdk-lib/aws-s3-notifications';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as cr from 'aws-cdk-lib/custom-resources';
import type { Construct } from 'constructs';
import type { ModelSpec } from '../core/model-spec';
import { IMAGE_KEY_SUFFIXES } from '../core/reconcile';
import { transformSuffix } from '../core/retrieval';
import { DATABASE_ROLES } from './database-roles';
import { Observability } from './observability';
import { searchApi } from './search-api';
import { CUSTOM_MODEL_SPEC_FILE, isBuiltinModel, modelLayer, nativeLayer, REPO_ROOT } from './packaging';
import { UPLOADS_PREFIX, type StageConfig } from './stage-config';

export interface OmpfStackProps extends StackProps {
  readonly stage: string;
  readonly config: StageConfig;
  readonly model: ModelSpec;
  /** The model before a change of `model`: the query function keeps answering with it meanwhile. */
  readonly previousModel?: ModelSpec;
  /** Where the model file is read from at synth (checksum verified before it is packaged). */
  readonly modelsDir: string;
}

/** Suffixes S3 notifies about (S3 suffix filters are case-sensitive, so both cases). */
export const IMAGE_SUFFIXES = IMAGE_KEY_SUFFIXES;

const MIGRATIONS_DIR = join(REPO_ROOT, 'lib', 'adapters', 'store', 'migrations');
const MODELS_MOUNT = '/opt/models';

/**
 * The cloud product: S3 bucket -> (ObjectCreated/ObjectRemoved) -> SQS (+ DLQ) -> indexing Lambda ->
 * PostgreSQL + pgvector (RDS, private subnets), and API Gateway (API key, usage plan, throttling) ->
 * query Lambda. The migrate step applies the SQL migrations on every deploy that changes them.
 */
export class OmpfStack extends Stack {
  readonly bucket: s3.Bucket;
  readonly queue: sqs.Queue;
  readonly deadLetterQueue: sqs.Queue;
  readonly indexer: NodejsFunction;
  readonly query: NodejsFunction;
  readonly migrator: NodejsFunction;
  readonly operations: NodejsFunction;
  readonly observability: Observability;
  readonly database: rds.DatabaseInstance;
  readonly api: apigw.RestApi;

  constructor(scope: Construct, id: string, props: OmpfStackProps) {
    super(scope, id, props);
    const { config, stage, model } = props;
    const destroy = config.removalPolicy === 'destroy';
    const removalPolicy = destroy ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN;
    const architecture =
      config.architecture === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64;
    const retention = logRetention(config.logRetentionDays);

    // --- network: private isolated subnets only (no NAT); S3 and Secrets Manager through endpoints ---
    const network = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: 0,
      subnetConfiguration: [{ name: 'private', subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 24 }],
      gatewayEndpoints: { S3: { service: ec2.GatewayVpcEndpointAwsService.S3 } },
    });
    // aws-cdk-lib's classes do not satisfy their own interfaces under exactOptionalPropertyTypes
    // (optional properties typed `T | undefined`), hence the casts to the interface types.
    const vpc = network as unknown as ec2.IVpc;
    network.addInterfaceEndpoint('SecretsManager', {
      service: ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    });
    // Reconciliation sends checks to the queue, lists and redrives the dead letters; the status route
    // reads the queues' depth.
    network.addInterfaceEndpoint('Sqs', { service: ec2.InterfaceVpcEndpointAwsService.SQS });
    // With tracing on, the SDK's subsegments reach X-Ray from the private subnets.
    if (config.tracing)
      network.addInterfaceEndpoint('XRay', { service: ec2.InterfaceVpcEndpointAwsService.XRAY });
    network.addFlowLog('FlowLog', {
      destination: ec2.FlowLogDestination.toCloudWatchLogs(
        new logs.LogGroup(this, 'FlowLogs', { retention, removalPolicy }),
      ),
      trafficType: ec2.FlowLogTrafficType.REJECT,
    });
    const subnets = { subnetType: ec2.SubnetType.PRIVATE_ISOLATED };
    const functionsSg = new ec2.SecurityGroup(this, 'FunctionsSg', {
      vpc,
      description: 'ompf Lambda functions',
      allowAllOutbound: true,
    });
    const databaseSg = new ec2.SecurityGroup(this, 'DatabaseSg', {
      vpc,
      description: 'ompf PostgreSQL: reachable from the ompf functions only',
      allowAllOutbound: false,
    });
    databaseSg.addIngressRule(
      functionsSg,
      ec2.Port.tcp(config.database.port),
      'ompf functions to PostgreSQL',
    );

    // --- storage: the gallery bucket (private, encrypted, TLS only) and its access logs ---
    const accessLogs = new s3.Bucket(this, 'AccessLogs', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      lifecycleRules: [{ expiration: Duration.days(Math.max(config.logRetentionDays, 1)) }],
      removalPolicy,
      autoDeleteObjects: destroy,
    });
    this.bucket = new s3.Bucket(this, 'Gallery', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: accessLogs as unknown as s3.IBucket,
      serverAccessLogsPrefix: 'gallery/',
      // Query images uploaded through POST /uploads are throw-away: gone after a day.
      lifecycleRules: [{ id: 'expire-query-uploads', prefix: UPLOADS_PREFIX, expiration: Duration.days(1) }],
      // Browsers PUT query images to presigned URLs and show results from presigned GET URLs.
      cors: [
        {
          allowedMethods: [s3.HttpMethods.GET, s3.HttpMethods.PUT],
          allowedOrigins: config.api.corsOrigins,
          allowedHeaders: ['content-type'],
          maxAge: 3600,
        },
      ],
      removalPolicy,
      autoDeleteObjects: destroy,
    });

    // --- events: S3 -> SQS (+ dead-letter queue) ---
    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetters', {
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    const indexerTimeout = Duration.seconds(config.indexer.timeoutSeconds);
    this.queue = new sqs.Queue(this, 'ObjectEvents', {
      // AWS: at least six times the function timeout, plus the batching window.
      visibilityTimeout: Duration.seconds(
        6 * config.indexer.timeoutSeconds + config.indexer.batchingWindowSeconds,
      ),
      retentionPeriod: Duration.days(14),
      maxMessageSizeBytes: 256 * 1024,
      // SSE-SQS: S3 can publish to it (an AWS-managed KMS key would refuse S3's messages).
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: config.indexer.maxReceiveCount },
    });
    const destination = new s3n.SqsDestination(this.queue);
    for (const suffix of IMAGE_SUFFIXES) {
      for (const type of [
        s3.EventType.OBJECT_CREATED,
        s3.EventType.OBJECT_REMOVED,
        s3.EventType.LIFECYCLE_EXPIRATION,
      ]) {
        this.bucket.addEventNotification(type, destination, { suffix });
      }
    }

    // --- database: RDS for PostgreSQL with pgvector, private, encrypted, credentials in Secrets Manager ---
    const engine = rds.DatabaseInstanceEngine.postgres({
      version: rds.PostgresEngineVersion.of(
        config.database.engineVersion,
        config.database.engineVersion.split('.')[0]!,
      ),
    });
    this.database = new rds.DatabaseInstance(this, 'Database', {
      engine,
      instanceType: new ec2.InstanceType(config.database.instanceType),
      vpc,
      vpcSubnets: subnets,
      securityGroups: [databaseSg],
      port: config.database.port,
      credentials: rds.Credentials.fromGeneratedSecret('ompf_admin'),
      // The indexer and the query API log in as their own roles with IAM tokens (no password).
      iamAuthentication: true,
      databaseName: 'ompf',
      allocatedStorage: config.database.allocatedStorageGiB,
      maxAllocatedStorage: config.database.maxAllocatedStorageGiB,
      storageType: rds.StorageType.GP3,
      storageEncrypted: true,
      multiAz: config.database.multiAz,
      publiclyAccessible: false,
      backupRetention: Duration.days(config.database.backupRetentionDays),
      deletionProtection: !destroy,
      removalPolicy: destroy ? RemovalPolicy.DESTROY : RemovalPolicy.SNAPSHOT,
      autoMinorVersionUpgrade: true,
      parameterGroup: new rds.ParameterGroup(this, 'DatabaseParameters', {
        engine,
        parameters: { 'rds.force_ssl': '1' },
      }),
      cloudwatchLogsExports: ['postgresql'],
      cloudwatchLogsRetention: retention,
    });
    const secret = this.database.secret!;
    // The admin password (used by the migrate step only) rotates every 30 days; the migrate function
    // re-reads the secret for new connections, so it follows a rotation without a cold start.
    this.database.addRotationSingleUser({ automaticallyAfter: Duration.days(30), vpcSubnets: subnets });

    // --- functions: native runtime and model as layers; code bundled by esbuild, locally ---
    const native = nativeLayer(this, 'NativeLayer', architecture);
    const modelFiles = modelLayer(this, 'ModelLayer', model, props.modelsDir);
    const environment = {
      OMPF_BUCKET: this.bucket.bucketName,
      OMPF_DB_NAME: 'ompf',
      // A built-in model by name; a custom one by the spec its layer carries (the synth machine's path
      // of the spec means nothing in Lambda).
      OMPF_MODEL: isBuiltinModel(model) ? model.id : `${MODELS_MOUNT}/${CUSTOM_MODEL_SPEC_FILE}`,
      OMPF_MODELS_DIR: MODELS_MOUNT,
      OMPF_UPLOADS_PREFIX: UPLOADS_PREFIX,
      // The embedding transform, part of the stored model id (a change builds a new index).
      OMPF_DBA: String(config.embedding.dba),
      OMPF_FLIP: config.embedding.flip ? '1' : '0',
      OMPF_POOLING: config.embedding.gemPower > 0 ? 'gem' : 'average',
      ...(config.embedding.gemPower > 0 ? { OMPF_GEM_POWER: String(config.embedding.gemPower) } : {}),
      OMPF_FRAMING: config.embedding.framing,
      OMPF_RERANK: String(config.embedding.rerank),
      // The RDS certificate authorities, so TLS to the database is verified (sslmode=verify-full).
      NODE_EXTRA_CA_CERTS: '/var/runtime/ca-cert.pem',
      POWERTOOLS_SERVICE_NAME: `ompf-${stage}`,
      POWERTOOLS_LOG_LEVEL: 'INFO',
    };
    /** RDS IAM authentication as `role`: the database's address and the role, nothing secret. */
    const iamDatabase = (role: string) => ({
      OMPF_DB_HOST: this.database.dbInstanceEndpointAddress,
      OMPF_DB_PORT: this.database.dbInstanceEndpointPort,
      OMPF_DB_USER: role,
    });
    const common = {
      runtime: lambda.Runtime.NODEJS_24_X,
      tracing: config.tracing ? lambda.Tracing.ACTIVE : lambda.Tracing.DISABLED,
      architecture,
      vpc,
      vpcSubnets: subnets,
      securityGroups: [functionsSg],
      projectRoot: REPO_ROOT,
      depsLockFilePath: join(REPO_ROOT, 'package-lock.json'),
      bundling: {
        format: OutputFormat.CJS,
        target: 'node24',
        minify: true,
        sourceMap: true,
        // In the native layer (/opt/nodejs/node_modules); everything else, the AWS SDK included, is bundled.
        externalModules: ['onnxruntime-node', 'sharp'],
        forceDockerBundling: false,
        commandHooks: {
          beforeBundling: () => [],
          beforeInstall: () => [],
          // The migrator reads its SQL files from <bundle>/migrations.
          afterBundling: (inputDir: string, outputDir: string) => [
            `cp -R "${join(inputDir, 'lib', 'adapters', 'store', 'migrations')}" "${join(outputDir, 'migrations')}"`,
          ],
        },
      },
    };
    const fn = (
      name: string,
      entry: string,
      memoryMiB: number,
      timeout: Duration,
      extra: Record<string, string>,
      layers: lambda.ILayerVersion[],
    ) =>
      new NodejsFunction(this, name, {
        ...common,
        entry: join(REPO_ROOT, 'functions', entry),
        handler: 'handler',
        memorySize: memoryMiB,
        timeout,
        layers,
        environment: {
          ...environment,
          // One intra-op thread per vCPU Lambda gives at this memory size (1,769 MB = 1 vCPU, at most 6).
          OMPF_THREADS: String(Math.min(6, Math.max(1, Math.floor(memoryMiB / 1769)))),
          ...extra,
        },
        logGroup: new logs.LogGroup(this, `${name}Logs`, { retention, removalPolicy }),
      });

    this.indexer = fn(
      'IndexImages',
      'index-images.ts',
      config.indexer.memoryMiB,
      indexerTimeout,
      { OMPF_DB_MAX_CONNECTIONS: '2', ...iamDatabase(DATABASE_ROLES.indexer) },
      [native, modelFiles],
    );
    this.indexer.addEventSource(
      new SqsEventSource(this.queue, {
        batchSize: config.indexer.batchSize,
        maxBatchingWindow: Duration.seconds(config.indexer.batchingWindowSeconds),
        reportBatchItemFailures: true,
        maxConcurrency: config.indexer.maxConcurrency,
      }),
    );
    // Least privilege, spelled out (grantRead would add s3:GetObject*, s3:GetBucket*, s3:List*):
    // GetObject of the images; ListBucket so that a deleted object answers 404, not 403.
    const getImages = new iam.PolicyStatement({
      actions: ['s3:GetObject'],
      resources: [this.bucket.arnForObjects('*')],
    });
    const listForNotFound = new iam.PolicyStatement({
      actions: ['s3:ListBucket'],
      resources: [this.bucket.bucketArn],
    });
    this.indexer.addToRolePolicy(getImages);
    this.indexer.addToRolePolicy(listForNotFound);
    this.database.grantConnect(this.indexer, DATABASE_ROLES.indexer);

    // A model change: the old model ships to the query function too, which answers from the old index
    // until the new one has caught up (lib/runtime/aws.ts).
    const previous =
      props.previousModel && isBuiltinModel(props.previousModel)
        ? {
            layer: modelLayer(this, 'PreviousModelLayer', props.previousModel, props.modelsDir),
            name: props.previousModel.id,
          }
        : undefined;
    const queues = {
      OMPF_QUEUE_URL: this.queue.queueUrl,
      OMPF_DEAD_LETTER_QUEUE_URL: this.deadLetterQueue.queueUrl,
      OMPF_DEAD_LETTER_QUEUE_ARN: this.deadLetterQueue.queueArn,
    };
    this.query = fn(
      'Search',
      'search.ts',
      config.query.memoryMiB,
      Duration.seconds(config.query.timeoutSeconds),
      {
        OMPF_DB_MAX_CONNECTIONS: '2',
        OMPF_URL_TTL_SECONDS: '900',
        OMPF_UPLOAD_TTL_SECONDS: '300',
        ...iamDatabase(DATABASE_ROLES.query),
        ...queues,
        ...(previous ? { OMPF_PREVIOUS_MODEL: previous.name } : {}),
      },
      previous ? [native, modelFiles, previous.layer] : [native, modelFiles],
    );
    // Presigned GETs of gallery images, presigned PUTs and reads of query uploads: nothing more.
    this.query.addToRolePolicy(getImages);
    this.query.addToRolePolicy(listForNotFound);
    this.query.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['s3:PutObject'],
        resources: [this.bucket.arnForObjects(`${UPLOADS_PREFIX}*`)],
      }),
    );
    this.database.grantConnect(this.query, DATABASE_ROLES.query);
    // GET /status reports the queues' depth.
    const readDepth = new iam.PolicyStatement({
      actions: ['sqs:GetQueueAttributes'],
      resources: [this.queue.queueArn, this.deadLetterQueue.queueArn],
    });
    this.query.addToRolePolicy(readDepth);

    this.migrator = fn(
      'Migrate',
      'migrate.ts',
      1024,
      Duration.minutes(10),
      {
        OMPF_MIN_PGVECTOR: config.database.minPgvector,
        OMPF_INDEX_BUILD_MEMORY: '512MB',
        // The admin secret's ARN (a reference, not the secret): only the migrate step reads it.
        OMPF_DB_SECRET_ARN: secret.secretArn,
      },
      // No native layer: the schema step loads no model. A custom model's spec (id, dimension) is in the
      // model layer, so then it gets that one.
      isBuiltinModel(model) ? [] : [modelFiles],
    );
    secret.grantRead(this.migrator);

    // Reconcile, dead letters, status (functions/operations.ts): no model, no native layer.
    this.operations = fn(
      'Operations',
      'operations.ts',
      1024,
      Duration.minutes(15),
      {
        OMPF_DB_MAX_CONNECTIONS: '2',
        ...iamDatabase(DATABASE_ROLES.operator),
        OMPF_QUEUE_ARN: this.queue.queueArn,
        ...queues,
      },
      isBuiltinModel(model) ? [] : [modelFiles],
    );
    this.database.grantConnect(this.operations, DATABASE_ROLES.operator);
    // Listing the bucket, and only that (no GetObject: the indexer reads the objects it is sent).
    this.operations.addToRolePolicy(listForNotFound);
    this.operations.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['sqs:SendMessage', 'sqs:GetQueueAttributes'],
        resources: [this.queue.queueArn],
      }),
    );
    // Listing the dead letters (receive, then visible again) and redriving them with a message move
    // task, whose source needs receive, delete and attributes (SQS developer guide, DLQ redrive).
    this.operations.addToRolePolicy(
      new iam.PolicyStatement({
        actions: [
          'sqs:ReceiveMessage',
          'sqs:ChangeMessageVisibility',
          'sqs:DeleteMessage',
          'sqs:GetQueueAttributes',
          'sqs:StartMessageMoveTask',
          'sqs:ListMessageMoveTasks',
        ],
        resources: [this.deadLetterQueue.queueArn],
      }),
    );

    // --- schema: migrations applied on deploy (custom resource), maintenance every hour ---
    const provider = new cr.Provider(this, 'MigrateProvider', {
      onEventHandler: this.migrator,
      logGroup: new logs.LogGroup(this, 'MigrateProviderLogs', { retention, removalPolicy }),
    });
    const schema = new CustomResource(this, 'Schema', {
      serviceToken: provider.serviceToken,
      // The stored model id (model + transform): a change of either runs the schema step again, which
      // registers the new index to build beside the active one.
      properties: {
        migrations: migrationsHash(),
        model: model.id,
        index: `${model.id}${transformSuffix({
          framing: config.embedding.framing,
          gem: config.embedding.gemPower,
          flip: config.embedding.flip,
          power: 1,
          dba: config.embedding.dba,
        })}`,
      },
    });
    schema.node.addDependency(this.database);
    // The functions start only once the schema exists.
    this.indexer.node.addDependency(schema);
    this.query.node.addDependency(schema);
    this.operations.node.addDependency(schema);
    const scheduled = (
      id: string,
      description: string,
      schedule: events.Schedule,
      target: NodejsFunction,
      input: Record<string, string>,
    ) =>
      new events.Rule(this, id, {
        description,
        schedule,
        targets: [
          new targets.LambdaFunction(target, {
            event: events.RuleTargetInput.fromObject(input),
            retryAttempts: 0,
          }),
        ],
      });
    // Reconciliation: a full pass on the stage's schedule; while a new index is built, a follow-up
    // pass every few minutes (a no-op otherwise), which switches queries to it once it has caught up.
    if (config.operations.reconcileSchedule !== 'off') {
      scheduled(
        'Reconcile',
        'ompf: list the bucket and send what the index lacks to the indexing queue',
        events.Schedule.expression(config.operations.reconcileSchedule),
        this.operations,
        { action: 'reconcile', trigger: 'schedule' },
      );
    }
    scheduled(
      'ReindexFollowUp',
      'ompf: while a new index is built, fill it and switch to it once it has caught up',
      events.Schedule.rate(Duration.minutes(config.operations.reindexPollMinutes)),
      this.operations,
      { action: 'reconcile', trigger: 'follow-up' },
    );
    scheduled(
      'Maintenance',
      'ompf: build the ANN index once the store is large enough; prune old tombstones',
      events.Schedule.rate(Duration.hours(1)),
      this.migrator,
      { action: 'maintain' },
    );

    // --- API: REST API, API key + usage plan, throttled, JSON errors for gateway-made responses ---
    const { api, apiKey } = searchApi(this, {
      stage,
      config,
      query: this.query,
      accessLogs: new logs.LogGroup(this, 'ApiAccessLogs', { retention, removalPolicy }),
      removalPolicy,
    });
    this.api = api;

    // --- alarms and the dashboard ---
    this.observability = new Observability(this, 'Observability', {
      stage,
      alarmEmail: config.alarms.email,
      oldestMessageSeconds: config.alarms.oldestMessageSeconds,
      queue: this.queue,
      deadLetterQueue: this.deadLetterQueue,
      functions: {
        indexer: this.indexer,
        query: this.query,
        migrator: this.migrator,
        operations: this.operations,
      },
      api: this.api,
    });
    const topic = this.observability.topic;

    // --- outputs: what a user needs to call it ---
    const url = this.api.url.replace(/\/$/, '');
    new CfnOutput(this, 'BucketName', {
      value: this.bucket.bucketName,
      description: 'Upload images here to index them',
    });
    new CfnOutput(this, 'ApiUrl', { value: this.api.url, description: 'Base URL of the search API' });
    new CfnOutput(this, 'ApiKeyId', { value: apiKey.keyId });
    new CfnOutput(this, 'GetApiKeyCommand', {
      value: `aws apigateway get-api-key --api-key ${apiKey.keyId} --include-value --query value --output text`,
      description: 'Prints the API key to send as the x-api-key header',
    });
    new CfnOutput(this, 'SearchExample', {
      value: `curl -sS -X POST -H "x-api-key: $OMPF_API_KEY" -H 'content-type: image/jpeg' --data-binary @query.jpg '${url}/search?n=10'`,
    });
    new CfnOutput(this, 'DeadLetterQueueUrl', { value: this.deadLetterQueue.queueUrl });
    new CfnOutput(this, 'QueueUrl', { value: this.queue.queueUrl });
    new CfnOutput(this, 'OperationsFunctionName', {
      value: this.operations.functionName,
      description: '`ompf cloud reconcile|dead-letters|redrive|status --stage STAGE` invokes it',
    });
    new CfnOutput(this, 'DashboardName', { value: this.observability.dashboard.dashboardName });
    new CfnOutput(this, 'AlarmTopicArn', { value: topic.topicArn });
  }
}

function logRetention(days: number): logs.RetentionDays {
  // RetentionDays is a numeric enum of days; pick the shortest allowed value that keeps `days`.
  const allowed = (Object.values(logs.RetentionDays) as unknown[])
    .filter((v): v is number => typeof v === 'number' && v > 0)
    .sort((a, b) => a - b);
  const match: number = allowed.find((v) => v >= days) ?? 3653;
  return match;
}

/** Changes when a migration file changes, so the custom resource runs again on deploy. */
function migrationsHash(): string {
  const hash = createHash('sha256');
  // The index migrations and the control schema's (migrations/control/).
  for (const file of readdirSync(MIGRATIONS_DIR, { recursive: true, encoding: 'utf8' }).sort()) {
    if (!file.endsWith('.sql')) continue;
    hash.update(file).update(readFileSync(join(MIGRATIONS_DIR, file)));
  }
  return hash.digest('hex');
}
