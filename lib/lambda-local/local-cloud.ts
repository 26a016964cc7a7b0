/**
 * A local stand-in for one deployed stage, built from what `cdk synth` wrote (cdk.out) and nothing
 * else, so what runs is what `cdk deploy` would upload:
 *
 * - every function of the stack that the product wrote (indexer, query, migrate) runs from its bundle
 *   and layers on Node.js 24 through the Runtime API, in a mount namespace of its own
 *   (execution-environment.ts), with the template's handler, memory, timeout and variables;
 * - the bucket is s3rver on loopback; each change the driver makes raises the S3 notification S3
 *   would send, onto the queue (event-sources.ts), which the event source mapping delivers in the
 *   template's batch size with partial batch responses, visibility timeout and redrive;
 * - the database is a local PostgreSQL + pgvector reached over verified TLS, the admin through the
 *   stack's secret (Secrets Manager on loopback), the functions as their own roles with RDS IAM
 *   authentication tokens (loopback-database.ts: checked for endpoint, role and signing key, the
 *   signature itself not verified);
 * - the REST API with its API key, routes, binary media types and gateway responses (api-gateway.ts);
 * - deployment: the migrate function gets the CloudFormation Create event its custom resource sends;
 * - SQS's API over the same queues (sqs-stand-in.ts: the operations function sends reconcile checks,
 *   lists and redrives dead letters), and CloudFormation DescribeStacks + Lambda Invoke for the CLI's
 *   `ompf cloud ...` (control-plane-stand-in.ts).
 *
 * Not reproduced: IAM (no policy is evaluated; made-up credentials), the VPC and its endpoints,
 * API Gateway throttling and quotas, CPU share by memory size, S3's own delivery (notifications are
 * raised by the driver that changes the bucket, not by s3rver), SQS's at-least-once duplicates (the
 * soak adds those), EventBridge schedules (the tests invoke what a schedule would), the custom
 * resource provider framework and CloudWatch (the metrics' EMF lines are in the function logs).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEvent, SQSEvent } from 'aws-lambda';
import { compareVersions } from '../runtime/aws-base';
import { startLoopbackS3, type LoopbackS3 } from '../soak/loopback-s3';
import { LocalRestApi, type GatewayReply, type GatewayRequest } from './api-gateway';
import { CloudAssembly, resolveValue } from './cloud-assembly';
import {
  Clock,
  LocalQueue,
  notificationMatches,
  s3Notification,
  s3TestEvent,
  SqsEventSourceMapping,
  type BatchOutcome,
} from './event-sources';
import { FUNCTION_CREDENTIALS } from './execution-environment';
import { LocalFunction } from './local-function';
import { prepareLambdaDatabase, type LambdaDatabase } from './loopback-database';
import { prepareRuntimeFiles } from './runtime-files';
import { startSecretsManager, type SecretsStandIn } from './secrets-manager-stand-in';
import { startControlPlane, type ControlPlaneStandIn } from './control-plane-stand-in';
import { startSqs, type SqsStandIn } from './sqs-stand-in';

export interface StageFunctions {
  readonly indexer: LocalFunction;
  readonly query: LocalFunction;
  readonly migrate: LocalFunction;
  readonly operations: LocalFunction;
}

export interface LocalCloudOptions {
  /** The directory `cdk synth -o` wrote. */
  readonly cdkOut: string;
  readonly stackName: string;
  readonly repoRoot: string;
  /** A superuser URL of a PostgreSQL + pgvector cluster on loopback (scripts/ci/start-postgres.sh). */
  readonly superuserDatabaseUrl: string;
  /** Host folders the functions must not see (default: the repository's parent and the home folder). */
  readonly hide?: readonly string[];
  readonly region?: string;
  readonly log?: ((functionName: string, line: string) => void) | undefined;
  /** Raise S3 notifications for bucket changes (default true; the soak sends its own). */
  readonly notifications?: boolean;
  /** Put something between the functions and the loopback S3 (the soak's fault proxy). */
  readonly functionS3Endpoint?: (endpoint: string) => Promise<string>;
  /** Keep the stage's OMPF_MIN_PGVECTOR even when the local pgvector is older (the refusal test). */
  readonly keepPgvectorFloor?: boolean;
}

const ACCOUNT = '123456789012';

function allFunctions(functions: StageFunctions): LocalFunction[] {
  return [functions.indexer, functions.query, functions.migrate, functions.operations];
}

export class LocalCloud {
  private sequencer = 0x10000000n;

  private constructor(
    readonly clock: Clock,
    public assembly: CloudAssembly,
    readonly bucket: string,
    readonly s3: LoopbackS3,
    readonly s3Client: S3Client,
    readonly database: LambdaDatabase,
    private readonly secrets: SecretsStandIn,
    public functions: StageFunctions,
    readonly queue: LocalQueue,
    readonly deadLetters: LocalQueue,
    readonly eventSource: SqsEventSourceMapping,
    readonly batchSize: number,
    readonly api: LocalRestApi,
    readonly apiKey: string,
    readonly region: string,
    readonly sqs: SqsStandIn,
    /** CloudFormation DescribeStacks and Lambda Invoke, for `ompf cloud ...` (its AWS_ENDPOINT_URL_*). */
    readonly controlPlane: ControlPlaneStandIn,
    private readonly made: {
      readonly options: LocalCloudOptions;
      readonly values: ReadonlyMap<string, string>;
      readonly additions: Record<string, string>;
      readonly runtime: ReturnType<typeof prepareRuntimeFiles>;
      readonly hide: readonly string[];
    },
  ) {}

  static async start(options: LocalCloudOptions): Promise<LocalCloud> {
    const region = options.region ?? 'eu-west-1';
    const assembly = CloudAssembly.read(options.cdkOut, options.stackName);
    const stage = options.stackName.replace(/^Ompf-/, '').toLowerCase();
    const database = await prepareLambdaDatabase(options.superuserDatabaseUrl, {
      accessKeyId: FUNCTION_CREDENTIALS.accessKeyId,
    });
    const runtime = prepareRuntimeFiles(options.repoRoot, database.caFile);

    const galleryId = assembly.logicalIdOf('Gallery');
    const databaseId = assembly.logicalIdOf('Database');
    const [secretAttachment] = assembly.ofType('AWS::SecretsManager::SecretTargetAttachment');
    if (!secretAttachment) throw new Error(`${options.stackName} has no database secret.`);
    const bucket = `ompf-${stage}-gallery-local`;
    const secretArn = `arn:aws:secretsmanager:${region}:${ACCOUNT}:secret:ompf-${stage}-database-local`;
    const secrets = await startSecretsManager(
      new Map([
        [
          secretArn,
          JSON.stringify({
            engine: 'postgres',
            username: database.adminUser,
            password: database.adminPassword,
            host: database.host,
            port: database.port,
            dbname: database.database,
          }),
        ],
      ]),
    );
    const s3 = await startLoopbackS3(bucket, [FUNCTION_CREDENTIALS]);

    // The queues first: the functions' variables name them.
    const mapping = assembly.eventSourceMapping(assembly.logicalIdOf('IndexImages'));
    const queueDefinition = assembly.queue(mapping.queueLogicalId);
    const clock = new Clock();
    const arn = (name: string) => `arn:aws:sqs:${region}:${ACCOUNT}:${name}`;
    const deadLetters = new LocalQueue(
      `${options.stackName}-DeadLetters`,
      arn(`${options.stackName}-DeadLetters`),
      clock,
      30,
    );
    if (
      queueDefinition.deadLetterQueueLogicalId === undefined ||
      queueDefinition.maxReceiveCount === undefined
    ) {
      throw new Error(`${mapping.queueLogicalId} has no redrive policy.`);
    }
    const queue = new LocalQueue(
      `${options.stackName}-ObjectEvents`,
      arn(`${options.stackName}-ObjectEvents`),
      clock,
      queueDefinition.visibilityTimeoutSeconds,
      { deadLetters, maxReceiveCount: queueDefinition.maxReceiveCount },
    );
    const sqs = await startSqs([queue, deadLetters], ACCOUNT);

    const values = new Map<string, string>([
      [`Ref:${galleryId}`, bucket],
      [`GetAtt:${databaseId}.Endpoint.Address`, database.host],
      [`GetAtt:${databaseId}.Endpoint.Port`, String(database.port)],
      [`Ref:${secretAttachment[0]}`, secretArn],
      [`Ref:${mapping.queueLogicalId}`, sqs.urlOf(queue)],
      [`GetAtt:${mapping.queueLogicalId}.Arn`, queue.arn],
      [`Ref:${queueDefinition.deadLetterQueueLogicalId}`, sqs.urlOf(deadLetters)],
      [`GetAtt:${queueDefinition.deadLetterQueueLogicalId}.Arn`, deadLetters.arn],
    ]);
    // The additions to the template's variables: where the loopback S3, Secrets Manager and SQS are.
    // OMPF_S3_ENDPOINT is the product's own setting for S3-compatible endpoints; the others the SDK's.
    const additions = {
      OMPF_S3_ENDPOINT: options.functionS3Endpoint
        ? await options.functionS3Endpoint(s3.endpoint)
        : s3.endpoint,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.endpoint,
      AWS_ENDPOINT_URL_SQS: sqs.endpoint,
    };
    const hide = options.hide ?? [join(options.repoRoot, '..'), process.env.HOME ?? '/root'];
    const functions = LocalCloud.makeFunctions(
      assembly,
      options,
      values,
      additions,
      runtime,
      region,
      hide,
      database.pgvector,
    );
    // The event source, the API and the control plane call whatever functions are deployed now.
    const deployed = (): LocalFunction[] => allFunctions(cloud.functions);
    const eventSource = new SqsEventSourceMapping(
      queue,
      (event: SQSEvent) =>
        deployed()
          .find((f) => f.name.endsWith('-IndexImages'))!
          .invoke(event),
      {
        batchSize: mapping.batchSize,
        reportBatchItemFailures: mapping.reportBatchItemFailures,
      },
    );
    const apiKey = randomBytes(20).toString('base64url');
    const api = new LocalRestApi(assembly.restApi(), apiKey, (logicalId, event: APIGatewayProxyEvent) => {
      const target = deployed().find((f) => f.definition.logicalId === logicalId);
      if (!target) throw new Error(`The API integrates ${logicalId}, which the harness does not run.`);
      return target.invoke(event);
    });
    const rules = assembly.bucketNotifications(galleryId);
    if (rules.some((rule) => rule.queueLogicalId !== mapping.queueLogicalId)) {
      throw new Error(`${galleryId} notifies a queue the harness does not run.`);
    }
    const controlPlane = await startControlPlane({
      stackName: options.stackName,
      outputs: new Map([
        ['OperationsFunctionName', functions.operations.name],
        ['BucketName', bucket],
        ['QueueUrl', sqs.urlOf(queue)],
        ['DeadLetterQueueUrl', sqs.urlOf(deadLetters)],
      ]),
      invoke: async (name, payload) =>
        deployed()
          .find((f) => f.name === name)
          ?.invoke(payload),
    });
    const cloud: LocalCloud = new LocalCloud(
      clock,
      assembly,
      bucket,
      s3,
      new S3Client(s3.clientConfig),
      database,
      secrets,
      functions,
      queue,
      deadLetters,
      eventSource,
      mapping.batchSize,
      api,
      apiKey,
      region,
      sqs,
      controlPlane,
      { options, values, additions, runtime, hide },
    );
    // Every change to the bucket, by the driver or by any S3 client (a presigned upload, the aws CLI),
    // raises the notification S3 would send, if the stack's notification rules select it.
    s3.onChange((change) => {
      if (change.bucket !== bucket || options.notifications === false || cloud.silent) return;
      if (!rules.some((rule) => notificationMatches(rule, change.eventName, change.key))) return;
      cloud.notified.push(change.key);
      queue.send(s3Notification({ ...change, sequencer: cloud.nextSequencer() }, region));
    });
    return cloud;
  }

  /** The stack's functions, from its template and bundles, with the stand-ins' addresses. */
  private static makeFunctions(
    assembly: CloudAssembly,
    options: LocalCloudOptions,
    values: ReadonlyMap<string, string>,
    additions: Record<string, string>,
    runtime: ReturnType<typeof prepareRuntimeFiles>,
    region: string,
    hide: readonly string[],
    pgvector: string,
  ): StageFunctions {
    const make = (construct: string) => {
      const definition = assembly.lambdaFunction(assembly.logicalIdOf(construct));
      const variables: Record<string, string> = {};
      for (const [name, value] of Object.entries(definition.environment)) {
        variables[name] = resolveValue(value, values, `${construct}.${name}`);
      }
      return new LocalFunction(
        `${options.stackName}-${construct}`,
        definition,
        { ...variables, ...additions },
        runtime,
        {
          region,
          hide,
          log: options.log,
        },
      );
    };
    const functions: StageFunctions = {
      indexer: make('IndexImages'),
      query: make('Search'),
      migrate: make('Migrate'),
      operations: make('Operations'),
    };
    // The one setting the harness must change: RDS offers pgvector 0.8.2+, the local cluster may have
    // an older one (Debian's source package). The floor drops to the local version, said in the log;
    // the refusal itself is tested against the template's value.
    const floor = functions.migrate.variables.OMPF_MIN_PGVECTOR;
    if (floor && compareVersions(pgvector, floor) < 0 && options.keepPgvectorFloor !== true) {
      functions.migrate.variables.OMPF_MIN_PGVECTOR = pgvector;
      options.log?.('harness', `the local pgvector is ${pgvector}; OMPF_MIN_PGVECTOR ${floor} lowered to it`);
    }

    return functions;
  }

  /**
   * `cdk deploy` of a new synth of the same stage (another model, say): the functions are replaced by
   * the new template's (old containers shut down), the bucket, the queues and the database stay, and
   * the migrate function gets the CloudFormation Update event.
   */
  async redeploy(cdkOut: string) {
    const assembly = CloudAssembly.read(cdkOut, this.assembly.stackName);
    const old = this.functions;
    this.functions = LocalCloud.makeFunctions(
      assembly,
      { ...this.made.options, cdkOut },
      this.made.values,
      this.made.additions,
      this.made.runtime,
      this.region,
      this.made.hide,
      this.database.pgvector,
    );
    this.assembly = assembly;
    await Promise.all(allFunctions(old).map((f) => f.reset()));
    return this.deploy('Update');
  }

  /** Keys S3 notified the queue about, in order. */
  readonly notified: string[] = [];

  /** What CloudFormation sends the schema custom resource on deploy (through the provider framework). */
  async deploy(
    requestType: 'Create' | 'Update' = 'Create',
  ): Promise<{ payload?: unknown; error?: { errorType: string; errorMessage: string } }> {
    const [schemaId] = this.assembly
      .ofType('AWS::CloudFormation::CustomResource')
      .find(([, r]) => String(r.Metadata?.['aws:cdk:path']).endsWith('/Schema/Default')) ?? ['Schema'];
    const result = await this.functions.migrate.invoke({
      RequestType: requestType,
      ...(requestType === 'Update'
        ? { PhysicalResourceId: 'ompf-schema', OldResourceProperties: { ServiceToken: 'local' } }
        : {}),
      ServiceToken: `arn:aws:lambda:${this.region}:${ACCOUNT}:function:provider`,
      ResponseURL: 'http://127.0.0.1:9/cloudformation-response',
      StackId: `arn:aws:cloudformation:${this.region}:${ACCOUNT}:stack/${this.assembly.stackName}/local`,
      RequestId: 'local-deploy',
      LogicalResourceId: schemaId,
      ResourceType: 'AWS::CloudFormation::CustomResource',
      ResourceProperties: { ServiceToken: 'local' },
    });
    // Then CloudFormation configures the bucket's notifications, and S3 sends its test event.
    if (!result.error && !this.testEventSent) {
      this.testEventSent = true;
      this.queue.send(s3TestEvent(this.bucket));
    }
    return result;
  }

  private testEventSent = false;

  nextSequencer(): string {
    this.sequencer += BigInt(1 + Math.floor(Math.random() * 3));
    return this.sequencer.toString(16).toUpperCase().padStart(16, '0');
  }

  /** PUT an object (its notification is raised by the bucket). */
  async put(key: string, body: Buffer, contentType = 'image/jpeg'): Promise<void> {
    await this.s3Client.send(
      new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: contentType }),
    );
  }

  /**
   * Change the bucket without a notification, as objects restored from a backup, written before
   * notifications were configured, or whose events were lost arrive: only a reconcile finds them.
   */
  async withoutNotifications(change: () => Promise<void>): Promise<void> {
    this.silent = true;
    try {
      await change();
    } finally {
      this.silent = false;
    }
  }

  private silent = false;

  /** DELETE an object (its ObjectRemoved notification is raised by the bucket). */
  async remove(key: string): Promise<void> {
    await this.s3Client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  /**
   * Polls until the queue is empty. When only in-flight messages are left, the clock jumps to the end
   * of their visibility timeout (the wait SQS would impose), so retries and redrive happen in seconds.
   */
  async drain(maxBatches = 10_000): Promise<BatchOutcome[]> {
    const outcomes: BatchOutcome[] = [];
    while (this.queue.depth > 0 && outcomes.length < maxBatches) {
      const outcome = await this.eventSource.pollOnce();
      if (outcome) {
        outcomes.push(outcome);
        continue;
      }
      const wait = this.queue.secondsToNextVisible();
      if (wait !== undefined) this.clock.advance(wait + 0.001);
    }
    return outcomes;
  }

  /** One HTTP request to the API, as a client of the stage's endpoint would send it. */
  request(request: GatewayRequest): Promise<GatewayReply> {
    return this.api.handle(request);
  }

  async close(): Promise<void> {
    await Promise.all(allFunctions(this.functions).map((f) => f.reset()));
    this.s3Client.destroy();
    await this.s3.close();
    await this.secrets.close();
    await this.sqs.close();
    await this.controlPlane.close();
  }

  /** What the CLI needs in its environment to operate this stage (`ompf cloud ... --stage`). */
  cliEnvironment(): Record<string, string> {
    return {
      AWS_ENDPOINT_URL_CLOUDFORMATION: this.controlPlane.endpoint,
      AWS_ENDPOINT_URL_LAMBDA: this.controlPlane.endpoint,
      AWS_REGION: this.region,
      AWS_ACCESS_KEY_ID: 'AKIALOCALOPERATOR',
      AWS_SECRET_ACCESS_KEY: 'local-operator-secret',
    };
  }

  /** Invoke the operations function, as its schedules and `ompf cloud` do. */
  operate(operation: Record<string, unknown>) {
    return this.functions.operations.invoke(operation);
  }
}
