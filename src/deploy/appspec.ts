/**
 * The app spec (`valve.yaml` in the source repo): the workload in the shape of the Score
 * workload spec (score.dev/v1b1: metadata, containers with command/args/variables/probes,
 * service ports) plus Valve's one addition, `environments`, documented in docs/app-spec.md.
 */
import { z } from 'zod';
import { parseYaml, validateYaml } from '../formats/yaml.js';

const name = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/,
    'expected a DNS label (lowercase letters, digits, dashes)',
  );
const port = z.number().int().min(1).max(65535);

const httpProbe = z.strictObject({
  httpGet: z.strictObject({
    path: z.string().startsWith('/', 'expected a path starting with /'),
    port: port.optional(),
  }),
});

const container = z.strictObject({
  image: z.string().min(1),
  command: z.array(z.string()).optional(),
  args: z.array(z.string()).optional(),
  variables: z.record(z.string(), z.string()).optional(),
  readinessProbe: httpProbe.optional(),
  livenessProbe: httpProbe.optional(),
});

const environment = z.strictObject({
  replicas: z.number().int().min(0).max(50).default(1),
  variables: z.record(z.string(), z.string()).optional(),
  /** Deploys to this environment wait until a member of `team` approves (pipelines and promotion). */
  approval: z
    .strictObject({
      team: z.string().regex(/^[a-z0-9][a-z0-9-]{0,38}$/, 'expected a team name'),
      timeoutMinutes: z.number().int().positive().max(43_200).default(60),
    })
    .optional(),
});

export const appSpecSchema = z.strictObject({
  apiVersion: z.literal('score.dev/v1b1'),
  metadata: z.looseObject({ name }),
  containers: z
    .record(name, container)
    .refine(
      (c) => Object.keys(c).length === 1,
      'expected exactly one container (more come with the deploy issue)',
    ),
  service: z
    .strictObject({
      ports: z.record(
        name,
        z.strictObject({ port, targetPort: port.optional(), protocol: z.enum(['TCP']).optional() }),
      ),
    })
    .optional(),
  environments: z
    .record(name, environment)
    .refine((e) => Object.keys(e).length > 0, 'expected at least one environment'),
});

export type AppSpec = z.infer<typeof appSpecSchema>;
export const APP_SPEC_FILE = 'valve.yaml';

export function parseAppSpec(text: string, file = APP_SPEC_FILE): AppSpec {
  return validateYaml(parseYaml(text, file), appSpecSchema);
}

/** The port the workload listens on: the first service port's target, else 8080. */
export function containerPort(spec: AppSpec): number {
  const first = Object.values(spec.service?.ports ?? {})[0];
  return first?.targetPort ?? first?.port ?? 8080;
}
