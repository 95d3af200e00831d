/**
 * The app spec (`valve.yaml` in the source repo): the workload in the shape of the Score
 * workload spec (score.dev/v1b1: metadata, one container with command, args, variables, files,
 * resources and probes, service ports) plus Valve's additions (`replicas`, `autoscaling`,
 * `environments`), all documented in docs/app-spec.md.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { isAbsolute, join, posix, relative, sep } from 'node:path';
import { z } from 'zod';
import {
  FileValidationError,
  formatPath,
  parseYaml,
  positionOf,
  validateYaml,
  type FileProblem,
  type ParsedYaml,
} from '../formats/yaml.js';
import { defaultRollout, rolloutSpecSchema, type RolloutSpec } from './rollout-spec.js';

/** A record whose bad keys report the key schema's own message, not zod's generic one. */
function recordOf<K extends z.ZodType<string>, V extends z.ZodType>(
  key: K,
  value: V,
  what: string,
) {
  return z.record(key, value, {
    error: (issue) =>
      issue.code === 'invalid_key'
        ? (issue.issues[0]?.message ?? 'invalid key')
        : issue.code === 'invalid_type'
          ? `expected ${what}`
          : undefined,
  });
}

const dnsLabel = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/,
    'expected a DNS label (lowercase letters, digits, dashes)',
  );
const port = z.number().int().min(1).max(65535);
/** Kubernetes' rule for environment variable names (before 1.30 relaxed it). */
const variableName = z
  .string()
  .regex(/^[-._a-zA-Z][-._a-zA-Z0-9]*$/, 'expected a variable name (letters, digits, _ . -)');
export const secretNamePattern = /^[A-Za-z_][A-Za-z0-9_]{0,99}$/;
const variables = recordOf(
  variableName,
  z.string({ error: 'expected a string (quote numbers and booleans)' }),
  'a map of NAME: value',
);

// ---- resources: Kubernetes quantities -------------------------------------------------

const quantityPattern = /^(\d+(\.\d*)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+)?$/;
const quantityFactor: Record<string, number> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** The number a Kubernetes quantity stands for ("500m" -> 0.5, "1Gi" -> 1073741824). */
export function quantityValue(quantity: string): number {
  const match = quantityPattern.exec(quantity);
  if (!match) return NaN;
  const suffix = match[3] ?? '';
  const factor = /^[eE]/.test(suffix) ? 10 ** Number(suffix.slice(1)) : quantityFactor[suffix]!;
  return Number(match[1]) * factor;
}

const quantity = (what: 'cpu' | 'memory') =>
  z.preprocess(
    (v) => (typeof v === 'number' ? String(v) : v),
    z
      .string({ error: `expected a ${what} quantity` })
      .regex(
        quantityPattern,
        what === 'cpu'
          ? 'expected a CPU quantity such as 250m, 0.5 or 2'
          : 'expected a memory quantity such as 128Mi or 1Gi',
      )
      .refine(
        (q) => what === 'cpu' || !q.endsWith('m'),
        'expected bytes with a suffix such as Mi or Gi (m means thousandths of a byte)',
      )
      .refine((q) => quantityValue(q) > 0, 'expected more than zero'),
  );
const computeResources = z.strictObject({
  cpu: quantity('cpu').optional(),
  memory: quantity('memory').optional(),
});
const resourcesSchema = z
  .strictObject({ limits: computeResources.optional(), requests: computeResources.optional() })
  .superRefine((r, ctx) => {
    for (const kind of ['cpu', 'memory'] as const) {
      const limit = r.limits?.[kind];
      const request = r.requests?.[kind];
      const valid = (q: string) => quantity(kind).safeParse(q).success;
      if (!limit || !request || !valid(limit) || !valid(request)) continue; // reported already
      if (quantityValue(request) > quantityValue(limit)) {
        ctx.addIssue({
          code: 'custom',
          path: ['requests', kind],
          message: `expected at most the limit (${limit})`,
        });
      }
    }
  });
export type ResourceRequirements = z.infer<typeof resourcesSchema>;

// ---- container ------------------------------------------------------------------------

const httpProbe = z.strictObject({
  httpGet: z.strictObject({
    path: z.string().startsWith('/', 'expected a path starting with /'),
    port: port.optional(),
  }),
});

const fileTarget = z
  .string()
  .regex(/^\/[^\0]*[^/]$/, 'expected an absolute file path, e.g. /etc/app/config.json')
  .refine(
    (p) => !p.split('/').some((s) => s === '..' || s === '.'),
    'expected a path without . or .. segments',
  );
const fileSpec = z
  .strictObject({
    content: z.string({ error: 'expected the file content as a string' }).optional(),
    source: z.string().min(1).optional(),
    mode: z
      .string({ error: 'expected an octal mode in quotes, e.g. "0644"' })
      .regex(/^0?[0-7]{3}$/, 'expected an octal mode in quotes, e.g. "0644"')
      .optional(),
    noExpand: z.boolean().optional(),
    binaryContent: z
      .never({ error: 'binary files are not supported by Valve; use content or source' })
      .optional(),
  })
  .refine((f) => (f.content === undefined) !== (f.source === undefined), {
    message: 'expected exactly one of content or source',
  });
export type ContainerFile = z.infer<typeof fileSpec>;

const container = z.strictObject({
  image: z.string().min(1),
  command: z.array(z.string()).optional(),
  args: z.array(z.string()).optional(),
  variables: variables.optional(),
  files: recordOf(fileTarget, fileSpec, 'a map of target path: { content | source, mode }')
    .refine((f) => Object.keys(f).length <= 64, 'expected at most 64 files')
    .optional(),
  resources: resourcesSchema.optional(),
  readinessProbe: httpProbe.optional(),
  livenessProbe: httpProbe.optional(),
});

// ---- Valve's additions ----------------------------------------------------------------

const replicas = z.number().int().min(0).max(50);
const autoscalingSchema = z
  .strictObject({
    minReplicas: z.number().int().min(1).max(50).default(1),
    maxReplicas: z.number().int().min(1).max(50),
    targetCPUUtilizationPercentage: z.number().int().min(1).max(100).default(80),
  })
  .refine((a) => a.maxReplicas >= a.minReplicas, {
    path: ['maxReplicas'],
    message: 'expected at least minReplicas',
  });
export type Autoscaling = z.infer<typeof autoscalingSchema>;

/** Per environment: `false` turns autoscaling off, an object replaces fields of the top-level one. */
const environmentAutoscaling = z.preprocess(
  (v) => (v === false ? { enabled: false } : v),
  z.strictObject(
    {
      enabled: z.boolean().default(true),
      minReplicas: z.number().int().min(1).max(50).optional(),
      maxReplicas: z.number().int().min(1).max(50).optional(),
      targetCPUUtilizationPercentage: z.number().int().min(1).max(100).optional(),
    },
    { error: 'expected false or { minReplicas, maxReplicas, targetCPUUtilizationPercentage }' },
  ),
);

export const syncOptionsSchema = z.strictObject({
  /** Apply every deploy-repo commit without a manual sync. */
  automated: z.boolean().default(true),
  /** Put drifted live state back to what the deploy repo says. */
  selfHeal: z.boolean().default(true),
  /** Delete live resources that the deploy repo no longer has. */
  prune: z.boolean().default(true),
});
export type SyncOptions = z.infer<typeof syncOptionsSchema>;
export const defaultSyncOptions: SyncOptions = { automated: true, selfHeal: true, prune: true };

const hostname = z
  .string()
  .regex(
    /^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/,
    'expected a DNS name, e.g. hello.example.com',
  )
  .max(253);

const environment = z.strictObject({
  /** A registered deploy target by name. */
  target: dnsLabel.default('local'),
  replicas: replicas.optional(),
  variables: variables.optional(),
  /** Deploys to this environment wait until a member of `team` approves (pipelines and promotion). */
  approval: z
    .strictObject({
      team: z.string().regex(/^[a-z0-9][a-z0-9-]{0,38}$/, 'expected a team name'),
      timeoutMinutes: z.number().int().positive().max(43_200).default(60),
    })
    .optional(),
  rollout: rolloutSpecSchema.optional(),
  sync: syncOptionsSchema.optional(),
  ingress: z.strictObject({ host: hostname }).optional(),
  autoscaling: environmentAutoscaling.optional(),
});

const appSpecObject = z.strictObject({
  apiVersion: z.literal('score.dev/v1b1'),
  metadata: z.looseObject({ name: dnsLabel }),
  containers: recordOf(dnsLabel, container, 'a map of container name: container').refine(
    (c) => Object.keys(c).length === 1,
    'expected exactly one container (the local and podman targets run one process per instance)',
  ),
  service: z
    .strictObject({
      ports: recordOf(
        dnsLabel,
        z.strictObject({
          port,
          targetPort: port.optional(),
          protocol: z.enum(['TCP', 'UDP']).optional(),
        }),
        'a map of port name: { port, targetPort, protocol }',
      ).refine((p) => Object.keys(p).length > 0, 'expected at least one port'),
    })
    .optional(),
  /** Replicas of every environment that sets none and does not autoscale. */
  replicas: replicas.default(1),
  autoscaling: autoscalingSchema.optional(),
  environments: recordOf(dnsLabel, environment, 'a map of environment name: settings').refine(
    (e) => Object.keys(e).length > 0,
    'expected at least one environment',
  ),
});
export const appSpecSchema = appSpecObject.superRefine(checkAcrossFields);

export type AppSpec = z.infer<typeof appSpecSchema>;
export type AppContainer = AppSpec['containers'][string];
export const APP_SPEC_FILE = 'valve.yaml';

/** Rules that span fields: autoscaling against replicas and requests, placeholders, names. */
function checkAcrossFields(s: z.infer<typeof appSpecObject>, ctx: z.RefinementCtx) {
  const issue = (path: (string | number)[], message: string) =>
    ctx.addIssue({ code: 'custom', path, message });
  const first = Object.entries(s.containers)[0];
  if (!first) return; // reported already: no container
  const [containerName, c] = first;
  for (const [name, value] of Object.entries(c.variables ?? {}))
    checkPlaceholders(value, s.metadata, ['containers', containerName, 'variables', name], issue);
  for (const [target, file] of Object.entries(c.files ?? {})) {
    if (file.content !== undefined && !file.noExpand) {
      checkPlaceholders(
        file.content,
        s.metadata,
        ['containers', containerName, 'files', target, 'content'],
        issue,
        {
          secrets: false,
        },
      );
    }
  }
  for (const [envName, env] of Object.entries(s.environments)) {
    const at = ['environments', envName];
    if (s.metadata.name.length + envName.length + 1 > 63)
      issue(at, `expected "${s.metadata.name}-${envName}" to fit a 63-character label`);
    for (const [name, value] of Object.entries(env.variables ?? {}))
      checkPlaceholders(value, s.metadata, [...at, 'variables', name], issue);
    const scaling = effectiveAutoscaling(s, env);
    if (env.autoscaling?.enabled && !scaling)
      issue(
        [...at, 'autoscaling'],
        'expected maxReplicas (no top-level autoscaling to inherit it from)',
      );
    if (scaling && env.replicas !== undefined)
      issue(
        [...at, 'replicas'],
        'not used while autoscaling is on for this environment (the HPA scales between minReplicas and maxReplicas); remove it or set autoscaling: false',
      );
    if (scaling && scaling.maxReplicas < scaling.minReplicas)
      issue([...at, 'autoscaling', 'maxReplicas'], 'expected at least minReplicas');
    if (scaling && !c.resources?.requests?.cpu)
      issue(
        ['containers', containerName, 'resources'],
        `expected requests.cpu: autoscaling on CPU utilization (environment ${envName}) measures against it`,
      );
  }
}

// ---- placeholders (Score syntax) ------------------------------------------------------

const placeholderPattern = /\$\$|\$\{([^}]*)\}/g;
const secretPlaceholder = /^\$\{resources\.secrets\.([^}]*)\}$/;

/** What one variable of the app spec becomes: a plain value, or a reference to a secret. */
export type VariableValue = { value: string } | { secret: string };

/**
 * Resolves Score placeholders in a value that passed validation: `${metadata.KEY}` is the
 * metadata field, `$$` is a literal `$`, and a value that is exactly
 * `${resources.secrets.NAME}` is a reference to secret NAME (never its value).
 */
export function resolveVariable(raw: string, metadata: AppSpec['metadata']): VariableValue {
  const secret = secretPlaceholder.exec(raw);
  if (secret) return { secret: secret[1]! };
  return { value: expandPlaceholders(raw, metadata) };
}

export function expandPlaceholders(raw: string, metadata: AppSpec['metadata']): string {
  return raw.replace(placeholderPattern, (match, inner: string | undefined) =>
    match === '$$' ? '$' : String(metadataValue(metadata, inner!.split('.').slice(1))),
  );
}

/**
 * The container's variables with placeholders expanded and secret references left out: what
 * may go into an image's config (a build must never bake in a secret, nor a placeholder).
 */
export function plainVariables(spec: AppSpec): Record<string, string> {
  const container = Object.values(spec.containers)[0]!;
  const plain: Record<string, string> = {};
  for (const [name, raw] of Object.entries(container.variables ?? {})) {
    const value = resolveVariable(raw, spec.metadata);
    if ('value' in value) plain[name] = value.value;
  }
  return plain;
}

function metadataValue(metadata: Record<string, unknown>, path: string[]): unknown {
  let value: unknown = metadata;
  for (const key of path)
    value =
      value && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined;
  return value;
}

function checkPlaceholders(
  raw: string,
  metadata: Record<string, unknown>,
  path: (string | number)[],
  issue: (path: (string | number)[], message: string) => void,
  options: { secrets?: boolean } = {},
) {
  const whole = secretPlaceholder.exec(raw);
  if (whole && options.secrets !== false) {
    if (!secretNamePattern.test(whole[1]!))
      issue(path, `expected a secret name (letters, digits, _) in \${resources.secrets.NAME}`);
    return;
  }
  for (const [match, inner] of raw.matchAll(placeholderPattern)) {
    if (match === '$$') continue;
    const [root, ...rest] = inner!.split('.');
    if (root === 'metadata' && rest.length) {
      const value = metadataValue(metadata, rest);
      if (!['string', 'number', 'boolean'].includes(typeof value))
        issue(path, `${match}: metadata.${rest.join('.')} is not a value in metadata`);
    } else if (root === 'resources' && rest[0] === 'secrets') {
      issue(
        path,
        options.secrets === false
          ? `${match}: secrets cannot go into files (they would be committed); use a variable`
          : `${match}: a secret reference must be the whole value`,
      );
    } else {
      issue(
        path,
        `${match}: expected \${metadata.KEY} or \${resources.secrets.NAME} (write $$ for a literal $)`,
      );
    }
  }
}

// ---- reading the file -----------------------------------------------------------------

export interface ParseOptions {
  /**
   * Reads a `files.<target>.source`: `path` is relative to the repository's root (where
   * `valve.yaml` is), normalised, and never leaves it; null when there is no such file.
   * Without it, sources stay unread and rendering refuses them.
   */
  readSource?: (path: string) => string | null;
}

/**
 * What is said of an environment whose approving team does not exist, at its line of
 * `text` (valve.yaml) when that parses. Such an approval is refused, not asked: whoever signed
 * up first under that name would otherwise approve, and read, the app's deployments.
 */
export function unknownApprovingTeam(
  text: string | null,
  environment: string,
  team: string,
): string {
  const path = ['environments', environment, 'approval', 'team'];
  let where = `${APP_SPEC_FILE}: ${formatPath(path)}`;
  if (text !== null) {
    try {
      const { line, column } = positionOf(parseYaml(text, APP_SPEC_FILE), path);
      where = `${APP_SPEC_FILE}:${line}:${column}: ${formatPath(path)}`;
    } catch {
      // Not valid YAML: named without a line.
    }
  }
  return (
    `${where}: team ${team} does not exist; create it (sign up a member: ` +
    `valve signup --team ${team}) before deploying to ${environment}`
  );
}

export function parseAppSpec(
  text: string,
  file = APP_SPEC_FILE,
  options: ParseOptions = {},
): AppSpec {
  const parsed = parseYaml(text, file);
  const spec = validateYaml(parsed, appSpecSchema);
  const read = options.readSource;
  if (read) fillSources(spec, parsed, (path) => (path === null ? null : read(path)));
  return spec;
}

/** `parseAppSpec` with sources read asynchronously, e.g. from a commit of the source repo. */
export async function parseAppSpecWithSources(
  text: string,
  file: string,
  readSource: (path: string) => Promise<string | Buffer | null>,
): Promise<AppSpec> {
  const parsed = parseYaml(text, file);
  const spec = validateYaml(parsed, appSpecSchema);
  const contents = new Map<string, string | null>();
  for (const { source } of sourcesOf(spec)) {
    const path = repoPath(source);
    const content = path === null ? null : await readSource(path);
    contents.set(source, content === null ? null : content.toString());
  }
  fillSources(spec, parsed, (_path, source) => contents.get(source) ?? null);
  return spec;
}

/** Reads `valve.yaml` in `dir` and the files its `source` fields name, which must stay in `dir`. */
export function loadAppSpec(dir: string): AppSpec {
  const root = realpathSync(dir);
  return parseAppSpec(readFileSync(join(dir, APP_SPEC_FILE), 'utf8'), APP_SPEC_FILE, {
    readSource: (path) => {
      let real: string;
      try {
        real = realpathSync(join(root, path));
      } catch {
        return null;
      }
      // A symlink may still lead out of the repository.
      const inside = relative(root, real);
      if (inside.startsWith(`..${sep}`) || inside === '..' || isAbsolute(inside)) return null;
      return readFileSync(real, 'utf8');
    },
  });
}

/** A source path made relative to the repository root; null when it is absolute or leaves it. */
function repoPath(source: string): string | null {
  if (posix.isAbsolute(source) || source.includes('\\')) return null;
  const normal = posix.normalize(source);
  return normal === '..' || normal.startsWith('../') || normal === '.' ? null : normal;
}

function sourcesOf(spec: AppSpec) {
  const [containerName, c] = Object.entries(spec.containers)[0]!;
  return Object.entries(c.files ?? {})
    .filter(([, file]) => file.source !== undefined)
    .map(([target, file]) => ({ containerName, target, file, source: file.source! }));
}

function fillSources(
  spec: AppSpec,
  parsed: ParsedYaml,
  read: (path: string | null, source: string) => string | null,
) {
  const problems: FileProblem[] = [];
  for (const { containerName, target, file, source } of sourcesOf(spec)) {
    const content = read(repoPath(source), source);
    if (content !== null) {
      file.content = content;
      continue;
    }
    const path = ['containers', containerName, 'files', target, 'source'];
    problems.push({
      file: parsed.file,
      ...positionOf(parsed, path),
      field: `containers.${containerName}.files.${target}.source`,
      message: `expected a file of the repository (relative to ${APP_SPEC_FILE}): ${source} is not one`,
    });
  }
  if (problems.length) throw new FileValidationError(problems);
}

// ---- one environment, resolved --------------------------------------------------------

/** Everything an environment gets, with the top-level values and every default filled in. */
export interface EnvironmentSettings {
  name: string;
  target: string;
  /** Instances to run; with autoscaling, the minimum (targets that cannot scale run that many). */
  replicas: number;
  autoscaling: Autoscaling | null;
  /** The container's variables with the environment's merged over them, unresolved. */
  variables: Record<string, string>;
  approval: AppSpec['environments'][string]['approval'];
  rollout: RolloutSpec;
  sync: SyncOptions;
  ingress: { host: string } | null;
}

export function environmentSettings(spec: AppSpec, name: string): EnvironmentSettings {
  const env = spec.environments[name];
  if (!env) throw new Error(`environment ${name} is not in the app spec`);
  const container = Object.values(spec.containers)[0]!;
  const autoscaling = effectiveAutoscaling(spec, env);
  return {
    name,
    target: env.target,
    replicas: autoscaling ? autoscaling.minReplicas : (env.replicas ?? spec.replicas),
    autoscaling,
    variables: { ...container.variables, ...env.variables },
    approval: env.approval,
    rollout: env.rollout ?? structuredClone(defaultRollout),
    sync: env.sync ?? { ...defaultSyncOptions },
    ingress: env.ingress ?? null,
  };
}

function effectiveAutoscaling(
  spec: Pick<AppSpec, 'autoscaling'>,
  env: AppSpec['environments'][string],
): Autoscaling | null {
  const own = env.autoscaling;
  if (own && !own.enabled) return null;
  const base = spec.autoscaling;
  if (!own) return base ?? null;
  const maxReplicas = own.maxReplicas ?? base?.maxReplicas;
  if (maxReplicas === undefined) return null;
  return {
    minReplicas: own.minReplicas ?? base?.minReplicas ?? 1,
    maxReplicas,
    targetCPUUtilizationPercentage:
      own.targetCPUUtilizationPercentage ?? base?.targetCPUUtilizationPercentage ?? 80,
  };
}

/** The port the workload listens on: the first service port's target, else 8080. */
export function containerPort(spec: AppSpec): number {
  const first = Object.values(spec.service?.ports ?? {})[0];
  return first?.targetPort ?? first?.port ?? 8080;
}
