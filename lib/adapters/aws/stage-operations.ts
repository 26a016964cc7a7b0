import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { DependencyUnavailableError, NotFoundError, OperationFailedError } from '../../core/errors';

/**
 * The CLI's way to a deployed stage's operations (`ompf cloud ...`): the stack `Ompf-<stage>`'s
 * outputs name the operations function (CloudFormation DescribeStacks), which is invoked
 * synchronously (Lambda Invoke, RequestResponse) with the operation. The caller's own AWS credentials
 * and region (the SDK's usual chain) need cloudformation:DescribeStacks and lambda:InvokeFunction
 * only: the function runs in the stage's VPC, next to the database the CLI cannot reach.
 */

export async function stageFunctionName(stage: string, cloudFormation = new CloudFormationClient({})) {
  const stackName = `Ompf-${stage}`;
  let outputs;
  try {
    const result = await cloudFormation.send(new DescribeStacksCommand({ StackName: stackName }));
    outputs = result.Stacks?.[0]?.Outputs ?? [];
  } catch (error) {
    const message = (error as Error).message ?? '';
    if (/does not exist/i.test(message)) {
      throw new NotFoundError(`There is no stack ${stackName} in this account and region.`, {
        hint: `Deploy it (\`npx cdk deploy -c stage=${stage}\`), or set AWS_REGION / AWS_PROFILE to where it is.`,
      });
    }
    throw new DependencyUnavailableError(`CloudFormation could not describe ${stackName}: ${message}`, {
      cause: error,
      hint: 'Check your AWS credentials and region.',
    });
  }
  const name = outputs.find((o) => o.OutputKey === 'OperationsFunctionName')?.OutputValue;
  if (!name) {
    throw new NotFoundError(`${stackName} has no operations function (deployed by an older version).`, {
      hint: `Deploy the stage again: \`npx cdk deploy -c stage=${stage}\`.`,
    });
  }
  return name;
}

/** Invoke the stage's operations function with `operation`; its result, or its error as an OmpfError. */
export async function invokeOperation(
  functionName: string,
  operation: Record<string, unknown>,
  lambda = new LambdaClient({}),
): Promise<unknown> {
  let result;
  try {
    result = await lambda.send(
      new InvokeCommand({
        FunctionName: functionName,
        InvocationType: 'RequestResponse',
        Payload: Buffer.from(JSON.stringify(operation)),
      }),
    );
  } catch (error) {
    throw new DependencyUnavailableError(
      `Lambda could not invoke ${functionName}: ${(error as Error).message}`,
      {
        cause: error,
        hint: 'Check your AWS credentials (lambda:InvokeFunction on the function) and region.',
      },
    );
  }
  const text = result.Payload ? Buffer.from(result.Payload).toString('utf8') : 'null';
  const payload: unknown = JSON.parse(text || 'null');
  if (result.FunctionError) {
    const { errorType, errorMessage } = (payload ?? {}) as { errorType?: string; errorMessage?: string };
    throw new OperationFailedError(
      `The operation failed in ${functionName}: ${errorType ?? result.FunctionError}: ${errorMessage ?? text}`,
      { hint: "See the function's logs in CloudWatch (its log group is named after it)." },
    );
  }
  return payload;
}
