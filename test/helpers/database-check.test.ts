import { createServer, type Server } from 'node:net';
import { assertDatabaseListening } from './shared';

/**
 * OMPF_TEST_DATABASE_URL set with no server behind it used to hang the PostgreSQL suites on
 * connection timeouts; the shared helper now fails their import within seconds, saying what to do.
 */
function listen(): Promise<Server> {
  return new Promise((resolve) => {
    const server = createServer((socket) => socket.destroy());
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

const portOf = (server: Server) => (server.address() as { port: number }).port;

describe('assertDatabaseListening (the PostgreSQL suites fail fast)', () => {
  it('passes when something accepts connections on the URL host and port', async () => {
    // Prepare
    const server = await listen();
    try {
      // Act, Assess
      expect(() =>
        assertDatabaseListening(`postgres://postgres@127.0.0.1:${portOf(server)}/ompf_test`),
      ).not.toThrow();
    } finally {
      server.close();
    }
  });

  it('fails within seconds, naming the address and the fix, when nothing listens', async () => {
    // Prepare: a port that was free a moment ago and is closed now.
    const server = await listen();
    const port = portOf(server);
    await new Promise((done) => server.close(done));
    const started = Date.now();

    // Act, Assess
    expect(() => assertDatabaseListening(`postgres://postgres@127.0.0.1:${port}/ompf_test`, 1_000)).toThrow(
      new RegExp(`no PostgreSQL listens on 127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\).*start-postgres\\.sh`),
    );
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('refuses a value that is not a URL', () => {
    expect(() => assertDatabaseListening('not a url')).toThrow(/not a URL/);
  });
});
