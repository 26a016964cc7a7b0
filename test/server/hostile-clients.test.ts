import { connect } from 'node:net';
import type { LocalServer } from '../../lib/server/serve';
import { call, startTestServer, workDir } from './server-helpers';

/** Raw bytes over a socket (fetch refuses to send what a hostile client sends); the whole reply. */
function rawExchange(url: string, request: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.end(request));
    let reply = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (reply += chunk));
    socket.on('end', () => resolve(reply));
    socket.on('error', reject);
  });
}

/** Requests no browser sends: the server refuses them and keeps serving. */
describe('local server and hostile clients', () => {
  const work = workDir();
  let server: LocalServer;

  beforeAll(async () => {
    server = await startTestServer(work);
  });
  afterAll(() => server.close());

  it('answers oversized request headers with 431 and keeps serving', async () => {
    // Prepare: 64 KiB of headers, four times what Node accepts.
    const host = new URL(server.url).host;
    const padding = Array.from({ length: 64 }, (_, i) => `x-pad-${i}: ${'a'.repeat(1024)}`).join('\r\n');
    // Act
    const reply = await rawExchange(
      server.url,
      `GET /status HTTP/1.1\r\nHost: ${host}\r\n${padding}\r\n\r\n`,
    );
    // Assess
    expect(reply).toMatch(/^HTTP\/1\.1 431 /);
    expect((await call(server, 'GET', '/status')).status).toBe(200);
  });

  it('answers a request line that is not HTTP with 400 and keeps serving', async () => {
    // Act
    const reply = await rawExchange(server.url, 'HELLO\r\n\r\n');
    // Assess
    expect(reply).toMatch(/^HTTP\/1\.1 400 /);
    expect((await call(server, 'GET', '/status')).status).toBe(200);
  });
});
