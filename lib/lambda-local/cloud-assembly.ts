import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * What `cdk synth` wrote for one stack, read the way CloudFormation and Lambda read it: each function's
 * code and layers are the asset directories the template's resources point at (`aws:asset:path`
 * metadata: the same folders `cdk deploy` zips and uploads), and every setting (handler, runtime,
 * memory, timeout, environment, layer order, event source mapping, queue redrive, API routes and
 * gateway responses) comes from the synthesized template, never from the CDK code.
 */
export interface TemplateResource {
  readonly Type: string;
  readonly Properties?: Record<string, unknown>;
  readonly Metadata?: Record<string, unknown>;
}

export interface Template {
  readonly Resources: Record<string, TemplateResource>;
}

export interface FunctionDefinition {
  readonly logicalId: string;
  readonly handler: string;
  readonly runtime: string;
  readonly memoryMiB: number;
  readonly timeoutSeconds: number;
  /** The bundle as uploaded (unzipped at /var/task). */
  readonly codeDir: string;
  /** Layer directories in the template's order (each unzipped into /opt; a later one wins). */
  readonly layerDirs: readonly string[];
  /** The template's variables, intrinsic functions still unresolved. */
  readonly environment: Record<string, unknown>;
  readonly architecture: string;
}

export interface EventSourceMapping {
  readonly functionLogicalId: string;
  readonly queueLogicalId: string;
  readonly batchSize: number;
  readonly maximumBatchingWindowSeconds: number;
  readonly reportBatchItemFailures: boolean;
  readonly maximumConcurrency: number | undefined;
}

export interface QueueDefinition {
  readonly logicalId: string;
  readonly visibilityTimeoutSeconds: number;
  readonly deadLetterQueueLogicalId: string | undefined;
  readonly maxReceiveCount: number | undefined;
}

export interface ApiRoute {
  readonly method: string;
  /** The resource path template, as API Gateway puts it in `event.resource`: /images/{key}/similar. */
  readonly resource: string;
  readonly apiKeyRequired: boolean;
  readonly functionLogicalId: string;
  /** Request parameters the method requires (method.request.path.key: true). */
  readonly requiredParameters: readonly string[];
}

export interface GatewayResponse {
  readonly type: string;
  readonly statusCode: string | undefined;
  readonly headers: Record<string, string>;
  readonly templates: Record<string, string>;
}

export interface RestApiDefinition {
  readonly binaryMediaTypes: readonly string[];
  readonly routes: readonly ApiRoute[];
  readonly gatewayResponses: readonly GatewayResponse[];
  readonly stageName: string;
}

export interface NotificationRule {
  /** S3 event types such as s3:ObjectCreated:* */
  readonly events: readonly string[];
  readonly prefix: string | undefined;
  readonly suffix: string | undefined;
  readonly queueLogicalId: string;
}

export class CloudAssembly {
  private constructor(
    readonly dir: string,
    readonly stackName: string,
    readonly template: Template,
  ) {}

  /** Reads `<dir>/<stackName>.template.json` (the directory `cdk synth -o` wrote). */
  static read(dir: string, stackName: string): CloudAssembly {
    const file = join(dir, `${stackName}.template.json`);
    if (!existsSync(file)) {
      throw new Error(`${file} does not exist: synthesize the stage first (cdk synth -o ${dir}).`);
    }
    return new CloudAssembly(dir, stackName, JSON.parse(readFileSync(file, 'utf8')) as Template);
  }

  private resource(logicalId: string): TemplateResource {
    const resource = this.template.Resources[logicalId];
    if (!resource) throw new Error(`${this.stackName} has no resource ${logicalId}.`);
    return resource;
  }

  /** Resources of one type, by logical id. */
  ofType(type: string): [string, TemplateResource][] {
    return Object.entries(this.template.Resources).filter(([, r]) => r.Type === type);
  }

  /** The logical id of the one resource whose construct path ends with `/<name>/Resource`. */
  logicalIdOf(constructName: string): string {
    const matches = Object.entries(this.template.Resources).filter(([, r]) => {
      const path = r.Metadata?.['aws:cdk:path'];
      return typeof path === 'string' && path.endsWith(`/${constructName}/Resource`);
    });
    if (matches.length !== 1) {
      throw new Error(`${this.stackName}: ${matches.length} resources named ${constructName}, expected 1.`);
    }
    return matches[0]![0];
  }

  private assetDir(logicalId: string): string {
    const path = this.resource(logicalId).Metadata?.['aws:asset:path'];
    if (typeof path !== 'string') throw new Error(`${logicalId} names no asset (aws:asset:path).`);
    const dir = join(this.dir, path);
    if (!existsSync(dir) || !statSync(dir).isDirectory()) {
      throw new Error(`${logicalId}'s asset ${dir} is not a directory: was the stack bundled?`);
    }
    return dir;
  }

  lambdaFunction(logicalId: string): FunctionDefinition {
    const resource = this.resource(logicalId);
    if (resource.Type !== 'AWS::Lambda::Function') throw new Error(`${logicalId} is not a Lambda function.`);
    const p = resource.Properties ?? {};
    const layers = ((p.Layers as unknown[] | undefined) ?? []).map((layer) => {
      const ref = (layer as { Ref?: string }).Ref;
      if (!ref)
        throw new Error(`${logicalId}: a layer that is not a Ref to this stack (${JSON.stringify(layer)}).`);
      return this.assetDir(ref);
    });
    return {
      logicalId,
      handler: String(p.Handler),
      runtime: String(p.Runtime),
      // CloudFormation's defaults when a property is absent.
      memoryMiB: Number(p.MemorySize ?? 128),
      timeoutSeconds: Number(p.Timeout ?? 3),
      codeDir: this.assetDir(logicalId),
      layerDirs: layers,
      environment: (p.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables ?? {},
      architecture: String((p.Architectures as string[] | undefined)?.[0] ?? 'x86_64'),
    };
  }

  eventSourceMapping(functionLogicalId: string): EventSourceMapping {
    const found = this.ofType('AWS::Lambda::EventSourceMapping').find(
      ([, r]) => (r.Properties?.FunctionName as { Ref?: string } | undefined)?.Ref === functionLogicalId,
    );
    if (!found) throw new Error(`${functionLogicalId} has no event source mapping.`);
    const p = found[1].Properties ?? {};
    const arn = p.EventSourceArn as { 'Fn::GetAtt'?: [string, string] };
    const queue = arn['Fn::GetAtt']?.[0];
    if (!queue) throw new Error(`The event source of ${functionLogicalId} is not a queue of this stack.`);
    return {
      functionLogicalId,
      queueLogicalId: queue,
      // SQS event source defaults: batch size 10, no batching window.
      batchSize: Number(p.BatchSize ?? 10),
      maximumBatchingWindowSeconds: Number(p.MaximumBatchingWindowInSeconds ?? 0),
      reportBatchItemFailures: ((p.FunctionResponseTypes as string[] | undefined) ?? []).includes(
        'ReportBatchItemFailures',
      ),
      maximumConcurrency: (p.ScalingConfig as { MaximumConcurrency?: number } | undefined)
        ?.MaximumConcurrency,
    };
  }

  queue(logicalId: string): QueueDefinition {
    const p = this.resource(logicalId).Properties ?? {};
    const redrive = p.RedrivePolicy as
      { deadLetterTargetArn?: { 'Fn::GetAtt'?: [string, string] }; maxReceiveCount?: number } | undefined;
    return {
      logicalId,
      // SQS's default visibility timeout is 30 seconds.
      visibilityTimeoutSeconds: Number(p.VisibilityTimeout ?? 30),
      deadLetterQueueLogicalId: redrive?.deadLetterTargetArn?.['Fn::GetAtt']?.[0],
      maxReceiveCount: redrive?.maxReceiveCount,
    };
  }

  /** The bucket's queue notifications (the Custom::S3BucketNotifications resource CDK writes). */
  bucketNotifications(bucketLogicalId: string): NotificationRule[] {
    const found = this.ofType('Custom::S3BucketNotifications').find(
      ([, r]) => (r.Properties?.BucketName as { Ref?: string } | undefined)?.Ref === bucketLogicalId,
    );
    const configuration = found?.[1].Properties?.NotificationConfiguration as
      | {
          QueueConfigurations?: {
            Events: string[];
            Filter?: { Key?: { FilterRules?: { Name: string; Value: string }[] } };
            QueueArn: { 'Fn::GetAtt'?: [string, string] };
          }[];
        }
      | undefined;
    return (configuration?.QueueConfigurations ?? []).map((q) => {
      const rule = (name: string) =>
        q.Filter?.Key?.FilterRules?.find((r) => r.Name.toLowerCase() === name)?.Value;
      const queue = q.QueueArn['Fn::GetAtt']?.[0];
      if (!queue) throw new Error(`A notification of ${bucketLogicalId} targets a queue outside the stack.`);
      return { events: q.Events, prefix: rule('prefix'), suffix: rule('suffix'), queueLogicalId: queue };
    });
  }

  /** The one REST API of the stack: its routes (resource tree walked from the root) and responses. */
  restApi(): RestApiDefinition {
    const apis = this.ofType('AWS::ApiGateway::RestApi');
    if (apis.length !== 1) throw new Error(`${this.stackName} has ${apis.length} REST APIs, expected 1.`);
    const [apiId, api] = apis[0]!;
    const paths = new Map<string, string>();
    const pathOf = (resourceId: string): string => {
      const known = paths.get(resourceId);
      if (known !== undefined) return known;
      const p = this.resource(resourceId).Properties ?? {};
      const parent = p.ParentId as { Ref?: string; 'Fn::GetAtt'?: [string, string] };
      const parentPath = parent['Fn::GetAtt']?.[1] === 'RootResourceId' ? '' : pathOf(parent.Ref!);
      const path = `${parentPath}/${String(p.PathPart)}`;
      paths.set(resourceId, path);
      return path;
    };
    const routes = this.ofType('AWS::ApiGateway::Method').map(([id, r]): ApiRoute => {
      const p = r.Properties ?? {};
      const resourceId = p.ResourceId as { Ref?: string; 'Fn::GetAtt'?: [string, string] };
      const integration = p.Integration as { Type?: string; Uri?: unknown };
      if (integration.Type !== 'AWS_PROXY') throw new Error(`${id}: only Lambda proxy integrations are run.`);
      const target = JSON.stringify(integration.Uri).match(/"Fn::GetAtt":\["([^"]+)","Arn"\]/)?.[1];
      if (!target) throw new Error(`${id}: its integration names no function of this stack.`);
      return {
        method: String(p.HttpMethod),
        resource: resourceId['Fn::GetAtt']?.[1] === 'RootResourceId' ? '/' : pathOf(resourceId.Ref!),
        apiKeyRequired: p.ApiKeyRequired === true,
        functionLogicalId: target,
        requiredParameters: Object.entries((p.RequestParameters as Record<string, boolean>) ?? {})
          .filter(([, required]) => required)
          .map(([name]) => name),
      };
    });
    const gatewayResponses = this.ofType('AWS::ApiGateway::GatewayResponse').map(([, r]): GatewayResponse => {
      const p = r.Properties ?? {};
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries((p.ResponseParameters as Record<string, string>) ?? {})) {
        // 'gatewayresponse.header.Content-Type': "'application/json'" (a static value is quoted)
        headers[name.replace(/^gatewayresponse\.header\./, '')] = value.replace(/^'(.*)'$/, '$1');
      }
      return {
        type: String(p.ResponseType),
        statusCode: typeof p.StatusCode === 'string' ? p.StatusCode : undefined,
        headers,
        templates: (p.ResponseTemplates as Record<string, string>) ?? {},
      };
    });
    const stage = this.ofType('AWS::ApiGateway::Stage').find(
      ([, r]) => (r.Properties?.RestApiId as { Ref?: string } | undefined)?.Ref === apiId,
    );
    return {
      binaryMediaTypes: (api.Properties?.BinaryMediaTypes as string[] | undefined) ?? [],
      routes,
      gatewayResponses,
      stageName:
        typeof stage?.[1].Properties?.StageName === 'string' ? stage[1].Properties.StageName : 'prod',
    };
  }
}

/**
 * Resolves the intrinsic functions a function's environment holds (Ref, Fn::GetAtt, Fn::Join,
 * Fn::Sub of pseudo parameters) to the harness's local stand-ins. `values` maps `Ref:<logicalId>`
 * and `GetAtt:<logicalId>.<attribute>` to what the harness provides; anything else is an error that
 * names it, so a new reference in the stack cannot pass unnoticed.
 */
export function resolveValue(value: unknown, values: ReadonlyMap<string, string>, what: string): string {
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean')
    return String(value);
  const object = value as Record<string, unknown>;
  const lookup = (key: string) => {
    const found = values.get(key);
    if (found === undefined) throw new Error(`${what}: the harness has no local value for ${key}.`);
    return found;
  };
  if (typeof object.Ref === 'string') return lookup(`Ref:${object.Ref}`);
  const getAtt = object['Fn::GetAtt'] as [string, string] | undefined;
  if (getAtt) return lookup(`GetAtt:${getAtt[0]}.${getAtt[1]}`);
  const join = object['Fn::Join'] as [string, unknown[]] | undefined;
  if (join) return join[1].map((part) => resolveValue(part, values, what)).join(join[0]);
  throw new Error(`${what}: unsupported intrinsic ${JSON.stringify(value)}.`);
}
