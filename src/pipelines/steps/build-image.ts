import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { buildImage } from '../../build/index.js';
import { APP_SPEC_FILE, parseAppSpec } from '../../deploy/index.js';
import { defineStep } from './step.js';

const list = z
  .string()
  .transform((value) => value.split(/[\s,]+/).filter(Boolean))
  .optional();

/**
 * Packs the workspace (or `context`) into an OCI image with the native builder and pushes it
 * to Valve's registry as `<team>/<app>:<short sha>`. Entrypoint and command default to the
 * container's command and args in the app spec.
 */
export const buildImageStep = defineStep({
  name: 'build-image',
  description: 'Build an OCI image from the workspace and push it to the registry.',
  inputs: z.strictObject({
    context: z.string().default('.'),
    tag: z
      .string()
      .regex(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/, 'expected an OCI tag')
      .optional(),
    exclude: list,
  }),
  async run(context, inputs) {
    const dir = resolve(context.workspace, inputs.context);
    if (!dir.startsWith(resolve(context.workspace)))
      throw new Error(`with.context: "${inputs.context}" is outside the workspace`);
    const specFile = join(context.workspace, APP_SPEC_FILE);
    const container = existsSync(specFile)
      ? Object.values(parseAppSpec(readFileSync(specFile, 'utf8'), APP_SPEC_FILE).containers)[0]
      : undefined;
    const repo = `${context.run.team}/${context.run.app}`;
    const tag = inputs.tag ?? context.run.commit.slice(0, 12);
    const result = await buildImage({
      contextDir: dir,
      exclude: ['.git', ...(inputs.exclude ?? [])],
      config: {
        entrypoint: container?.command,
        cmd: container?.args,
        env: container?.variables,
        labels: {
          'org.opencontainers.image.revision': context.run.commit,
          'org.opencontainers.image.source': repo,
        },
      },
      registry: context.services.registry,
      repo,
      tag,
      onProgress: (message) => context.log(message),
    });
    const image = `${context.services.registryHost()}/${repo}@${result.digest}`;
    context.log(
      `pushed ${context.services.registryHost()}/${repo}:${tag} (${result.digest}, ${result.size} bytes)`,
    );
    return { image, digest: result.digest, tag };
  },
});
