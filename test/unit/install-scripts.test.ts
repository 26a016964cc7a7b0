import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/**
 * Every dependency install script has been reviewed (package.json "allowScripts", written with `npm
 * install-scripts approve|deny`): npm runs unreviewed ones with a notice today and a stricter npm will
 * refuse them. onnxruntime-node's is denied: it downloads CUDA binaries (the CPU ones ship in the
 * package) and fails offline.
 */
const ROOT = resolve(__dirname, '..', '..');

function npm(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  // npm_execpath: the npm running `npm test` / `npx jest`; else the one on PATH.
  const execPath = process.env.npm_execpath;
  const [command, prefix] = execPath?.endsWith('.js') ? [process.execPath, [execPath]] : ['npm', []];
  return spawnSync(command, [...prefix, ...args], { cwd: ROOT, env, encoding: 'utf8', timeout: 60_000 });
}

describe('dependency install scripts', () => {
  it('are all reviewed: `npm install-scripts ls` lists none pending', () => {
    // Act
    const result = npm('install-scripts', 'ls', '--json', '--offline');

    // Assess
    expect(result.stderr).not.toMatch(/ERR!/);
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ allowScripts: [] });
  });

  it("deny onnxruntime-node's download of GPU binaries (an approval would also leave none pending)", () => {
    // Prepare
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      allowScripts?: Record<string, boolean>;
    };

    // Assess
    expect(pkg.allowScripts?.['onnxruntime-node']).toBe(false);
  });
});
