import type { RemovalPolicy } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import type { StageConfig } from './stage-config';

/**
 * The stage's REST API in front of the query function: the routes of lib/api/http-api.ts, an API key
 * and usage plan on every method, throttling, binary image bodies, and JSON bodies for the responses
 * API Gateway makes itself (throttled, quota, too large, unknown route). Logical ids are the stack's.
 */
export interface SearchApiProps {
  readonly stage: string;
  readonly config: StageConfig;
  readonly query: lambda.IFunction;
  readonly accessLogs: logs.ILogGroup;
  readonly removalPolicy: RemovalPolicy;
}

export function searchApi(
  scope: Construct,
  props: SearchApiProps,
): { api: apigw.RestApi; apiKey: apigw.IApiKey } {
  const { stage, config, removalPolicy } = props;
  const api = new apigw.RestApi(scope, 'Api', {
    restApiName: `ompf-${stage}`,
    description: 'ompf image similarity search',
    endpointTypes: [apigw.EndpointType.REGIONAL],
    // Image bodies arrive base64-encoded in the proxy event (the adapter decodes them).
    binaryMediaTypes: ['image/*'],
    cloudWatchRole: true,
    cloudWatchRoleRemovalPolicy: removalPolicy,
    deployOptions: {
      stageName: stage,
      throttlingRateLimit: config.api.rateLimit,
      throttlingBurstLimit: config.api.burstLimit,
      loggingLevel: apigw.MethodLoggingLevel.ERROR,
      dataTraceEnabled: false,
      metricsEnabled: true,
      accessLogDestination: new apigw.LogGroupLogDestination(props.accessLogs),
      accessLogFormat: apigw.AccessLogFormat.jsonWithStandardFields(),
      tracingEnabled: config.tracing,
    },
    defaultMethodOptions: { apiKeyRequired: true },
  });
  const integration = new apigw.LambdaIntegration(props.query, { proxy: true });
  const validator = api.addRequestValidator('Validator', {
    validateRequestParameters: true,
    validateRequestBody: true,
  });
  const method = (resource: apigw.IResource, verb: string, parameters: Record<string, boolean> = {}) =>
    resource.addMethod(verb, integration, { requestValidator: validator, requestParameters: parameters });
  method(api.root.addResource('search'), 'POST');
  const image = api.root.addResource('images').addResource('{key}');
  method(image.addResource('similar'), 'GET', { 'method.request.path.key': true });
  method(image.addResource('duplicates'), 'GET', { 'method.request.path.key': true });
  method(api.root.addResource('uploads'), 'POST');
  method(api.root.addResource('openapi.json'), 'GET');
  method(api.root.addResource('status'), 'GET');
  method(api.root.addResource('duplicates'), 'GET');

  const plan = api.addUsagePlan('UsagePlan', {
    name: `ompf-${stage}`,
    throttle: { rateLimit: config.api.rateLimit, burstLimit: config.api.burstLimit },
    quota: { limit: config.api.quotaPerDay, period: apigw.Period.DAY },
    apiStages: [{ api: api as unknown as apigw.IRestApi, stage: api.deploymentStage }],
  });
  const apiKey = api.addApiKey('ApiKey', { description: `ompf ${stage} API key` });
  plan.addApiKey(apiKey);
  const gatewayError = (code: string, message: string) => ({
    'application/json': `{"error":{"code":"${code}","message":${message}}}`,
  });
  const responses: [string, apigw.ResponseType, string, string, string][] = [
    ['Throttled', apigw.ResponseType.THROTTLED, '429', 'throttled', '"Too many requests: retry later."'],
    [
      'QuotaExceeded',
      apigw.ResponseType.QUOTA_EXCEEDED,
      '429',
      'quota_exceeded',
      '"The daily quota of this API key is used up."',
    ],
    [
      'TooLarge',
      apigw.ResponseType.REQUEST_TOO_LARGE,
      '413',
      'too_large',
      '"The request is over 10 MB: upload the image with POST /uploads, then search by its key."',
    ],
    [
      'Default4xx',
      apigw.ResponseType.DEFAULT_4XX,
      '',
      'gateway_$context.error.responseType',
      '$context.error.messageString',
    ],
    ['Default5xx', apigw.ResponseType.DEFAULT_5XX, '', 'internal_error', '"Internal error."'],
  ];
  for (const [name, type, statusCode, code, message] of responses) {
    api.addGatewayResponse(name, {
      type,
      ...(statusCode ? { statusCode } : {}),
      responseHeaders: { 'Content-Type': "'application/json'" },
      templates: gatewayError(code, message),
    });
  }
  return { api, apiKey };
}
