import type { SqlClient, SqlExecutor } from '../adapters/store/sql-client';

/**
 * The database as the handler sees it: after `drop(n)`, the n-th statement from then on fails as a
 * dropped connection does (inside a transaction too, which is then rolled back). `replace` swaps the
 * connection underneath (PGlite closed and opened again from its data directory).
 */
export class FaultySqlClient implements SqlClient {
  private countdown: number | undefined;
  dropped = 0;
  private restartCountdown: number | undefined;
  private restartServer: (() => Promise<boolean>) | undefined;
  private restarting: Promise<boolean> | undefined;

  /** When the n-th statement from now starts, restart the server (not awaited: the batch runs on). */
  armRestart(afterStatements: number, restartServer: () => Promise<boolean>): void {
    this.restartCountdown = afterStatements;
    this.restartServer = restartServer;
    this.restarting = undefined;
  }

  /** Waits for a restart that started; false when the batch ended before its statement came. */
  async disarmRestart(): Promise<boolean> {
    this.restartCountdown = undefined;
    const restarting = this.restarting;
    this.restarting = undefined;
    return restarting ? restarting : false;
  }

  constructor(private inner: SqlClient) {}

  /** Close the current engine and continue on `reopen()`'s; statements in between wait for it. */
  async replace(reopen: () => Promise<SqlClient>): Promise<void> {
    const old = this.inner;
    await old.close();
    this.inner = await reopen();
  }

  get engine() {
    return this.inner.engine;
  }

  drop(afterStatements: number | undefined): void {
    this.countdown = afterStatements;
  }

  private check(): void {
    if (this.restartCountdown !== undefined && --this.restartCountdown <= 0) {
      this.restartCountdown = undefined;
      this.restarting = this.restartServer?.();
      // Awaited by disarmRestart; a failure must not surface as an unhandled rejection meanwhile.
      this.restarting?.catch(() => undefined);
    }
    if (this.countdown === undefined) return;
    this.countdown -= 1;
    if (this.countdown > 0) return;
    this.countdown = undefined;
    this.dropped += 1;
    throw new Error('soak: injected connection drop (Connection terminated unexpectedly)');
  }

  private wrap(executor: SqlExecutor): SqlExecutor {
    return {
      query: <Row = Record<string, unknown>>(text: string, params?: readonly unknown[]) => {
        this.check();
        return executor.query<Row>(text, params);
      },
      exec: (script: string) => {
        this.check();
        return executor.exec(script);
      },
    };
  }

  query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<Row[]> {
    return this.wrap(this.inner).query<Row>(text, params);
  }

  exec(script: string): Promise<void> {
    return this.wrap(this.inner).exec(script);
  }

  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.inner.transaction((tx) => work(this.wrap(tx)));
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
