import { existsSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { build, parseImageReference, type BuildOptions } from '../../build/index.js';
import { APP_SPEC_FILE, loadAppSpec, plainVariables } from '../../deploy/index.js';
import { defineStep, type StepContext } from './step.js';
import { isInside, workspaceRelative } from './workspace-files.js';

const list = z
  .string()
  .transform((value) => value.split(/[\s,]+/).filter(Boolean))
  .optional();

/**
 * Builds an OCI image from the workspace and pushes it to Valve's registry as
 * `<team>/<app>:<short sha>`. Without `dockerfile`, the native builder packs `context` into a
 * layer on top of `base` (or of nothing), with the entrypoint, command and variables of the
 * app spec's container; with `dockerfile`, buildah (or podman) builds it.
 */
export const buildImageStep = defineStep({
  name: 'build-image',
  description: 'Build an OCI image from the workspace and push it to the registry.',
  inputs: z
    .strictObject({
      context: z.string().default('.'),
      tag: z
        .string()
        .regex(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/, 'expected an OCI tag')
        .optional(),
      exclude: list,
      base: z.string().min(1).optional(),
      dockerfile: z.string().min(1).optional(),
      'build-args': z.string().optional(),
      'registry-username': z.string().min(1).optional(),
      'registry-password': z.string().optional(),
      insecure: z.enum(['true', 'false']).default('false'),
    })
    .refine((inputs) => !inputs['registry-password'] || inputs['registry-username'], {
      message: 'a password needs a username',
      path: ['registry-username'],
    })
    .refine((inputs) => !inputs['build-args']?.trim() || inputs.dockerfile, {
      message: 'build arguments need a dockerfile',
      path: ['build-args'],
    })
    .refine((inputs) => !inputs.exclude?.length || !inputs.dockerfile, {
      message: 'a Dockerfile build leaves files out with a .dockerignore file, not exclude',
      path: ['exclude'],
    }),
  async run(context, inputs) {
    const workspace = resolve(context.workspace);
    const dir = await inWorkspace(workspace, inputs.context, 'with.context');
    const repo = `${context.run.team}/${context.run.app}`;
    const tag = inputs.tag ?? context.run.commit.slice(0, 12);
    const labels = {
      'org.opencontainers.image.revision': context.run.commit,
      'org.opencontainers.image.source': repo,
    };
    const common: BuildOptions = {
      contextDir: dir,
      registry: context.services.registry,
      repo,
      tag,
      base: inputs.base && checkBase(context, inputs.base),
      baseCredentials: inputs['registry-username']
        ? {
            username: inputs['registry-username'],
            password: inputs['registry-password'] ?? '',
          }
        : undefined,
      localRegistryHost: context.services.registryHost(),
      insecureRegistries:
        inputs.insecure === 'true' && inputs.base
          ? [parseImageReference(inputs.base, 'with.base').host].filter(Boolean)
          : undefined,
      onProgress: (message) => context.log(message),
      signal: context.signal,
    };
    const result = inputs.dockerfile
      ? await build({
          ...common,
          dockerfile: await inWorkspace(workspace, inputs.dockerfile, 'with.dockerfile'),
          buildArgs: parseBuildArgs(inputs['build-args'] ?? ''),
          config: { labels },
        })
      : await build({
          ...common,
          exclude: ['.git', ...(inputs.exclude ?? [])],
          config: { ...appSpecConfig(context), labels },
        });
    const image = `${context.services.registryHost()}/${repo}@${result.digest}`;
    context.log(
      `pushed ${context.services.registryHost()}/${repo}:${tag} (${result.digest}, ${result.size} bytes, ${result.builder} builder${result.base ? `, base ${result.base.digest}` : ''})`,
    );
    return { image, digest: result.digest, tag };
  },
});

/** The host path of a workspace path; refused when it leaves the workspace, by symlink too. */
async function inWorkspace(workspace: string, input: string, what: string): Promise<string> {
  const path = join(workspace, workspaceRelative(workspace, input, what));
  // A path that does not exist is left for the builder to report.
  const real = await realpath(path).catch(() => null);
  if (real && !isInside(await realpath(workspace), real)) {
    throw new Error(`${what}: "${input}" reaches out of the workspace through a symlink`);
  }
  return path;
}

/**
 * Entrypoint, command and variables from the app spec's first container, if there is one. Only
 * plain variables go into the image: secret references are resolved at deploy time and must
 * never be baked into a layer or config.
 */
function appSpecConfig(context: StepContext) {
  if (!existsSync(join(context.workspace, APP_SPEC_FILE))) return {};
  const spec = loadAppSpec(context.workspace);
  const container = Object.values(spec.containers)[0];
  return { entrypoint: container?.command, cmd: container?.args, env: plainVariables(spec) };
}

/** A base in Valve's own registry must belong to the run's team, as a pull would require. */
function checkBase(context: StepContext, base: string): string {
  const parsed = parseImageReference(base, 'with.base');
  if (parsed.host && parsed.host !== context.services.registryHost()) return base;
  const team = parsed.repository.split('/')[0];
  if (team !== context.run.team || !parsed.repository.includes('/')) {
    throw new Error(
      `with.base: ${parsed.repository} is not a repository of team ${context.run.team}`,
    );
  }
  return base;
}

/** `KEY=VALUE` per line; blank lines and `#` comments are skipped. */
export function parseBuildArgs(text: string): Record<string, string> {
  const args: Record<string, string> = {};
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.replace(/\r$/, '');
    if (!line.trim() || line.trimStart().startsWith('#')) continue;
    const eq = line.indexOf('=');
    const name = eq > 0 ? line.slice(0, eq).trim() : '';
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new Error(`with.build-args: line ${i + 1} is not KEY=VALUE`);
    }
    args[name] = line.slice(eq + 1);
  }
  return args;
}
