/**
 * Deploy-time schema step (CloudFormation custom resource: applies lib/adapters/store/migrations, the
 * same files as the local mode, and checks pgvector's version), then creates the functions' database
 * roles and their privileges (lib/infra/database-roles.ts: ompf_indexer reads and writes the index,
 * ompf_query reads it; both log in with RDS IAM tokens). Scheduled maintenance too
 * ({"action": "maintain"}: ANN index build once the store is large enough, old tombstones pruned).
 * Runs as the admin user, whose secret only this function may read.
 */
import { createMigrateHandler } from '../lib/adapters/aws/lambda';
import { grantFunctionRoles } from '../lib/infra/database-roles';
import {
  awsParts,
  loadAwsConfig,
  logger,
  runMaintenance,
  runMigrations,
  type AwsParts,
} from '../lib/runtime/aws-base';

export function migrateAndGrantHandler(parts: AwsParts) {
  return createMigrateHandler(
    {
      migrate: () => runMigrations(parts, grantFunctionRoles),
      maintain: () => runMaintenance(parts),
    },
    logger,
  );
}

export const handler = migrateAndGrantHandler(awsParts(loadAwsConfig()));
