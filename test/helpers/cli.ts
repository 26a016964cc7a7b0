import { main } from '../../lib/cli/program';

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  json<T = Record<string, unknown>>(): T;
}

/** Run `ompf ARGS` in-process (sharing one ONNX session across calls) and capture its output. */
export async function ompf(args: readonly string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const out = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += chunk.toString();
    return true;
  });
  const err = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += chunk.toString();
    return true;
  });
  try {
    const code = await main(args, env);
    return { code, stdout, stderr, json: <T>() => JSON.parse(stdout) as T };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}
