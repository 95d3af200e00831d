import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { invalidInput } from '../errors.js';
import { validateRepositoryName, validateTag } from '../registry/index.js';
import { resolveBase } from './base-image.js';
import type { Builder, BuildOptions, BuiltImage } from './builder.js';
import { sourceDateEpoch } from './native.js';
import { loadOciLayout, writeOciLayout } from './oci-layout.js';

/**
 * The Dockerfile builder: `buildah bud` (or `podman build` when only podman is installed)
 * into the local containers-storage under a temporary name, `push` to an OCI layout in a temp
 * directory, and that layout loaded into Valve's registry with every blob checked. The
 * temporary image (and a base it was given) are removed afterwards, also when the build fails.
 *
 * `--layers=false` (no cache images left behind), `--timestamp` from SOURCE_DATE_EPOCH
 * (default 0) so that a Dockerfile whose RUN steps are reproducible gives the same digest,
 * `--pull=missing` so that a FROM image present locally is used as it is (air-gapped hosts).
 * A `base` is fetched by Valve (its registry or any other, with credentials) and handed to
 * the tool as an OCI layout replacing the first FROM (`--from oci:DIR`).
 *
 * The tools read containers.conf as usual (scripts/setup-podman.sh writes runc and no
 * default ulimits there); `BUILDAH_ISOLATION=chroot` in the server's environment switches
 * RUN isolation where runc cannot run.
 */

export type BuildTool = 'buildah' | 'podman';
const tools: readonly BuildTool[] = ['buildah', 'podman'];

const NOT_INSTALLED =
  'building from a Dockerfile needs buildah or podman on the server, and neither is installed ' +
  '(scripts/setup-podman.sh installs them); leave out dockerfile to use the native builder';

export const dockerfileBuilder: Builder = {
  name: 'dockerfile',
  capabilities: {
    baseImages: true,
    runCommands: true,
    buildArgs: true,
    contextLayout: false,
    runtimeConfig: 'labels',
    reproducible: 'if-run-steps-are',
    requires: tools,
  },
  unavailable: async () => ((await findBuildTool()) ? null : NOT_INSTALLED),
  build: (options) => buildDockerfile(options),
};

export interface DockerfileBuildOptions extends BuildOptions {
  dockerfile: string;
  /** Default: buildah if installed, else podman. */
  tool?: BuildTool;
}

/** The first of buildah and podman that answers `--version` with this PATH, or null. */
export async function findBuildTool(
  env: NodeJS.ProcessEnv = process.env,
): Promise<BuildTool | null> {
  for (const tool of tools) {
    const ok = await new Promise<boolean>((resolve) => {
      const child = spawn(tool, ['--version'], { stdio: 'ignore', env });
      child.on('error', () => resolve(false));
      child.on('close', (code) => resolve(code === 0));
    });
    if (ok) return tool;
  }
  return null;
}

export async function buildDockerfile(options: BuildOptions): Promise<BuiltImage> {
  const { registry, repo, tag } = options;
  const progress = options.onProgress ?? (() => undefined);
  validateRepositoryName(repo);
  validateTag(tag);
  if (options.dockerfile === undefined) throw invalidInput('dockerfile: required');
  const tool = (options as Partial<DockerfileBuildOptions>).tool ?? (await findBuildTool());
  if (!tool) throw invalidInput(`dockerfile: ${NOT_INSTALLED}`, { parameter: 'dockerfile' });

  const contextDir = path.resolve(options.contextDir);
  if (!(await stat(contextDir).catch(() => null))?.isDirectory()) {
    throw invalidInput(`build context ${options.contextDir} is not a directory`, {
      parameter: 'contextDir',
    });
  }
  const dockerfile = path.resolve(contextDir, options.dockerfile);
  if (!(await stat(dockerfile).catch(() => null))?.isFile()) {
    throw invalidInput(`dockerfile: ${options.dockerfile} is not a file`, {
      parameter: 'dockerfile',
    });
  }
  const buildArgs = Object.entries(options.buildArgs ?? {});
  for (const [name] of buildArgs) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw invalidInput(`buildArgs: "${name}" is not a build argument name`, {
        parameter: 'buildArgs',
      });
    }
  }
  const epoch = sourceDateEpoch();

  // Lowercase throughout: the tool names a `--from oci:DIR` image after DIR.
  const id = randomUUID();
  const scratch = path.join(os.tmpdir(), `valve-dockerfile-${id}`);
  await mkdir(scratch, { mode: 0o700 });
  const image = `localhost/valve-build/${id}:build`;
  const run = (args: string[]) => runTool(tool, args, progress, options.signal);
  try {
    let base: BuiltImage['base'];
    const from: string[] = [];
    if (options.base) {
      const resolved = await resolveBase({
        base: options.base,
        registry,
        credentials: options.baseCredentials,
        insecureRegistries: options.insecureRegistries,
        localRegistryHost: options.localRegistryHost,
        onProgress: progress,
        signal: options.signal,
      });
      await writeOciLayout({
        dir: path.join(scratch, 'base'),
        registry,
        manifest: resolved.manifest,
        refName: 'base',
      });
      from.push('--from', `oci:${path.join(scratch, 'base')}:base`);
      base = { reference: resolved.reference, digest: resolved.digest };
    }

    progress(`${tool} ${tool === 'buildah' ? 'bud' : 'build'} -f ${options.dockerfile}`);
    await run([
      tool === 'buildah' ? 'bud' : 'build',
      '--layers=false',
      '--pull=missing',
      '--format=oci',
      '--force-rm',
      `--timestamp=${epoch}`,
      '--file',
      dockerfile,
      '--tag',
      image,
      ...from,
      ...buildArgs.flatMap(([name, value]) => ['--build-arg', `${name}=${value}`]),
      ...Object.entries(options.config?.labels ?? {})
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .flatMap(([name, value]) => ['--label', `${name}=${value}`]),
      contextDir,
    ]);

    const layout = path.join(scratch, 'out');
    const digestFile = path.join(scratch, 'digest');
    await run([
      'push',
      '--quiet',
      '--format=oci',
      '--digestfile',
      digestFile,
      image,
      `oci:${layout}:image`,
    ]);
    const loaded = await loadOciLayout({ dir: layout, registry, repo, tag, refName: 'image' });
    const pushed = (await readFile(digestFile, 'utf8')).trim();
    if (pushed !== loaded.digest) {
      throw new Error(
        `${tool} wrote the image as ${pushed}, but the layout holds ${loaded.digest}`,
      );
    }
    progress(`pushed ${repo}:${tag} as ${loaded.digest}`);
    return {
      reference: `${repo}@${loaded.digest}`,
      digest: loaded.digest,
      size: loaded.size,
      layers: loaded.layers,
      builder: 'dockerfile',
      ...(base ? { base } : {}),
    };
  } finally {
    await removeImages(tool, image, path.join(scratch, 'base'), progress);
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * Removes the build's image and the base the tool stored from `--from oci:DIR` (named after
 * DIR). `rmi` by name only untags an image that has other names, so nobody else's image goes.
 */
async function removeImages(
  tool: BuildTool,
  image: string,
  baseDir: string,
  progress: (message: string) => void,
): Promise<void> {
  const names = [image];
  const listed = await capture(
    tool,
    tool === 'buildah' ? ['images', '--json'] : ['images', '--format', 'json'],
  );
  try {
    for (const entry of JSON.parse(listed || '[]') as { names?: string[]; Names?: string[] }[]) {
      for (const name of entry.names ?? entry.Names ?? []) {
        if (name.includes(baseDir.replace(/^\/+/, ''))) names.push(name);
      }
    }
  } catch {
    // Nothing listed: at worst the base stays in local storage under its temp name.
  }
  for (const name of names) {
    const removed = await capture(tool, ['rmi', name]);
    if (removed === null && name !== image) progress(`could not remove ${name} from local storage`);
  }
}

/** Runs the tool, each output line to `progress`; fails with the last lines of its output. */
function runTool(
  tool: BuildTool,
  args: string[],
  progress: (message: string) => void,
  signal?: AbortSignal,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool, args, { stdio: ['ignore', 'pipe', 'pipe'], signal });
    const tail: string[] = [];
    const forward = (stream: NodeJS.ReadableStream) => {
      let partial = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) emit(line);
      });
      stream.on('end', () => partial && emit(partial));
    };
    const emit = (line: string) => {
      const clean = line.replace(/\r/g, '').trimEnd();
      if (!clean) return;
      progress(clean);
      tail.push(clean);
      if (tail.length > 20) tail.shift();
    };
    forward(child.stdout);
    forward(child.stderr);
    child.on('error', (error) => {
      if (signal?.aborted) reject(signal.reason ?? error);
      else reject(new Error(`cannot run ${tool}: ${error.message}`, { cause: error }));
    });
    child.on('close', (code) => {
      if (code === 0) resolve();
      else if (signal?.aborted) reject(signal.reason ?? new Error(`${tool} was stopped`));
      else reject(new Error(`${tool} ${args[0]} failed (exit ${code}):\n${tail.join('\n')}`));
    });
  });
}

/** The tool's stdout, or null when it failed. */
function capture(tool: BuildTool, args: string[]): Promise<string | null> {
  return new Promise((resolve) => {
    const child = spawn(tool, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => (out += chunk));
    child.on('error', () => resolve(null));
    child.on('close', (code) => resolve(code === 0 ? out : null));
  });
}
