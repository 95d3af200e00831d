/**
 * Real servers and clients for the build tests (not used by the server): CNCF Distribution
 * (Debian's `docker-registry`) as a remote registry, Valve's registry served over HTTP with a
 * Docker token service in front, and podman/skopeo runs. Everything listens on 127.0.0.1.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import Fastify from 'fastify';
import { registryRoutes, type Registry } from '../registry/index.js';
import type { RegistryCredentials } from './registry-client.js';

export const installed = (command: string, args = ['--version']) => {
  try {
    return spawnSync(command, args, { stdio: 'ignore' }).status === 0;
  } catch {
    return false;
  }
};

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCommand(command: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs a command and fails, with its stderr, unless it exits 0. */
export async function mustRun(command: string, args: string[]): Promise<string> {
  const run = await runCommand(command, args);
  if (run.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${run.code}):\n${run.stderr}`);
  }
  return run.stdout;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface RunningRegistry {
  /** `127.0.0.1:<port>`. */
  host: string;
  stop(): Promise<void>;
}

/**
 * Starts CNCF Distribution on a free loopback port with filesystem storage under `dir`;
 * with `auth`, behind htpasswd (bcrypt, from `htpasswd -B`), which answers a Basic challenge.
 */
export async function startDistribution(
  dir: string,
  auth?: RegistryCredentials,
): Promise<RunningRegistry> {
  await mkdir(dir, { recursive: true });
  let authConfig = '';
  if (auth) {
    const line = await mustRun('htpasswd', ['-Bbn', auth.username, auth.password]);
    await writeFile(path.join(dir, 'htpasswd'), line.trim() + '\n');
    authConfig = `auth:\n  htpasswd:\n    realm: valve-test\n    path: ${path.join(dir, 'htpasswd')}\n`;
  }
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const config = path.join(dir, 'config.yml');
    await writeFile(
      config,
      `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n` +
        `storage:\n  filesystem:\n    rootdirectory: ${path.join(dir, 'data')}\n` +
        `http:\n  addr: 127.0.0.1:${port}\n${authConfig}`,
    );
    const child = spawn('docker-registry', ['serve', config], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const host = `127.0.0.1:${port}`;
    const stop = async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    };
    for (let i = 0; i < 100 && child.exitCode === null; i++) {
      const answer = await fetch(`http://${host}/v2/`).catch(() => null);
      if (answer) {
        await answer.body?.cancel();
        return { host, stop };
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await stop();
    // Another process may have taken the port between freePort() and the registry's listen.
    if (attempt >= 2) throw new Error(`docker-registry did not start:\n${stderr}`);
  }
}

export interface ServedRegistry extends RunningRegistry {
  /** The token requests seen: their scope and whether they carried the right Basic creds. */
  tokenRequests: { scope: string | null; service: string | null; authorized: boolean }[];
}

/**
 * Serves a Valve Registry on a free loopback port. With `credentials`, every request needs a
 * Bearer token, which `/token` issues for those credentials (Basic), and a 401 carries a
 * `Bearer realm=...,service=...,scope=...` challenge, as Docker Hub and GHCR answer.
 */
export async function serveRegistry(
  registry: Registry,
  credentials?: RegistryCredentials,
): Promise<ServedRegistry> {
  const app = Fastify();
  const tokenRequests: ServedRegistry['tokenRequests'] = [];
  const basic =
    credentials &&
    `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
  const token = 'test-token-for-valve-build';
  if (credentials) {
    app.get('/token', async (request, reply) => {
      const query = request.query as Record<string, string>;
      const authorized = request.headers.authorization === basic;
      tokenRequests.push({
        scope: query.scope ?? null,
        service: query.service ?? null,
        authorized,
      });
      if (!authorized) return reply.code(401).send({ errors: [{ code: 'UNAUTHORIZED' }] });
      return { token, expires_in: 300 };
    });
  }
  await app.register(async (scope) => {
    if (credentials) {
      scope.addHook('onSend', async (request, reply, payload) => {
        if (reply.statusCode === 401) {
          const port = (app.server.address() as AddressInfo).port;
          const repo = /^\/v2\/(.+?)\/(manifests|blobs|tags)\//.exec(request.url)?.[1];
          reply.header(
            'www-authenticate',
            `Bearer realm="http://127.0.0.1:${port}/token",service="valve-test"${repo ? `,scope="repository:${repo}:pull"` : ''}`,
          );
        }
        return payload;
      });
    }
    const allowed = (authorization: string | undefined) =>
      !credentials || authorization === `Bearer ${token}`;
    await scope.register(
      registryRoutes(registry, {
        authenticated: async (request) => allowed(request.headers.authorization),
        authorize: async (request) =>
          allowed(request.headers.authorization) ? 'ok' : 'unauthenticated',
      }),
    );
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const host = `127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  return { host, tokenRequests, stop: () => app.close() };
}

/**
 * Pulls `image` from a registry on loopback with podman (plain http, optional credentials),
 * runs `command` in it (none: its own), optionally pushes it on to `pushTo` with the same
 * credentials, removes the local copies, and returns what the container printed.
 */
export async function podmanRun(
  image: string,
  command: string[],
  credentials?: RegistryCredentials,
  pushTo?: string,
): Promise<string> {
  const creds = credentials ? ['--creds', `${credentials.username}:${credentials.password}`] : [];
  await mustRun('podman', ['pull', '--quiet', '--tls-verify=false', ...creds, image]);
  try {
    const output = await mustRun('podman', ['run', '--rm', '--network=none', image, ...command]);
    if (pushTo) {
      await mustRun('podman', ['push', '--quiet', '--tls-verify=false', ...creds, image, pushTo]);
    }
    return output;
  } finally {
    await runCommand('podman', ['rmi', image]);
  }
}
