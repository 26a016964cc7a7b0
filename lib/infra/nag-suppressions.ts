import { type CfnElement, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';
import type { OmpfStack } from './ompf-stack';

/**
 * Every cdk-nag AwsSolutions finding we accept, each with its reason, on the narrowest construct that
 * raises it. Anything not acknowledged here fails `cdk synth` (and test/infra/stack.test.ts).
 */
export function acknowledgeNagFindings(
  stack: OmpfStack,
  options: { multiAz: boolean; destroy: boolean },
): void {
  const ack = (scope: IConstruct | undefined, rule: string, reason: string) => {
    if (scope) Validations.of(scope).acknowledge({ id: `AwsSolutions::AwsSolutions-${rule}`, reason });
  };
  const logicalId = (construct: IConstruct) => stack.getLogicalId(construct.node.defaultChild as CfnElement);

  for (const policy of [
    'AWSLambdaBasicExecutionRole',
    'AWSLambdaVPCAccessExecutionRole',
    'AmazonAPIGatewayPushToCloudWatchLogs',
  ]) {
    ack(
      stack,
      `IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/${policy}]`,
      `${policy} is the AWS-maintained minimum for its service (function logs, VPC network interfaces, API Gateway logging).`,
    );
  }

  const gallery = logicalId(stack.bucket);
  for (const fn of [stack.indexer, stack.query]) {
    ack(
      fn,
      `IAM5[Resource::<${gallery}.Arn>/*]`,
      's3:GetObject (that action only) on the gallery objects: the indexer reads any image key it is notified about; the query API presigns GETs of any hit. Keys are not known in advance.',
    );
  }
  ack(
    stack.query,
    `IAM5[Resource::<${gallery}.Arn>/query-uploads/*]`,
    's3:PutObject (that action only) under the query-uploads/ prefix: presigned PUTs of query images, whose keys are made per request.',
  );
  ack(
    stack.node.tryFindChild('MigrateProvider'),
    `IAM5[Resource::<${logicalId(stack.migrator)}.Arn>:*]`,
    "The CDK provider framework may invoke any version of the migrate function (the function's ARN with :*).",
  );
  ack(
    stack.node.tryFindChild('LogRetentionaae0aa3c5b4d4f87b02d85b201efdd8a'),
    'IAM5[Resource::*]',
    "aws-cdk-lib's log-retention handler (for the database's log groups) sets retention on log groups it does not know in advance.",
  );
  ack(
    stack.node.tryFindChild('Vpc'),
    'EC23',
    "The Secrets Manager endpoint's security group admits the VPC's own CIDR only (cdk-nag cannot resolve the CIDR token).",
  );

  if (!options.multiAz) {
    ack(
      stack.database,
      'RDS3',
      'Multi-AZ is a per-stage setting (cdk.json): off for this stage to halve the database cost.',
    );
  }
  if (options.destroy) {
    ack(
      stack.database,
      'RDS10',
      'A throw-away stage (removalPolicy "destroy" in cdk.json): `cdk destroy` must be able to delete it.',
    );
  }

  ack(
    stack.api,
    'APIG3',
    'No WAF (its cost); the API needs an API key, and the stage and the usage plan throttle it.',
  );
  ack(
    stack.api,
    'APIG4',
    'Authenticated with an API key and a usage plan (the issue allows IAM or an API key), not an authorizer.',
  );
  ack(stack.api, 'COG4', 'No Cognito user pool: the callers are scripts and services holding an API key.');
}
