#!/usr/bin/env node
/**
 * CDK entry: `npx cdk deploy -c stage=dev` (stages and their settings are in cdk.json).
 * cdk.json runs this file through esbuild (no ts-node needed).
 */
import { App } from 'aws-cdk-lib';
import { buildOmpfApp } from '../lib/infra/app';

const app = new App();
buildOmpfApp(app);
app.synth();
