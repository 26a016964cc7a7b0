import type { FunctionDefinition } from './cloud-assembly';
import { ExecutionEnvironment, type InvocationResult, type RuntimeFiles } from './execution-environment';

/**
 * One deployed function: its execution environments (one invocation at a time each; a new one, a
 * cold start, when all are busy or the last one was discarded) and the figures Lambda would report
 * (init duration, duration, max memory used), kept per invocation.
 */
export interface InvocationRecord extends InvocationResult {
  readonly cold: boolean;
}

export class LocalFunction {
  private readonly idle: ExecutionEnvironment[] = [];
  private readonly all = new Set<ExecutionEnvironment>();
  readonly invocations: InvocationRecord[] = [];

  constructor(
    readonly name: string,
    readonly definition: FunctionDefinition,
    readonly variables: Record<string, string>,
    private readonly runtime: RuntimeFiles,
    private readonly context: {
      readonly region: string;
      readonly hide: readonly string[];
      readonly log?: ((functionName: string, line: string) => void) | undefined;
    },
  ) {
    if (definition.runtime !== 'nodejs24.x') {
      throw new Error(`${name} declares ${definition.runtime}; this harness runs nodejs24.x only.`);
    }
  }

  async invoke(event: unknown): Promise<InvocationRecord> {
    let environment = this.idle.pop();
    while (environment && !environment.alive) environment = this.idle.pop();
    const cold = environment === undefined;
    if (!environment) {
      environment = new ExecutionEnvironment({
        functionName: this.name,
        handler: this.definition.handler,
        memoryMiB: this.definition.memoryMiB,
        timeoutSeconds: this.definition.timeoutSeconds,
        codeDir: this.definition.codeDir,
        layerDirs: this.definition.layerDirs,
        variables: this.variables,
        runtime: this.runtime,
        region: this.context.region,
        hide: this.context.hide,
        log: this.context.log ? (line) => this.context.log!(this.name, line) : undefined,
      });
      this.all.add(environment);
      await environment.start();
    }
    const result = await environment.invoke(event);
    const record = { ...result, cold };
    this.invocations.push(record);
    if (environment.alive) this.idle.push(environment);
    else {
      this.all.delete(environment);
      await environment.stop();
    }
    return record;
  }

  /** Kills every environment that is running an invocation now (its process dies mid-batch). */
  crash(): number {
    const busy = [...this.all].filter((e) => !this.idle.includes(e) && e.alive);
    for (const environment of busy) environment.kill();
    return busy.length;
  }

  /** Discards every environment (the next invocation is a cold start), as a deployment does. */
  async reset(): Promise<void> {
    this.idle.length = 0;
    const environments = [...this.all];
    this.all.clear();
    await Promise.all(environments.map((e) => e.stop()));
  }
}
