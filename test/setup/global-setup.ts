import { checkSharedData, checkVmModules, ensureChromium, ensurePostgres } from './provision';

/**
 * jest globalSetup (`npm test`, `npm test -- <file>`): brings up what the suites need, or fails the run
 * at once with one line saying what to run or set. Environment set here reaches the test files.
 */
export default async function globalSetup(): Promise<void> {
  checkVmModules();
  checkSharedData();
  await ensureChromium();
  await ensurePostgres();
}
