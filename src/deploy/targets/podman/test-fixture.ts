import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { Registry, registryRoutes } from '../../../registry/index.js';
import type { WorkloadImage, WorkloadStatus } from '../target.js';
import { PodmanCli } from './cli.js';
import { labelKeys, listContainers, type ObservedContainer } from './containers.js';
import { PodmanTarget, type PodmanTargetOptions } from './podman-target.js';
import {
  publishBusyboxHttpdImage,
  versionedHttpdCommand,
} from '../../../../test/support/images.js';

/**
 * Test support for the podman target's tests: one registry per test process, served over HTTP
 * with Basic auth, holding the test images; targets on fresh data directories pulling from it;
 * cleanup of every container and image they made. Not used outside tests.
 */

export const PODMAN = spawnSync('podman', ['--version']).status === 0;
export const CREDS = { username: 'alice', password: 'secret-token' };
export const cli = new PodmanCli();

export interface Fixture {
  registry: Registry;
  app: FastifyInstance;
  host: string;
  root: string;
  images: {
    v1: WorkloadImage;
    v2: WorkloadImage;
    neverReady: WorkloadImage;
    /** Ready (/healthz answers 200) but answering 500 `podman-v4 failed` on every other path. */
    serverError: WorkloadImage;
  };
  /** How often a target asked for registry credentials. */
  credentialCalls: number;
}

/**
 * Declares the tests of `suites` where podman is installed, and removes every container and
 * image they made after them (also after a failure); elsewhere one skipped test, `name`.
 */
export function withPodman(name: string, suites: () => void): void {
  if (!PODMAN) {
    test(name, (t) => t.skip('podman is not installed'));
    return;
  }
  after(cleanupAll);
  suites();
}

let fixturePromise: Promise<Fixture> | null = null;
const targets: { target: PodmanTarget; dataDir: string }[] = [];

export function fixture(): Promise<Fixture> {
  fixturePromise ??= (async () => {
    const root = await mkdtemp(join(tmpdir(), 'valve-podman-target-'));
    const registry = new Registry({ dataDir: join(root, 'registry-data') });
    const app = Fastify();
    const basic = (request: FastifyRequest) => {
      const header = request.headers.authorization;
      if (!header?.startsWith('Basic ')) return null;
      return Buffer.from(header.slice('Basic '.length), 'base64').toString('utf8');
    };
    const good = `${CREDS.username}:${CREDS.password}`;
    await app.register(
      registryRoutes(registry, {
        authenticated: async (request) => basic(request) === good,
        authorize: async (request) => (basic(request) === good ? 'ok' : 'unauthenticated'),
      }),
    );
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    assert.ok(address && typeof address === 'object');
    const host = `127.0.0.1:${address.port}`;
    const publish = (version: string, healthy?: boolean) =>
      publishBusyboxHttpdImage(registry, host, 'team/hello', { version, healthy });
    const v1 = await publish('podman-v1');
    return {
      registry,
      app,
      host,
      root,
      images: {
        v1,
        v2: await publish('podman-v2'),
        neverReady: await publish('podman-v3', false),
        serverError: await publishServerError(registry, host, v1, 'podman-v4'),
      },
      credentialCalls: 0,
    };
  })();
  return fixturePromise;
}

/**
 * `base` with another command: /healthz still passes, every other path runs a CGI script
 * answering `500 <version> failed` (busybox httpd runs /cgi-bin/index.cgi when there is no
 * index.html). Same layers, a new config and manifest.
 */
async function publishServerError(
  registry: Registry,
  host: string,
  base: WorkloadImage,
  version: string,
): Promise<WorkloadImage> {
  const stored = await registry.getManifest(base.repo, base.digest);
  assert.ok(stored);
  const manifest = JSON.parse(stored.body.toString('utf8')) as {
    config: { digest: string; size: number };
  };
  const stream = await registry.openBlob(manifest.config.digest);
  assert.ok(stream);
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  const config = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
    config: { Env: string[]; Cmd: string[] };
  };
  // CRLF: Node's HTTP parser refuses a bare LF between headers.
  const script = [
    '#!/bin/sh',
    'printf "Status: 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\n%s failed" "$VERSION"',
  ].join('\n');
  config.config.Env = [
    ...config.config.Env.filter((entry) => !entry.startsWith('VERSION=')),
    `VERSION=${version}`,
  ];
  const [shell, flag, serve] = versionedHttpdCommand;
  config.config.Cmd = [
    shell!,
    flag!,
    `mkdir -p /err/cgi-bin && cp /www/healthz /err/healthz && printf '%s\\n' '${script}' > /err/cgi-bin/index.cgi && chmod 755 /err/cgi-bin/index.cgi && ${serve!.replace('-h /www', '-h /err')}`,
  ];
  const configBody = Buffer.from(JSON.stringify(config));
  const { digest: configDigest } = await registry.putBlob(configBody);
  const body = Buffer.from(
    JSON.stringify({
      ...manifest,
      config: { ...manifest.config, digest: configDigest, size: configBody.length },
    }),
  );
  const { digest } = await registry.putManifest(base.repo, version, body, stored.mediaType);
  return { reference: `${host}/${base.repo}@${digest}`, repo: base.repo, digest };
}

const debugLogger = Object.fromEntries(
  (['debug', 'info', 'warn', 'error'] as const).map((level) => [
    level,
    (obj: object, msg?: string) =>
      console.error(new Date().toISOString(), level, msg, JSON.stringify(obj)),
  ]),
) as unknown as PodmanTargetOptions['logger'];

export const portBase = () => 30_000 + Math.floor(Math.random() * 300) * 100;

/** A target on a fresh data directory (or `dataDir`), pulling from the fixture's registry. */
export async function newTarget(
  options: Partial<PodmanTargetOptions> & { dataDir?: string } = {},
): Promise<{ target: PodmanTarget; dataDir: string }> {
  const fx = await fixture();
  const dataDir = options.dataDir ?? (await mkdtemp(join(fx.root, 'data-')));
  const target = new PodmanTarget({
    dataDir,
    portBase: portBase(),
    registry: {
      host: fx.host,
      credentials: async () => {
        fx.credentialCalls++;
        return CREDS;
      },
    },
    startTimeoutMs: 5000,
    stopGraceMs: 2000,
    ...(process.env.DEBUG_PODMAN_TARGET ? { logger: debugLogger } : {}),
    ...options,
  });
  targets.push({ target, dataDir });
  return { target, dataDir };
}

/** Removes every container and image the targets of this process made, also after a failure. */
export async function cleanupAll(): Promise<void> {
  for (const { target } of targets) await target.close().catch(() => {});
  const owners = new Set(targets.map(({ target }) => target.owner));
  for (const owner of owners) {
    const left = await listContainers(cli, labelKeys.owner, owner).catch(() => []);
    if (left.length > 0)
      await cli.run(['rm', '--force', '--time', '0', ...left.map((container) => container.id)]);
  }
  if (fixturePromise) {
    const fx = await fixturePromise.catch(() => null);
    if (fx) {
      const names = new Set<string>();
      for (const { target } of targets) {
        for (const image of Object.values(fx.images))
          for (const name of target.imageNames(image)) names.add(name);
      }
      for (const name of names) await cli.run(['rmi', '--force', '--ignore', name]);
      await fx.app.close();
      await rm(fx.root, { recursive: true, force: true });
    }
  }
}

export async function get(url: string): Promise<string> {
  const res = await fetch(url);
  const text = await res.text();
  assert.equal(res.status, 200, `GET ${url}: ${text}`);
  return text;
}

/** Polls the status until `accept` holds; the deadline only bounds a broken test. */
export async function waitForStatus(
  target: PodmanTarget,
  key: string,
  accept: (status: WorkloadStatus) => boolean,
  timeoutMs = 60_000,
): Promise<WorkloadStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await target.status(key);
    if (accept(status)) return status;
    if (Date.now() > deadline)
      assert.fail(`status never matched: ${JSON.stringify(status, null, 2)}`);
    await delay(50);
  }
}

/** A client polling `url` every 20 ms until stopped; returns the failures it saw. */
export function pollThroughout(url: string): {
  stop: () => Promise<string[]>;
  answers: () => number;
} {
  const failures: string[] = [];
  let answers = 0;
  let polling = true;
  const loop = (async () => {
    while (polling) {
      const started = Date.now();
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(15_000) });
        const text = await res.text();
        if (res.status !== 200) failures.push(`HTTP ${res.status}: ${text}`);
        else answers++;
      } catch (error) {
        failures.push(String((error as Error).cause ?? error));
      }
      if (process.env.DEBUG_PODMAN_TARGET && Date.now() - started > 500)
        console.error(new Date().toISOString(), `slow request: ${Date.now() - started} ms`);
      await delay(20);
    }
  })();
  return {
    stop: async () => {
      polling = false;
      await loop;
      return failures;
    },
    answers: () => answers,
  };
}

export type WithContainer = WorkloadStatus['instances'][number] & { container?: string | null };
export const containerOf = (status: WorkloadStatus, index = 0) =>
  (status.instances[index] as WithContainer | undefined)?.container ?? null;

/** Every container carrying the target's label, running or not. */
export function containersOf(target: PodmanTarget): Promise<ObservedContainer[]> {
  return listContainers(cli, labelKeys.owner, target.owner);
}

/** Runs `script` with `sh -c` inside a container; its output. */
export function execIn(container: string, script: string): Promise<string> {
  return cli.check(['exec', container, 'sh', '-c', script]);
}

export async function containerExists(id: string): Promise<boolean> {
  return (await cli.run(['container', 'exists', id])).code === 0;
}
