/**
 * Workflow files in GitHub Actions syntax (`.valve/workflows/*.yml`, also
 * `.github/workflows/*.yml`). This is the foundation subset, documented in docs/workflows.md:
 * `name`, `on.push.branches`, `env`, `jobs.<id>` with `name`, `needs`, `runs-on`, `env`,
 * `timeout-minutes` and `steps` (`run` or `uses` + `with`, `name`, `id`, `env`, `shell`,
 * `working-directory`, `timeout-minutes`). Anything else is an error with file:line:column.
 */
import { z } from 'zod';
import { FileValidationError, parseYaml, positionOf, validateYaml } from '../formats/yaml.js';

const env = z.record(
  z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name'),
  z.union([z.string(), z.number(), z.boolean()]).transform(String),
);
const stringList = z
  .union([z.string(), z.array(z.string())])
  .transform((v) => (Array.isArray(v) ? v : [v]));
const idPattern = /^[A-Za-z_][A-Za-z0-9_-]*$/;

const step = z
  .strictObject({
    name: z.string().optional(),
    id: z
      .string()
      .regex(idPattern, 'expected letters, digits, _ or -, starting with a letter or _')
      .optional(),
    run: z.string().optional(),
    uses: z
      .string()
      .regex(
        /^(valve\/[a-z-]+@v\d+)$/,
        'expected a built-in step valve/<name>@v1 (see docs/workflows.md)',
      )
      .optional(),
    with: z
      .record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String))
      .optional(),
    env: env.optional(),
    shell: z.enum(['bash', 'sh']).optional(),
    'working-directory': z.string().optional(),
    'timeout-minutes': z.number().positive().optional(),
  })
  .refine(
    (s) => (s.run === undefined) !== (s.uses === undefined),
    'expected exactly one of run or uses',
  )
  .refine((s) => s.uses !== undefined || s.with === undefined, '`with` is only for `uses` steps');

const job = z.strictObject({
  name: z.string().optional(),
  needs: stringList.optional(),
  'runs-on': z.union([z.string(), z.array(z.string())]).optional(),
  env: env.optional(),
  'timeout-minutes': z.number().positive().optional(),
  steps: z.array(step).min(1, 'expected at least one step'),
});

const pushTrigger = z
  .strictObject({ branches: stringList.optional(), tags: stringList.optional() })
  .nullable()
  .transform((v) => v ?? {});

const trigger = z.union([
  z.literal('push').transform(() => ({ push: {} as { branches?: string[]; tags?: string[] } })),
  z
    .array(z.literal('push'))
    .transform(() => ({ push: {} as { branches?: string[]; tags?: string[] } })),
  z.strictObject({ push: pushTrigger }),
]);

export const workflowSchema = z
  .strictObject({
    name: z.string().optional(),
    on: trigger,
    env: env.optional(),
    jobs: z
      .record(z.string().regex(idPattern, 'expected a job id of letters, digits, _ or -'), job)
      .refine((j) => Object.keys(j).length > 0, 'expected at least one job'),
  })
  .superRefine((wf, ctx) => {
    let unknownNeeds = false;
    for (const [id, j] of Object.entries(wf.jobs)) {
      for (const [i, need] of (j.needs ?? []).entries()) {
        if (need in wf.jobs) continue;
        unknownNeeds = true;
        ctx.addIssue({
          code: 'custom',
          path: ['jobs', id, 'needs', i],
          message: `unknown job "${need}"`,
        });
      }
    }
    if (!unknownNeeds) {
      try {
        jobOrder(wf as Workflow);
      } catch (error) {
        if (error instanceof JobCycleError)
          ctx.addIssue({
            code: 'custom',
            path: ['jobs', error.job, 'needs'],
            message: error.message,
          });
      }
    }
  });

class JobCycleError extends Error {
  constructor(readonly job: string) {
    super(`job "${job}" needs itself through a cycle`);
  }
}

export type Workflow = z.infer<typeof workflowSchema>;
export type WorkflowJob = Workflow['jobs'][string];
export type WorkflowStep = WorkflowJob['steps'][number];

export const WORKFLOW_DIRS = ['.valve/workflows', '.github/workflows'];

/**
 * Parses and validates a workflow file; every problem is reported with file:line:column
 * before any job starts. `knownSteps` are the names usable as `uses: valve/<name>@v1`.
 */
export function parseWorkflow(
  text: string,
  file: string,
  knownSteps?: ReadonlySet<string>,
): Workflow {
  // YAML 1.1 readers turn the key `on` into true; the `yaml` package (1.2) keeps it a string.
  const parsed = parseYaml(text, file);
  const workflow = validateYaml(parsed, workflowSchema);
  if (knownSteps) {
    const problems = [];
    for (const [jobId, job] of Object.entries(workflow.jobs)) {
      for (const [index, step] of job.steps.entries()) {
        const name = step.uses ? /^valve\/([a-z-]+)@/.exec(step.uses)?.[1] : undefined;
        if (name === undefined || knownSteps.has(name)) continue;
        const path = ['jobs', jobId, 'steps', index, 'uses'];
        problems.push({
          file,
          ...positionOf(parsed, path),
          field: `jobs.${jobId}.steps[${index}].uses`,
          message: `unknown built-in step "${name}"; expected one of: ${[...knownSteps].join(', ')}`,
        });
      }
    }
    if (problems.length) throw new FileValidationError(problems);
  }
  return workflow;
}

/** Does a push to `ref` start this workflow? Branch filters are globs as in GitHub Actions. */
export function matchesPush(workflow: Workflow, ref: string): boolean {
  const push = workflow.on.push;
  if (ref.startsWith('refs/heads/')) {
    if (!push.branches) return push.tags === undefined;
    return push.branches.some((glob) => globMatch(glob, ref.slice('refs/heads/'.length)));
  }
  if (ref.startsWith('refs/tags/')) {
    if (!push.tags) return push.branches === undefined;
    return push.tags.some((glob) => globMatch(glob, ref.slice('refs/tags/'.length)));
  }
  return false;
}

/** `*` matches within a path segment, `**` across segments. */
export function globMatch(glob: string, value: string): boolean {
  const pattern = glob
    .split('**')
    .map((part) =>
      part
        .split('*')
        .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
        .join('[^/]*'),
    )
    .join('.*');
  return new RegExp(`^${pattern}$`).test(value);
}

/** Jobs in an order where each comes after the jobs it needs. */
export function jobOrder(workflow: Workflow): string[] {
  const order: string[] = [];
  const visiting = new Set<string>();
  const visit = (id: string) => {
    if (order.includes(id)) return;
    if (visiting.has(id)) throw new JobCycleError(id);
    visiting.add(id);
    for (const need of workflow.jobs[id]?.needs ?? []) visit(need);
    visiting.delete(id);
    order.push(id);
  };
  Object.keys(workflow.jobs).forEach(visit);
  return order;
}
