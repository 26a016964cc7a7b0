import { App } from 'aws-cdk-lib';
import { Match } from 'aws-cdk-lib/assertions';
import { buildOmpfApp } from '../../lib/infra/app';
import { DATABASE_ROLES } from '../../lib/infra/database-roles';
import { CDK_JSON, synthStage } from './app-fixture';

/**
 * The security controls of the cloud stack, asserted on the synthesized template of each stage
 * (docs/security.md lists each control with the test that proves it).
 */
type Resource = { Type: string; Properties: Record<string, unknown> };
type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };

/** A logical id without CDK's hash suffix: `Gallery88723B09` -> `Gallery`. */
const bare = (id: string) => id.replace(/[0-9A-F]{8}$/, '');

/** A CloudFormation value as readable text: `{"Fn::GetAtt": ["Gallery88723B09", "Arn"]}` -> `<Gallery.Arn>`. */
function render(value: unknown): string {
  if (typeof value === 'string') return value;
  const v = value as Record<string, unknown>;
  if ('Ref' in v) return `<${bare(v.Ref as string)}>`;
  if ('Fn::GetAtt' in v) {
    const [id, attribute] = v['Fn::GetAtt'] as [string, string];
    return `<${bare(id)}.${attribute}>`;
  }
  if ('Fn::Sub' in v && typeof v['Fn::Sub'] === 'string')
    return v['Fn::Sub'].replace(/\$\{([^}]+)\}/g, '<$1>');
  if ('Fn::Join' in v) {
    const [separator, parts] = v['Fn::Join'] as [string, unknown[]];
    return parts.map(render).join(separator);
  }
  return JSON.stringify(value);
}

/** Every IAM permission of a template as `Role: action on resource`, inline role policies included. */
function permissions(resources: Record<string, Resource>): string[] {
  const lines: string[] = [];
  const add = (roles: unknown[], statements: Statement[]) => {
    for (const role of roles) {
      for (const statement of statements) {
        expect(statement.Effect).toBe('Allow');
        for (const action of [statement.Action].flat()) {
          for (const resource of [statement.Resource].flat()) {
            const condition = statement.Condition ? ` if ${JSON.stringify(statement.Condition)}` : '';
            lines.push(`${render(role).replace(/^<|>$/g, '')}: ${action} on ${render(resource)}${condition}`);
          }
        }
      }
    }
  };
  for (const [id, r] of Object.entries(resources)) {
    if (r.Type === 'AWS::IAM::Policy') {
      add(
        r.Properties.Roles as unknown[],
        (r.Properties.PolicyDocument as { Statement: Statement[] }).Statement,
      );
    }
    if (r.Type === 'AWS::IAM::Role') {
      for (const policy of (r.Properties.Policies ?? []) as {
        PolicyDocument: { Statement: Statement[] };
      }[]) {
        add([{ Ref: id }], policy.PolicyDocument.Statement);
      }
    }
  }
  return lines.sort();
}

/** Anything in a Lambda environment that looks like a secret, as `Function.VARIABLE: why`. */
export function secretLookingVariables(resources: Record<string, Resource>): string[] {
  const findings: string[] = [];
  for (const [id, r] of Object.entries(resources)) {
    if (r.Type !== 'AWS::Lambda::Function') continue;
    const variables =
      (r.Properties.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables ?? {};
    for (const [name, value] of Object.entries(variables)) {
      const where = `${bare(id)}.${name}`;
      const text = typeof value === 'string' ? value : JSON.stringify(value);
      // A secret's ARN is a reference, not a secret: allowed, and only as a Ref to a secret resource.
      if (/SECRET_ARN$/.test(name)) {
        if (typeof value === 'string' || !('Ref' in (value as object))) findings.push(`${where}: not a Ref`);
        continue;
      }
      if (/passw|secret|token|credential|private.?key|api.?key|auth/i.test(name)) {
        findings.push(`${where}: secret-looking name`);
      }
      if (/\{\{resolve:(secretsmanager|ssm-secure)/.test(text)) findings.push(`${where}: resolves a secret`);
      if (/\b(AKIA|ASIA)[0-9A-Z]{16}\b/.test(text)) findings.push(`${where}: an AWS access key id`);
      if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) findings.push(`${where}: a private key`);
      if (/:\/\/[^\s/:@]+:[^\s/@]+@/.test(text)) findings.push(`${where}: a URL with a password`);
      if (/password=|pwd=/i.test(text)) findings.push(`${where}: a password parameter`);
      if (/(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])/.test(text)) {
        findings.push(`${where}: a 40-character key-like string`);
      }
    }
  }
  return findings;
}

describe.each(['dev', 'prod'])('security controls of stage %s', (stage) => {
  const { stack, template } = synthStage(stage);
  const resources = template.toJSON().Resources as Record<string, Resource>;
  const rdsUser = (role: string) =>
    `arn:<AWS::Partition>:rds-db:<AWS::Region>:<AWS::AccountId>:dbuser:<Database.DbiResourceId>/${role}`;

  it('grants every role exactly these permissions: no wildcard actions, * only where CDK generates it', () => {
    // Assess: the whole list, so any new grant (ours or a CDK default) is a reviewed change here.
    const provider = bare(stack.getLogicalId(stack.migrator.node.defaultChild as never));
    expect(provider).toBe('Migrate');
    const expected = [
      'BucketNotificationsHandler050a0587b7544547bf325f094a3db834Role: s3:PutBucketNotification on <Gallery.Arn>',
      'IndexImagesServiceRole: rds-db:connect on ' + rdsUser(DATABASE_ROLES.indexer),
      'IndexImagesServiceRole: s3:GetObject on <Gallery.Arn>/*',
      'IndexImagesServiceRole: s3:ListBucket on <Gallery.Arn>',
      'IndexImagesServiceRole: sqs:ChangeMessageVisibility on <ObjectEvents.Arn>',
      'IndexImagesServiceRole: sqs:DeleteMessage on <ObjectEvents.Arn>',
      'IndexImagesServiceRole: sqs:GetQueueAttributes on <ObjectEvents.Arn>',
      'IndexImagesServiceRole: sqs:GetQueueUrl on <ObjectEvents.Arn>',
      'IndexImagesServiceRole: sqs:ReceiveMessage on <ObjectEvents.Arn>',
      // CDK's log-retention handler (the database's log groups): its names are not known in advance.
      'LogRetentionaae0aa3c5b4d4f87b02d85b201efdd8aServiceRole: logs:DeleteRetentionPolicy on *',
      'LogRetentionaae0aa3c5b4d4f87b02d85b201efdd8aServiceRole: logs:PutRetentionPolicy on *',
      'MigrateProviderframeworkonEventServiceRole: lambda:GetFunction on <Migrate.Arn>',
      'MigrateProviderframeworkonEventServiceRole: lambda:InvokeFunction on <Migrate.Arn>',
      'MigrateProviderframeworkonEventServiceRole: lambda:InvokeFunction on <Migrate.Arn>:*',
      'MigrateServiceRole: secretsmanager:DescribeSecret on <DatabaseSecretAttachment>',
      'MigrateServiceRole: secretsmanager:GetSecretValue on <DatabaseSecretAttachment>',
      // Reconcile (list the bucket, send checks to the queue) and the dead letters (list, redrive).
      'OperationsServiceRole: rds-db:connect on ' + rdsUser(DATABASE_ROLES.operator),
      'OperationsServiceRole: s3:ListBucket on <Gallery.Arn>',
      'OperationsServiceRole: sqs:ChangeMessageVisibility on <DeadLetters.Arn>',
      'OperationsServiceRole: sqs:DeleteMessage on <DeadLetters.Arn>',
      'OperationsServiceRole: sqs:GetQueueAttributes on <DeadLetters.Arn>',
      'OperationsServiceRole: sqs:GetQueueAttributes on <ObjectEvents.Arn>',
      'OperationsServiceRole: sqs:ListMessageMoveTasks on <DeadLetters.Arn>',
      'OperationsServiceRole: sqs:ReceiveMessage on <DeadLetters.Arn>',
      'OperationsServiceRole: sqs:SendMessage on <ObjectEvents.Arn>',
      'OperationsServiceRole: sqs:StartMessageMoveTask on <DeadLetters.Arn>',
      'SearchServiceRole: rds-db:connect on ' + rdsUser(DATABASE_ROLES.query),
      'SearchServiceRole: s3:GetObject on <Gallery.Arn>/*',
      'SearchServiceRole: s3:ListBucket on <Gallery.Arn>',
      'SearchServiceRole: s3:PutObject on <Gallery.Arn>/query-uploads/*',
      // GET /status: the queues' depth.
      'SearchServiceRole: sqs:GetQueueAttributes on <DeadLetters.Arn>',
      'SearchServiceRole: sqs:GetQueueAttributes on <ObjectEvents.Arn>',
      'VpcFlowLogIAMRole: logs:CreateLogStream on <FlowLogs.Arn>',
      'VpcFlowLogIAMRole: logs:DescribeLogStreams on <FlowLogs.Arn>',
      'VpcFlowLogIAMRole: logs:PutLogEvents on <FlowLogs.Arn>',
    ];
    const actual = permissions(resources);
    expect(actual).toEqual(expected.sort());
    expect(actual.filter((line) => /: [^ ]*\*/.test(line))).toEqual([]);
  });

  it('attaches only the AWS-maintained minimum managed policies', () => {
    const managed = Object.values(resources)
      .filter((r) => r.Type === 'AWS::IAM::Role')
      .flatMap((r) => ((r.Properties.ManagedPolicyArns ?? []) as unknown[]).map(render));
    expect([...new Set(managed)].sort()).toEqual([
      'arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole',
      'arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole',
      'arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs',
    ]);
  });

  it('lets each function log in to PostgreSQL as its own role with IAM tokens; only migrate reads the admin secret', () => {
    const fn = (construct: { node: { defaultChild?: unknown } }) =>
      resources[stack.getLogicalId(construct.node.defaultChild as never)]!.Properties as {
        Environment: { Variables: Record<string, unknown> };
      };
    template.hasResourceProperties('AWS::RDS::DBInstance', { EnableIAMDatabaseAuthentication: true });
    expect(fn(stack.indexer).Environment.Variables.OMPF_DB_USER).toBe(DATABASE_ROLES.indexer);
    expect(fn(stack.query).Environment.Variables.OMPF_DB_USER).toBe(DATABASE_ROLES.query);
    for (const f of [stack.indexer, stack.query]) {
      expect(fn(f).Environment.Variables.OMPF_DB_SECRET_ARN).toBeUndefined();
      expect(render(fn(f).Environment.Variables.OMPF_DB_HOST)).toBe('<Database.Endpoint.Address>');
    }
    expect(render(fn(stack.migrator).Environment.Variables.OMPF_DB_SECRET_ARN)).toBe(
      '<DatabaseSecretAttachment>',
    );
  });

  it('rotates the admin secret every 30 days, from inside the VPC', () => {
    const schedules = Object.values(resources).filter(
      (r) => r.Type === 'AWS::SecretsManager::RotationSchedule',
    );
    expect(schedules).toHaveLength(1);
    expect(render(schedules[0]!.Properties.SecretId)).toBe('<DatabaseSecretAttachment>');
    expect(schedules[0]!.Properties.RotationRules).toEqual({ ScheduleExpression: 'rate(30 days)' });
    expect(render(schedules[0]!.Properties.RotationLambdaARN)).toBe(
      '<DatabaseRotationSingleUser.Outputs.RotationLambdaARN>',
    );
    template.hasResourceProperties('AWS::Serverless::Application', {
      Parameters: Match.objectLike({ vpcSubnetIds: Match.anyValue(), vpcSecurityGroupIds: Match.anyValue() }),
    });
  });

  it('keeps secrets out of every Lambda environment (Secrets Manager ARN references only)', () => {
    expect(secretLookingVariables(resources)).toEqual([]);
  });

  it('signs short-lived URLs: result GETs for 15 minutes at most, upload PUTs for 5', () => {
    const query = resources[stack.getLogicalId(stack.query.node.defaultChild as never)]!.Properties as {
      Environment: { Variables: Record<string, string> };
    };
    expect(Number(query.Environment.Variables.OMPF_URL_TTL_SECONDS)).toBeLessThanOrEqual(900);
    expect(Number(query.Environment.Variables.OMPF_UPLOAD_TTL_SECONDS)).toBeLessThanOrEqual(300);
  });

  it('passes cdk-nag AwsSolutions with only the acknowledged findings (synth fails otherwise)', () => {
    const app = new App({
      context: { ...CDK_JSON.context, stage, model: 'mobilenetv2-int8', 'aws:cdk:bundling-stacks': [] },
    });
    buildOmpfApp(app);
    expect(() => app.synth()).not.toThrow();
  });
});

describe('the environment scan (it would catch a secret)', () => {
  it.each([
    ['a password variable', { DB_PASSWORD: 'x' }, 'secret-looking name'],
    [
      'a URL with a password',
      { DATABASE_URL: 'postgres://admin:hunter2@db:5432/ompf' },
      'a URL with a password',
    ],
    ['an access key id', { KEY_ID: 'AKIAIOSFODNN7EXAMPLE' }, 'an AWS access key id'],
    [
      'a resolved secret',
      { X: { 'Fn::Join': ['', ['{{resolve:secretsmanager:', { Ref: 'S' }, '}}']] } },
      'resolves a secret',
    ],
    ['a secret ARN that is a literal', { OMPF_DB_SECRET_ARN: 'arn:aws:secretsmanager:x' }, 'not a Ref'],
  ])('flags %s', (_name, variables, why) => {
    const resources = {
      Fn12345678: { Type: 'AWS::Lambda::Function', Properties: { Environment: { Variables: variables } } },
    };
    expect(secretLookingVariables(resources)).toEqual([expect.stringContaining(why)]);
  });
});
