/**
 * SQS (S3 ObjectCreated / ObjectRemoved notifications) -> index or remove, with a partial batch
 * response. Configuration is validated here, at cold start; the model, pool and S3 client are created
 * once per container (lib/runtime/aws.ts).
 */
import { indexImagesHandler } from '../lib/runtime/aws';

export const handler = indexImagesHandler();
