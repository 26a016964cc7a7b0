import { randomUUID } from 'node:crypto';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import type { ApiRoute, GatewayResponse, RestApiDefinition } from './cloud-assembly';

/**
 * API Gateway's REST API in front of a Lambda proxy integration, as far as the function and a client
 * can tell: routes from the template's resources and methods (a path or method it does not have:
 * 403 MISSING_AUTHENTICATION_TOKEN), the API key check before any function runs (INVALID_API_KEY,
 * 403 "Forbidden"), required request parameters (BAD_REQUEST_PARAMETERS), the 10 MB request limit
 * (REQUEST_TOO_LARGE), the binary media types (such a body arrives base64-encoded, isBase64Encoded),
 * the proxy event and result formats, a function error or timeout as 502 / 504, and every
 * gateway-made response rendered through the template's GatewayResponses (falling back to
 * DEFAULT_4XX / DEFAULT_5XX). Not reproduced: throttling, usage plan quotas, the 29 s integration
 * timeout (the function's own timeout applies), custom domains, request validation of bodies.
 */
export interface GatewayRequest {
  readonly method: string;
  /** The path after the stage, percent-encoded as sent: /images/cats%2Fa.jpg/similar */
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer | undefined;
}

export interface GatewayReply {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
  /** Whether a function ran for it. */
  readonly invoked: boolean;
}

export type ProxyInvoke = (
  functionLogicalId: string,
  event: APIGatewayProxyEvent,
) => Promise<{ payload?: unknown; error?: { errorType: string; errorMessage: string } }>;

const DEFAULT_STATUS: Record<string, number> = {
  MISSING_AUTHENTICATION_TOKEN: 403,
  INVALID_API_KEY: 403,
  BAD_REQUEST_PARAMETERS: 400,
  REQUEST_TOO_LARGE: 413,
  RESOURCE_NOT_FOUND: 404,
  INTEGRATION_FAILURE: 504,
  INTEGRATION_TIMEOUT: 504,
  DEFAULT_5XX: 502,
};
const MESSAGES: Record<string, string> = {
  MISSING_AUTHENTICATION_TOKEN: 'Missing Authentication Token',
  INVALID_API_KEY: 'Forbidden',
  BAD_REQUEST_PARAMETERS: 'Missing required request parameters',
  REQUEST_TOO_LARGE: 'Request Too Long',
  INTEGRATION_TIMEOUT: 'Endpoint request timed out',
  DEFAULT_5XX: 'Internal server error',
};
const MAX_REQUEST_BYTES = 10 * 1024 * 1024;

export class LocalRestApi {
  constructor(
    private readonly api: RestApiDefinition,
    private readonly apiKey: string,
    private readonly invoke: ProxyInvoke,
  ) {}

  async handle(request: GatewayRequest): Promise<GatewayReply> {
    const match = this.match(request.method, request.path);
    if (!match) return this.gatewayResponse('MISSING_AUTHENTICATION_TOKEN');
    if ((request.body?.length ?? 0) > MAX_REQUEST_BYTES) return this.gatewayResponse('REQUEST_TOO_LARGE');
    const headers = lowerCase(request.headers);
    if (match.route.apiKeyRequired && headers['x-api-key'] !== this.apiKey)
      return this.gatewayResponse('INVALID_API_KEY');
    for (const parameter of match.route.requiredParameters) {
      const [, , where, name] = parameter.split('.');
      const present =
        where === 'path'
          ? match.parameters[name!] !== undefined
          : where === 'querystring'
            ? request.query[name!] !== undefined
            : headers[name!.toLowerCase()] !== undefined;
      if (!present)
        return this.gatewayResponse(
          'BAD_REQUEST_PARAMETERS',
          `Missing required request parameters: [${name}]`,
        );
    }
    const event = this.proxyEvent(match.route, match.parameters, request);
    const result = await this.invoke(match.route.functionLogicalId, event);
    if (result.error) {
      return this.gatewayResponse(
        result.error.errorType === 'Sandbox.Timedout' ? 'INTEGRATION_TIMEOUT' : 'DEFAULT_5XX',
      );
    }
    const proxy = result.payload as {
      statusCode?: number;
      headers?: Record<string, string>;
      body?: string;
      isBase64Encoded?: boolean;
    } | null;
    // A result without a numeric statusCode is a malformed proxy response: 502.
    if (!proxy || typeof proxy.statusCode !== 'number') return this.gatewayResponse('DEFAULT_5XX');
    return {
      status: proxy.statusCode,
      headers: { ...(proxy.headers ?? {}) },
      body: Buffer.from(proxy.body ?? '', proxy.isBase64Encoded ? 'base64' : 'utf8'),
      invoked: true,
    };
  }

  private match(
    method: string,
    path: string,
  ): { route: ApiRoute; parameters: Record<string, string> } | undefined {
    const segments = path.split('/').filter(Boolean);
    for (const route of this.api.routes) {
      if (route.method !== method && route.method !== 'ANY') continue;
      const template = route.resource.split('/').filter(Boolean);
      if (template.length !== segments.length) continue;
      const parameters: Record<string, string> = {};
      const ok = template.every((part, i) => {
        const name = /^\{([^}+]+)\}$/.exec(part)?.[1];
        if (name) {
          parameters[name] = decodeURIComponent(segments[i]!);
          return true;
        }
        return part === segments[i];
      });
      if (ok) return { route, parameters };
    }
    return undefined;
  }

  private proxyEvent(
    route: ApiRoute,
    parameters: Record<string, string>,
    request: GatewayRequest,
  ): APIGatewayProxyEvent {
    const headers = lowerCase(request.headers);
    const contentType = headers['content-type'] ?? '';
    const binary = this.api.binaryMediaTypes.some((type) => mediaTypeMatches(type, contentType));
    const query = Object.keys(request.query).length > 0 ? { ...request.query } : null;
    const now = Date.now();
    return {
      resource: route.resource,
      path: request.path,
      httpMethod: request.method,
      headers: { ...request.headers },
      multiValueHeaders: Object.fromEntries(Object.entries(request.headers).map(([k, v]) => [k, [v]])),
      queryStringParameters: query,
      multiValueQueryStringParameters: query
        ? Object.fromEntries(Object.entries(query).map(([k, v]) => [k, [v]]))
        : null,
      pathParameters: Object.keys(parameters).length > 0 ? parameters : null,
      stageVariables: null,
      requestContext: {
        accountId: '123456789012',
        apiId: 'localapi01',
        authorizer: null,
        protocol: 'HTTP/1.1',
        httpMethod: request.method,
        identity: {
          accessKey: null,
          accountId: null,
          apiKey: headers['x-api-key'] ?? null,
          apiKeyId: null,
          caller: null,
          clientCert: null,
          cognitoAuthenticationProvider: null,
          cognitoAuthenticationType: null,
          cognitoIdentityId: null,
          cognitoIdentityPoolId: null,
          principalOrgId: null,
          sourceIp: '127.0.0.1',
          user: null,
          userAgent: headers['user-agent'] ?? null,
          userArn: null,
        },
        path: `/${this.api.stageName}${request.path}`,
        stage: this.api.stageName,
        requestId: randomUUID(),
        requestTimeEpoch: now,
        resourceId: 'local',
        resourcePath: route.resource,
      },
      body:
        request.body === undefined || request.body.length === 0
          ? null
          : request.body.toString(binary ? 'base64' : 'utf8'),
      isBase64Encoded: binary && request.body !== undefined && request.body.length > 0,
    };
  }

  /** A response API Gateway makes itself, through the template's GatewayResponse of that type. */
  private gatewayResponse(type: string, message = MESSAGES[type] ?? type): GatewayReply {
    const find = (t: string) => this.api.gatewayResponses.find((r) => r.type === t);
    const status = DEFAULT_STATUS[type] ?? 400;
    const configured: GatewayResponse | undefined =
      find(type) ?? find(status >= 500 ? 'DEFAULT_5XX' : 'DEFAULT_4XX');
    const template = configured?.templates['application/json'];
    const body =
      template === undefined
        ? JSON.stringify({ message })
        : template
            .replace(/\$context\.error\.messageString/g, JSON.stringify(message))
            .replace(/\$context\.error\.message/g, message)
            .replace(/\$context\.error\.responseType/g, type);
    return {
      status: configured?.statusCode ? Number(configured.statusCode) : status,
      headers: {
        'content-type': 'application/json',
        ...(configured?.headers ?? {}),
        'x-amzn-errortype': errorTypeHeader(type),
      },
      body: Buffer.from(body),
      invoked: false,
    };
  }
}

function errorTypeHeader(type: string): string {
  if (type === 'INVALID_API_KEY') return 'ForbiddenException';
  if (type === 'MISSING_AUTHENTICATION_TOKEN') return 'MissingAuthenticationTokenException';
  return 'InternalServerErrorException';
}

function lowerCase(headers: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
}

/** 'image/*' matches 'image/jpeg; charset=...'; '*\/*' matches everything. */
function mediaTypeMatches(pattern: string, contentType: string): boolean {
  const type = contentType.split(';')[0]!.trim().toLowerCase();
  if (!type) return false;
  const [p1, p2] = pattern.toLowerCase().split('/');
  const [t1, t2] = type.split('/');
  return (p1 === '*' || p1 === t1) && (p2 === '*' || p2 === t2);
}
