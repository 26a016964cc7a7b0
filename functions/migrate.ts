/**
 * Deploy-time schema step (CloudFormation custom resource: applies lib/adapters/store/migrations, the
 * same files as the local mode, and checks pgvector's version) and scheduled maintenance
 * ({"action": "maintain"}: ANN index build once the store is large enough, old tombstones pruned).
 */
import { migrateHandler } from '../lib/runtime/aws';

export const handler = migrateHandler();
