import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as snsSubscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as apigw from 'aws-cdk-lib/aws-apigateway';
import { Construct } from 'constructs';
import { METRIC_NAMES, METRIC_NAMESPACE } from '../adapters/aws/metrics';

/**
 * The stage's alarms (to an SNS topic, optionally mailed) and its CloudWatch dashboard: the functions'
 * own metrics (embedded metric format, lib/adapters/aws/metrics.ts: namespace `ompf`, dimension
 * `service` = ompf-<stage>), the queues' depth and age, the functions' errors and the API's latency.
 */
export interface ObservabilityProps {
  readonly stage: string;
  readonly alarmEmail: string | undefined;
  readonly oldestMessageSeconds: number;
  readonly queue: sqs.Queue;
  readonly deadLetterQueue: sqs.Queue;
  readonly functions: Readonly<Record<'indexer' | 'query' | 'migrator' | 'operations', lambda.Function>>;
  readonly api: apigw.RestApi;
}

export class Observability extends Construct {
  readonly topic: sns.Topic;
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const { stage, queue, deadLetterQueue, functions, api } = props;
    this.topic = new sns.Topic(scope, 'Alarms', {
      displayName: `ompf ${stage} alarms`,
      enforceSSL: true,
      masterKey: kms.Alias.fromAliasName(scope, 'SnsKey', 'alias/aws/sns'),
    });
    if (props.alarmEmail)
      this.topic.addSubscription(new snsSubscriptions.EmailSubscription(props.alarmEmail));
    const alarm = (name: string, metric: cloudwatch.IMetric, threshold: number, description: string) => {
      const a = new cloudwatch.Alarm(scope, name, {
        metric,
        threshold,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      });
      a.addAlarmAction(new cwActions.SnsAction(this.topic));
      return a;
    };
    const fiveMinutes = { period: Duration.minutes(5) };
    /** The queues' gauges: the largest value of each five minutes. */
    const peak = { ...fiveMinutes, statistic: 'Maximum' };
    const deadLetters = deadLetterQueue.metricApproximateNumberOfMessagesVisible(peak);
    const oldest = queue.metricApproximateAgeOfOldestMessage(peak);
    alarm(
      'DeadLetterAlarm',
      deadLetters,
      1,
      'Object events failed repeatedly and are in the dead-letter queue: `ompf cloud dead-letters` lists them with their last error; fix, then `ompf cloud redrive`.',
    );
    alarm(
      'OldestMessageAlarm',
      oldest,
      props.oldestMessageSeconds,
      'Indexing is falling behind (or failing and retrying): the oldest object event is waiting too long.',
    );
    alarm(
      'IndexerErrorsAlarm',
      functions.indexer.metricErrors(fiveMinutes),
      1,
      'The indexing Lambda failed.',
    );
    alarm('SearchErrorsAlarm', functions.query.metricErrors(fiveMinutes), 1, 'The query Lambda failed.');
    alarm(
      'MigrateErrorsAlarm',
      functions.migrator.metricErrors(fiveMinutes),
      1,
      'Migration or maintenance failed.',
    );
    alarm(
      'OperationsErrorsAlarm',
      functions.operations.metricErrors(fiveMinutes),
      1,
      'A reconcile run (or another operation) failed: see the operations function logs.',
    );
    alarm('Api5xxAlarm', api.metricServerError(fiveMinutes), 5, 'The API answered 5xx.');

    const own = (name: string, statistic: string, label: string) =>
      new cloudwatch.Metric({
        namespace: METRIC_NAMESPACE,
        metricName: name,
        dimensionsMap: { service: `ompf-${stage}` },
        statistic,
        period: Duration.minutes(5),
        label,
      });
    const failedByReason = new cloudwatch.MathExpression({
      expression: `SEARCH('{${METRIC_NAMESPACE},reason,service} MetricName="${METRIC_NAMES.failed}" service="ompf-${stage}"', 'Sum', 300)`,
      label: 'failed, by reason',
      period: Duration.minutes(5),
    });
    const graph = (title: string, left: cloudwatch.IMetric[], right: cloudwatch.IMetric[] = []) =>
      new cloudwatch.GraphWidget({ title, left, right, width: 12, height: 6 });
    this.dashboard = new cloudwatch.Dashboard(scope, 'Dashboard', {
      dashboardName: `ompf-${stage}`,
      defaultInterval: Duration.hours(24),
    });
    this.dashboard.addWidgets(
      graph('Images', [
        own(METRIC_NAMES.indexed, 'Sum', 'indexed'),
        own(METRIC_NAMES.removed, 'Sum', 'removed'),
        own(METRIC_NAMES.skipped, 'Sum', 'skipped'),
        own(METRIC_NAMES.retried, 'Sum', 'retried (threw)'),
        failedByReason,
      ]),
      graph(
        'Indexing time (ms)',
        [
          own(METRIC_NAMES.embeddingMs, 'p50', 'embedding p50'),
          own(METRIC_NAMES.embeddingMs, 'p95', 'embedding p95'),
        ],
        [
          own(METRIC_NAMES.databaseMs, 'p50', 'database p50'),
          own(METRIC_NAMES.databaseMs, 'p95', 'database p95'),
        ],
      ),
    );
    this.dashboard.addWidgets(
      graph(
        'Queues',
        [
          queue.metricApproximateNumberOfMessagesVisible({ ...peak, label: 'waiting' }),
          queue.metricApproximateNumberOfMessagesNotVisible({ ...peak, label: 'in flight' }),
          deadLetterQueue.metricApproximateNumberOfMessagesVisible({ ...peak, label: 'dead letters' }),
        ],
        [queue.metricApproximateAgeOfOldestMessage({ ...peak, label: 'oldest (s)' })],
      ),
      graph(
        'Search',
        [
          own(METRIC_NAMES.searchMs, 'p50', 'search p50 (ms)'),
          own(METRIC_NAMES.searchMs, 'p95', 'search p95 (ms)'),
        ],
        [
          own(METRIC_NAMES.searches, 'Sum', 'searches'),
          own(METRIC_NAMES.resultsReturned, 'Sum', 'results returned'),
        ],
      ),
    );
    this.dashboard.addWidgets(
      graph(
        'Function errors',
        Object.entries(functions).map(([name, fn]) => fn.metricErrors({ ...fiveMinutes, label: name })),
      ),
      graph(
        'API',
        [api.metricLatency({ ...fiveMinutes, statistic: 'p95', label: 'latency p95 (ms)' })],
        [
          api.metricServerError({ ...fiveMinutes, label: '5xx' }),
          api.metricClientError({ ...fiveMinutes, label: '4xx' }),
        ],
      ),
      graph('Reconcile', [own(METRIC_NAMES.reconcileEnqueued, 'Sum', 'checks enqueued')]),
    );
  }
}
