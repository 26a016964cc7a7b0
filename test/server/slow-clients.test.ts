import { connect, type Socket } from 'node:net';
import { json } from '../../lib/api/http-api';
import { startHttpServer, type RunningHttpServer } from '../../lib/server/http-server';

/** Open a socket and send `request` a piece at a time, never finishing it; resolves with what came back. */
function dribble(
  url: string,
  pieces: readonly string[],
  everyMs: number,
): Promise<{ reply: string; closedAfterMs: number }> {
  const { hostname, port } = new URL(url);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    let reply = '';
    const socket: Socket = connect(Number(port), hostname, () => {
      let i = 0;
      const timer = setInterval(() => {
        if (i < pieces.length && !socket.destroyed) socket.write(pieces[i++]!);
      }, everyMs);
      socket.on('close', () => {
        clearInterval(timer);
        resolve({ reply, closedAfterMs: Date.now() - started });
      });
    });
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (reply += chunk));
    socket.on('error', reject);
  });
}

/** The node:http shell's own limits, on a real socket, with a handler that always answers. */
describe('local HTTP server and slow clients (slowloris)', () => {
  let server: RunningHttpServer;

  beforeAll(async () => {
    server = await startHttpServer({
      host: '127.0.0.1',
      port: 0,
      maxRequestBytes: 1024,
      handle: () => Promise.resolve(json(200, { ok: true })),
      timeouts: { headersMs: 600, requestMs: 1500, checkEveryMs: 100 },
    });
  });
  afterAll(() => server.close());

  it('drops a client that sends its headers too slowly with 408, and keeps serving', async () => {
    // Prepare: one header line every 200 ms, never the blank line that ends the headers.
    const pieces = [
      'GET /status HTTP/1.1\r\n',
      'Host: 127.0.0.1\r\n',
      ...Array.from({ length: 40 }, (_, i) => `X-Slow-${i}: 1\r\n`),
    ];
    // Act
    const { reply, closedAfterMs } = await dribble(server.url, pieces, 200);
    // Assess: cut off long before the client would have finished (40 x 200 ms = 8 s).
    expect(reply).toMatch(/^HTTP\/1\.1 408 /);
    expect(closedAfterMs).toBeLessThan(5000);
    expect((await fetch(`${server.url}/status`)).status).toBe(200);
  });

  it('drops a client that sends its body too slowly with 408', async () => {
    // Prepare: headers promise 1,000 bytes; the body trickles in 10 bytes at a time.
    const head =
      'POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\n';
    const pieces = [head, ...Array.from({ length: 100 }, () => 'x'.repeat(10))];
    // Act
    const { reply, closedAfterMs } = await dribble(server.url, pieces, 100);
    // Assess
    expect(reply).toMatch(/^HTTP\/1\.1 408 /);
    expect(closedAfterMs).toBeLessThan(6000);
  });
});
