/**
 * Cloud operations, one function: {"action": "reconcile"} lists the bucket and sends what the index
 * lacks (or holds wrongly) to the indexing queue as checks, and switches a re-built index in once it
 * has caught up; {"action": "dead-letters"} lists the dead-letter queue with each message's last
 * error; {"action": "redrive"} moves it back to the indexing queue; {"action": "status"}. Scheduled
 * (cdk.json "operations") and started by `ompf cloud ...`. Logs in as ompf_operator.
 */
import { operationsHandler } from '../lib/runtime/aws-operations';

export const handler = operationsHandler();
