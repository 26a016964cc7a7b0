import { releasePostgres } from './provision';

/** jest globalTeardown: stops the PostgreSQL cluster if this run started it and no other run uses it. */
export default async function globalTeardown(): Promise<void> {
  await releasePostgres();
}
