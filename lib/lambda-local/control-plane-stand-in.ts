import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The two control-plane calls `ompf cloud ...` makes, on loopback: CloudFormation DescribeStacks (AWS
 * Query protocol: a form-encoded request, an XML answer) with the stack's outputs as the harness
 * resolved them, and Lambda Invoke (REST JSON: POST /2015-03-31/functions/{name}/invocations; a
 * function error is the X-Amz-Function-Error header with the error as the body, as Lambda answers).
 * The CLI reaches them through the SDK's AWS_ENDPOINT_URL_CLOUDFORMATION / AWS_ENDPOINT_URL_LAMBDA.
 */
export interface ControlPlaneStandIn {
  readonly endpoint: string;
  /** 'DescribeStacks Ompf-dev', 'Invoke <function>'. */
  readonly calls: string[];
  close(): Promise<void>;
}

export interface ControlPlaneOptions {
  readonly stackName: string;
  readonly outputs: ReadonlyMap<string, string>;
  invoke(
    functionName: string,
    payload: unknown,
  ): Promise<{ payload?: unknown; error?: { errorType: string; errorMessage: string } } | undefined>;
}

const xml = (text: string) =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlaneStandIn> {
  const calls: string[] = [];
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const invoke = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/.exec(request.url?.split('?')[0] ?? '');
      if (invoke) {
        const name = decodeURIComponent(invoke[1]!);
        calls.push(`Invoke ${name}`);
        void options
          .invoke(name, JSON.parse(body || 'null'))
          .then((result) => {
            if (!result) {
              response.writeHead(404, {
                'content-type': 'application/json',
                'x-amzn-errortype': 'ResourceNotFoundException',
              });
              response.end(JSON.stringify({ Type: 'User', message: `Function not found: ${name}` }));
              return;
            }
            response.writeHead(200, {
              'content-type': 'application/json',
              'x-amz-executed-version': '$LATEST',
              ...(result.error ? { 'x-amz-function-error': 'Unhandled' } : {}),
            });
            response.end(JSON.stringify(result.error ?? result.payload ?? null));
          })
          .catch((error: Error) => {
            response.writeHead(500, {
              'content-type': 'application/json',
              'x-amzn-errortype': 'ServiceException',
            });
            response.end(JSON.stringify({ message: error.message }));
          });
        return;
      }
      const form = new URLSearchParams(body);
      if (form.get('Action') !== 'DescribeStacks') {
        response.writeHead(400, { 'content-type': 'text/xml' });
        response.end(
          '<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>Only DescribeStacks and Invoke are served here.</Message></Error></ErrorResponse>',
        );
        return;
      }
      const stack = form.get('StackName') ?? '';
      calls.push(`DescribeStacks ${stack}`);
      if (stack !== options.stackName) {
        response.writeHead(400, { 'content-type': 'text/xml' });
        response.end(
          `<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>Stack with id ${xml(stack)} does not exist</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`,
        );
        return;
      }
      const outputs = [...options.outputs]
        .map(
          ([key, value]) =>
            `<member><OutputKey>${xml(key)}</OutputKey><OutputValue>${xml(value)}</OutputValue></member>`,
        )
        .join('');
      response.writeHead(200, { 'content-type': 'text/xml' });
      response.end(
        `<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><DescribeStacksResult><Stacks><member><StackName>${xml(stack)}</StackName><StackId>arn:aws:cloudformation:eu-west-1:123456789012:stack/${xml(stack)}/local</StackId><CreationTime>2026-12-01T00:00:00.000Z</CreationTime><StackStatus>CREATE_COMPLETE</StackStatus><Outputs>${outputs}</Outputs></member></Stacks></DescribeStacksResult><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></DescribeStacksResponse>`,
      );
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    close: () => new Promise<void>((done) => server.close(() => done())),
  };
}
