import { readFileSync } from 'node:fs';
import { loadConfig } from '../../lib/runtime/config';
import { startTestServer, workDir } from './server-helpers';

/**
 * The local server listens on the loopback address only unless OMPF_HOST says otherwise: checked on
 * the socket itself (the kernel's table of listening sockets), not on the URL it prints.
 */
function listeners(port: number): string[] {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return ['/proc/net/tcp', '/proc/net/tcp6'].flatMap((table) => {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      return [];
    }
    return text
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/))
      .filter((fields) => fields[1]?.endsWith(`:${hex}`) && fields[3] === '0A') // 0A: LISTEN
      .map((fields) => `${table.endsWith('6') ? 'tcp6' : 'tcp'} ${fields[1]!.split(':')[0]}`);
  });
}

describe('local server binding', () => {
  it('defaults to 127.0.0.1 in the configuration', () => {
    expect(loadConfig({}).host).toBe('127.0.0.1');
  });

  it('listens on 127.0.0.1 only (no 0.0.0.0, no IPv6 wildcard) when OMPF_HOST is unset', async () => {
    // Prepare
    const server = await startTestServer(workDir());
    try {
      // Act
      const port = Number(new URL(server.url).port);
      // Assess: 0100007F is 127.0.0.1 in the kernel's little-endian hex.
      expect(server.url).toBe(`http://127.0.0.1:${port}`);
      if (process.platform === 'linux') expect(listeners(port)).toEqual(['tcp 0100007F']);
    } finally {
      await server.close();
    }
  });
});
