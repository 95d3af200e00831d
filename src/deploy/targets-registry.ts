/**
 * Targets per team: the clusters and hosts a team was given (`deploy_targets`), and one
 * `Target` instance per registered target. The built-in `local` target (this host) is given to
 * every team unless the server restricts it to some. An environment whose target is not
 * registered for its team gets an error, and nothing is applied. Drivers other than local are
 * loaded lazily by kind, so the Kubernetes client loads only when a Kubernetes target is used.
 */
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import { z } from 'zod';
import { ValveError } from '../errors.js';
import { now } from '../store/index.js';
import type { DeployTables } from './migrations.js';
import type { ImageSource, Target, TargetLogger } from './targets/target.js';

export const targetKinds = ['local', 'podman', 'kubernetes'] as const;
export type TargetKind = (typeof targetKinds)[number];

/** The built-in target's name. */
export const LOCAL_TARGET = 'local';

const name = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/,
    'expected a DNS label (lowercase letters, digits, dashes)',
  )
  .refine((value) => value !== LOCAL_TARGET, 'local is the built-in target; choose another name');

/** POST /api/teams/:team/targets */
export const targetInput = z.discriminatedUnion('kind', [
  z.strictObject({
    name,
    kind: z.literal('local'),
    config: z.strictObject({}).default({}),
  }),
  z.strictObject({
    name,
    // Podman on this host: nothing to configure (its state lives under the data directory).
    kind: z.literal('podman'),
    config: z.strictObject({}).default({}),
  }),
  z.strictObject({
    name,
    kind: z.literal('kubernetes'),
    config: z.strictObject({
      server: z.url({ protocol: /^https?$/, error: 'expected the API server URL (https://...)' }),
      namespace: z
        .string()
        .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'expected a namespace name'),
      /** A service account token; stored sealed, never shown again. */
      token: z.string().min(1),
      /** PEM of the cluster's CA, when it is not publicly trusted. */
      caCert: z.string().optional(),
      insecureSkipTlsVerify: z.boolean().optional(),
    }),
  }),
]);
export type TargetInput = z.infer<typeof targetInput>;

/** Seals secrets at rest (the pipelines' SecretCipher fits). */
export interface SecretSealer {
  encrypt(plaintext: string, aad: string): string;
  decrypt(sealed: string, aad: string): string;
}

/** Everything a driver's constructor gets: the target's config (secrets opened) and the host's services. */
export interface TargetDriverOptions {
  name: string;
  team: string;
  config: Record<string, unknown>;
  /** A directory of the target's own (under the server's data directory). */
  dataDir: string;
  /** First port for drivers that publish ports on this host (podman). */
  portBase: number;
  images: ImageSource;
  logger?: TargetLogger;
}
export type TargetFactory = (options: TargetDriverOptions) => Target | Promise<Target>;
type DriverKind = Exclude<TargetKind, 'local'>;

/**
 * How drivers on this host pull images from Valve's own registry (podman): the registry's
 * address and a short-lived pull token the server mints per repository. Podman then fetches
 * only the layers it lacks; without this it loads each new image whole from `images`.
 */
export interface RegistryPull {
  /** `host:port` the server listens on; asked at each pull (the port is known once it listens). */
  host: () => string;
  /** A token that may pull `repo` and nothing else, for the target `name` of `team`. */
  pullToken: (repo: string, target: { team: string; name: string }) => Promise<string>;
}

/** The Basic username podman sends with a pull token (the token endpoint ignores it). */
export const PULL_TOKEN_USERNAME = 'valve-deploy';

/** Drivers that pull from Valve's registry through `pull`, for `TargetRegistryOptions.drivers`. */
export function registryPullDrivers(
  pull: RegistryPull,
): Partial<Record<DriverKind, TargetFactory>> {
  return { podman: async (options) => (await loadDriver('podman', pull))(options) };
}

export interface TargetView {
  name: string;
  kind: TargetKind;
  /** The built-in local target (not stored, cannot be removed). */
  builtin: boolean;
  /** Config with secrets left out (`token: "(sealed)"`). */
  config: Record<string, unknown>;
  capabilities: Target['capabilities'] | null;
  createdBy: string | null;
  createdAt: string | null;
}

export interface TargetRegistryOptions {
  db: Kysely<DeployTables>;
  /** The built-in local target, shared by every team given it. */
  local: Target;
  cipher?: SecretSealer;
  /** Teams given the local target; null or absent: every team. */
  localTeams?: string[] | null;
  dataDir?: string;
  /** First port for drivers that publish ports on this host (podman). */
  portBase?: number;
  images?: ImageSource;
  logger?: TargetLogger;
  /** Drivers by kind; absent ones are imported from targets/<kind>/index.ts when first used. */
  drivers?: Partial<Record<DriverKind, TargetFactory>>;
}

const sealedFields = ['token'] as const;
const aadOf = (team: string, target: string) => `deploy-target:${team}/${target}`;

export class TargetRegistry {
  private readonly instances = new Map<string, Promise<Target>>();

  constructor(private readonly options: TargetRegistryOptions) {}

  get local(): Target {
    return this.options.local;
  }

  localAllowed(team: string): boolean {
    const teams = this.options.localTeams;
    return !teams || teams.includes(team);
  }

  async list(team: string): Promise<TargetView[]> {
    const rows = await this.options.db
      .selectFrom('deploy_targets')
      .selectAll()
      .where('team', '=', team)
      .orderBy('name')
      .execute();
    const builtin: TargetView[] = this.localAllowed(team)
      ? [
          {
            name: LOCAL_TARGET,
            kind: 'local',
            builtin: true,
            config: {},
            capabilities: this.options.local.capabilities,
            createdBy: null,
            createdAt: null,
          },
        ]
      : [];
    return [...builtin, ...rows.map((row) => this.view(row))];
  }

  async add(team: string, input: TargetInput, actor: string): Promise<TargetView> {
    if (input.kind === 'local' && !this.localAllowed(team))
      throw new ValveError(
        'DEPLOY_TARGET_UNKNOWN',
        `this server does not give the local target to team ${team}`,
      );
    const config: Record<string, unknown> = { ...input.config };
    for (const field of sealedFields) {
      if (typeof config[field] !== 'string') continue;
      if (!this.options.cipher)
        throw new ValveError('INTERNAL', 'no secret cipher configured to seal the target token');
      config[field] = this.options.cipher.encrypt(config[field], aadOf(team, input.name));
    }
    const row = {
      team,
      name: input.name,
      kind: input.kind,
      config: JSON.stringify(config),
      created_by: actor,
      created_at: now(),
    };
    const inserted = await this.options.db
      .insertInto('deploy_targets')
      .values(row)
      .onConflict((oc) => oc.columns(['team', 'name']).doNothing())
      .returning('name')
      .executeTakeFirst();
    if (!inserted)
      throw new ValveError(
        'DEPLOY_TARGET_EXISTS',
        `team ${team} already has a target named ${input.name}`,
      );
    return this.view(row);
  }

  /** Removes a registered target; refused while an environment runs on it. */
  async remove(team: string, target: string, usedBy: string[]): Promise<void> {
    if (target === LOCAL_TARGET)
      throw new ValveError('INPUT_INVALID', 'local is the built-in target; it cannot be removed');
    if (usedBy.length)
      throw new ValveError(
        'DEPLOY_TARGET_IN_USE',
        `target ${target} still runs ${usedBy.join(', ')}; move or remove those environments first`,
      );
    const deleted = await this.options.db
      .deleteFrom('deploy_targets')
      .where('team', '=', team)
      .where('name', '=', target)
      .executeTakeFirst();
    if (Number(deleted.numDeletedRows) === 0)
      throw new ValveError('NOT_FOUND', `target ${target} not found in team ${team}`);
    const instance = this.instances.get(`${team}/${target}`);
    this.instances.delete(`${team}/${target}`);
    await instance?.then((t) => (t === this.options.local ? undefined : t.close())).catch(() => {});
  }

  /** The Target for a team's target name; DEPLOY_TARGET_UNKNOWN when the team was not given it. */
  async resolve(team: string, target: string): Promise<Target> {
    const unregistered = () =>
      new ValveError(
        'DEPLOY_TARGET_UNKNOWN',
        `target ${target} is not registered for team ${team}`,
      );
    if (target === LOCAL_TARGET) {
      if (!this.localAllowed(team)) throw unregistered();
      return this.options.local;
    }
    const key = `${team}/${target}`;
    let instance = this.instances.get(key);
    if (!instance) {
      const row = await this.options.db
        .selectFrom('deploy_targets')
        .selectAll()
        .where('team', '=', team)
        .where('name', '=', target)
        .executeTakeFirst();
      if (!row) throw unregistered();
      if (row.kind === 'local') {
        if (!this.localAllowed(team)) throw unregistered();
        return this.options.local;
      }
      instance = this.create(row);
      this.instances.set(key, instance);
      // A driver that failed to load is tried again next time.
      instance.catch(() => {
        if (this.instances.get(key) === instance) this.instances.delete(key);
      });
    }
    return instance;
  }

  /** Closes every target instance (instances they run are left running). */
  async close(): Promise<void> {
    const created = await Promise.allSettled(this.instances.values());
    this.instances.clear();
    await Promise.all(
      created.map((result) =>
        result.status === 'fulfilled' ? result.value.close().catch(() => {}) : undefined,
      ),
    );
    await this.options.local.close();
  }

  private async create(row: DeployTables['deploy_targets']): Promise<Target> {
    const kind = row.kind as Exclude<TargetKind, 'local'>;
    const config = JSON.parse(row.config) as Record<string, unknown>;
    for (const field of sealedFields) {
      if (typeof config[field] !== 'string') continue;
      if (!this.options.cipher)
        throw new ValveError('INTERNAL', 'no secret cipher configured to open the target token');
      config[field] = this.options.cipher.decrypt(config[field], aadOf(row.team, row.name));
    }
    const factory = this.options.drivers?.[kind] ?? (await loadDriver(kind));
    const target = await factory({
      name: row.name,
      team: row.team,
      config,
      dataDir: join(this.options.dataDir ?? '.', 'targets', 'teams', row.team, row.name),
      portBase: this.options.portBase ?? 18000,
      images: this.options.images!,
      logger: this.options.logger,
    });
    await target.recover();
    return target;
  }

  private view(row: DeployTables['deploy_targets']): TargetView {
    const config = JSON.parse(row.config) as Record<string, unknown>;
    for (const field of sealedFields) if (field in config) config[field] = '(sealed)';
    return {
      name: row.name,
      kind: row.kind as TargetKind,
      builtin: false,
      config,
      capabilities: row.kind === 'local' ? this.options.local.capabilities : null,
      createdBy: row.created_by,
      createdAt: row.created_at,
    };
  }
}

const driverModules: Record<DriverKind, { path: string; exported: string }> = {
  podman: { path: './targets/podman/index.js', exported: 'PodmanTarget' },
  kubernetes: { path: './targets/kubernetes/index.js', exported: 'KubernetesTarget' },
};

/**
 * Imports a driver by kind; DEPLOY_TARGET_NO_DRIVER when this build does not have it. With
 * `pull`, podman targets pull from Valve's registry (loading from `images` when that fails).
 */
async function loadDriver(kind: DriverKind, pull?: RegistryPull): Promise<TargetFactory> {
  const { path, exported } = driverModules[kind];
  let loaded: Record<string, unknown>;
  try {
    // A variable specifier: the module is optional, and loads only when a target of its kind is used.
    loaded = (await import(path)) as Record<string, unknown>;
  } catch (error) {
    throw new ValveError(
      'DEPLOY_TARGET_NO_DRIVER',
      `the ${kind} target driver cannot be loaded: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  const Driver = loaded[exported];
  if (typeof Driver !== 'function')
    throw new ValveError(
      'DEPLOY_TARGET_NO_DRIVER',
      `the ${kind} target driver does not export ${exported}`,
    );
  const Construct = Driver as new (options: Record<string, unknown>) => Target;
  return kind === 'kubernetes'
    ? // KubernetesTargetOptions: server, token, caCert, insecureSkipTlsVerify, namespace, name.
      (options) => new Construct({ ...options.config, name: options.name, logger: options.logger })
    : // PodmanTargetOptions: podman on this host, its state in the target's own directory.
      (options) =>
        new Construct({
          dataDir: options.dataDir,
          portBase: options.portBase,
          images: options.images,
          logger: options.logger,
          ...(pull ? { registry: podmanRegistryAccess(pull, options) } : {}),
        });
}

/**
 * PodmanTargetOptions.registry for a team's target: a token per pull, for one repository of
 * the team's own (the first part of a repository name is its team); another team's image is
 * loaded from `images` instead.
 */
function podmanRegistryAccess(pull: RegistryPull, options: TargetDriverOptions) {
  const target = { team: options.team, name: options.name };
  return {
    host: () => dialable(pull.host()),
    credentials: async (repo: string) => {
      if (!repo.startsWith(`${target.team}/`))
        throw new Error(
          `target ${target.name} of team ${target.team} pulls only that team's images`,
        );
      return { username: PULL_TOKEN_USERNAME, password: await pull.pullToken(repo, target) };
    },
  };
}

/** The server's listen address as a client on this host dials it: a wildcard is loopback. */
export function dialable(hostPort: string): string {
  const colon = hostPort.lastIndexOf(':');
  const host = hostPort.slice(0, colon);
  const port = hostPort.slice(colon + 1);
  if (host === '0.0.0.0') return `127.0.0.1:${port}`;
  if (host === '::' || host === '[::]') return `[::1]:${port}`;
  return hostPort;
}
