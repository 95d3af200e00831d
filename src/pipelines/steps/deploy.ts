import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { APP_SPEC_FILE, parseAppSpec } from '../../deploy/index.js';
import { defineStep } from './step.js';

/**
 * Records the image in the deploy repo for one environment (a commit of rendered manifests),
 * then waits until the reconciler has it live, so the run tells whether the deploy worked.
 */
export const deployStep = defineStep({
  name: 'deploy',
  description: 'Commit the image to the deploy repo for an environment and wait until it is live.',
  inputs: z.strictObject({
    environment: z.string().default('dev'),
    image: z
      .string()
      .regex(
        /^[^@\s]+@sha256:[a-f0-9]{64}$/,
        'expected an image reference pinned by digest, e.g. ${{ steps.image.outputs.image }}',
      ),
    wait: z.enum(['true', 'false']).default('true'),
    'timeout-seconds': z.coerce.number().int().positive().default(300),
  }),
  async run(context, inputs) {
    const spec = parseAppSpec(
      readFileSync(join(context.workspace, APP_SPEC_FILE), 'utf8'),
      APP_SPEC_FILE,
    );
    if (!spec.environments[inputs.environment]) {
      throw new Error(
        `with.environment: "${inputs.environment}" is not an environment in ${APP_SPEC_FILE} (${Object.keys(spec.environments).join(', ')})`,
      );
    }
    const { deploy } = context.services;
    const commit = await deploy.deployImage({
      team: context.run.team,
      app: context.run.app,
      environment: inputs.environment,
      spec,
      image: inputs.image,
      sourceCommit: context.run.commit,
      actor: context.run.actor,
    });
    context.log(`deploy repo: committed ${commit.slice(0, 12)} for ${inputs.environment}`);
    if (inputs.wait === 'false') return { commit, url: '' };
    context.log(
      `waiting for ${inputs.environment} to run it (up to ${inputs['timeout-seconds']} s)`,
    );
    const view = await deploy.waitForSync(
      context.run.team,
      context.run.app,
      inputs.environment,
      commit,
      {
        timeoutMs: inputs['timeout-seconds'] * 1000,
        signal: context.signal,
      },
    );
    context.log(`${inputs.environment} is ${view.health} at ${view.url ?? '(no url)'}`);
    return { commit, url: view.url ?? '' };
  },
});
