/**
 * Workflow files in GitHub Actions syntax (`.valve/workflows/*.yml`, also `.github/workflows/`),
 * the subset documented in docs/workflows.md. Everything wrong in a file is found here, before
 * any job starts, and reported as `file:line:column: field: message`:
 *
 * 1. shape: zod schemas (unknown keys get a "did you mean" hint, GitHub keys Valve lacks say so);
 * 2. meaning: `needs` names real jobs without cycles, `uses` names a step Valve has, step ids are
 *    unique, a literal matrix expands to 1..256 combinations;
 * 3. expressions: every `${{ }}` parses and uses only the contexts available at its key.
 */
import { isSeq } from 'yaml';
import { z } from 'zod';
import {
  FileValidationError,
  formatPath,
  parseYaml,
  positionOf,
  type FileProblem,
  type ParsedYaml,
} from '../formats/yaml.js';
import { expressionProblems } from './expressions/availability.js';
import { closest } from './expressions/index.js';
import { expandMatrix, MatrixError, matrixHasExpressions, type MatrixSpec } from './matrix.js';
import {
  cronError,
  filterPatternError,
  PULL_REQUEST_TYPES,
  SUPPORTED_EVENTS,
  UNSUPPORTED_EVENTS,
  type DispatchInput,
  type Triggers,
} from './triggers.js';

export type { DispatchInput, Triggers } from './triggers.js';
export type { MatrixSpec } from './matrix.js';

export const WORKFLOW_DIRS = ['.valve/workflows', '.github/workflows'];

export interface Workflow {
  name?: string;
  runName?: string;
  on: Triggers;
  env: Record<string, string>;
  defaults: RunDefaults;
  concurrency?: Concurrency;
  jobs: Record<string, Job>;
}

export interface RunDefaults {
  shell?: 'bash' | 'sh';
  workingDirectory?: string;
}

export interface Concurrency {
  group: string;
  /** true/false, or an expression evaluated when the run starts. */
  cancelInProgress: boolean | string;
}

export interface Job {
  id: string;
  name?: string;
  needs: string[];
  /** The condition as written: `${{ }}` around it is optional. */
  if?: string;
  runsOn: string[];
  environment?: { name: string; url?: string };
  concurrency?: Concurrency;
  outputs: Record<string, string>;
  env: Record<string, string>;
  defaults: RunDefaults;
  /** Minutes, or an expression. */
  timeoutMinutes?: number | string;
  continueOnError: boolean | string;
  /** `matrix` is a spec to expand, or one expression (`${{ fromJSON(...) }}`) giving one. */
  strategy?: { matrix: MatrixSpec | string; failFast: boolean; maxParallel?: number };
  container?: ServiceSpec;
  services: Record<string, ServiceSpec>;
  steps: Step[];
}

export interface ServiceSpec {
  image: string;
  env?: Record<string, string>;
  ports?: string[];
  options?: string;
  credentials?: { username: string; password: string };
}

export interface Step {
  index: number;
  id?: string;
  name?: string;
  if?: string;
  run?: string;
  uses?: string;
  with: Record<string, string>;
  shell?: 'bash' | 'sh';
  workingDirectory?: string;
  env: Record<string, string>;
  continueOnError: boolean | string;
  timeoutMinutes?: number | string;
}

// ---------------------------------------------------------------------------------------------
// Schema building blocks

const NOT_SUPPORTED = 'is not supported by Valve: see docs/workflows.md';
const idPattern = /^[A-Za-z_][A-Za-z0-9_-]*$/;
const idMessage = 'expected letters, digits, _ or -, starting with a letter or _';
const envNamePattern = /^[A-Za-z_][A-Za-z0-9_]*$/;

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const hasExpression = (v: unknown): v is string => typeof v === 'string' && v.includes('${{');

/** Drops keys whose value is undefined, so parsed objects hold only what the file says. */
function compact<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

function unknownKeyMessage(key: string, known: string[], unsupported: Record<string, string>) {
  if (Object.hasOwn(unsupported, key)) {
    const why = unsupported[key];
    return `\`${key}\` ${NOT_SUPPORTED}${why ? ` (${why})` : ''}`;
  }
  const match = closest(key, known) ?? known.find((k) => k.startsWith(`${key}-`));
  return match
    ? `unknown key \`${key}\`; did you mean \`${match}\`?`
    : `unknown key \`${key}\`; expected one of: ${known.join(', ')}`;
}

/**
 * A mapping with known keys. Unknown keys are reported at the key itself, all of them, next to
 * the problems of the known keys; `unsupported` names GitHub keys Valve does not implement.
 */
function mapping<T extends z.ZodRawShape>(shape: T, unsupported: Record<string, string> = {}) {
  const known = Object.keys(shape);
  return z.looseObject(shape).superRefine(
    (value, ctx) => {
      for (const key of Object.keys(value)) {
        if (Object.hasOwn(shape, key)) continue;
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message: unknownKeyMessage(key, known, unsupported),
          params: { atKey: true },
        });
      }
    },
    { when: (payload) => isRecord(payload.value) },
  );
}

type YamlKind = 'string' | 'number' | 'boolean' | 'null' | 'list' | 'mapping';
const kindOf = (v: unknown): YamlKind =>
  v === null || v === undefined
    ? 'null'
    : Array.isArray(v)
      ? 'list'
      : typeof v === 'object'
        ? 'mapping'
        : (typeof v as 'string' | 'number' | 'boolean');

function describe(value: unknown): string {
  switch (kindOf(value)) {
    case 'null':
      return 'nothing';
    case 'list':
      return 'a list';
    case 'mapping':
      return 'a mapping';
    case 'string':
      return `"${String(value).slice(0, 40)}"`;
    default:
      return String(value);
  }
}

/** Parses `value` with `schema` inside another schema's transform, keeping its issues. */
function parseWith<T>(
  schema: z.ZodType<T>,
  value: unknown,
  ctx: z.RefinementCtx,
  path: PropertyKey[] = [],
): T {
  const result = schema.safeParse(value, { reportInput: true });
  if (result.success) return result.data;
  for (const issue of result.error.issues)
    ctx.addIssue({ ...issue, path: [...path, ...issue.path] } as never);
  return z.NEVER;
}

/** A value whose accepted forms depend on its YAML kind (GitHub's "one-of" definitions). */
function oneOf<T>(expected: string, forms: Partial<Record<YamlKind, z.ZodType<T>>>) {
  return z.unknown().transform((value, ctx): T => {
    if (value === undefined) {
      ctx.addIssue({ code: 'custom', message: 'missing', params: { missing: true } });
      return z.NEVER;
    }
    const schema = forms[kindOf(value)];
    if (!schema) {
      ctx.addIssue({ code: 'custom', message: `expected ${expected}, got ${describe(value)}` });
      return z.NEVER;
    }
    return parseWith(schema, value, ctx);
  });
}

/** A value of `schema`, or a string with `${{ }}` evaluated when the run gets there. */
function orExpression<T>(schema: z.ZodType<T>, expected: string) {
  return z.unknown().transform((value, ctx): T | string => {
    if (hasExpression(value)) return value;
    const result = schema.safeParse(value);
    if (result.success) return result.data;
    ctx.addIssue({ code: 'custom', message: `expected ${expected}, got ${describe(value)}` });
    return z.NEVER;
  });
}

const text = z.string();
const nonEmpty = z.string().min(1, 'expected a non-empty string');
/** Scalars as strings: env and with values may be written as numbers or booleans. */
const scalarText = oneOf<string>('a string, number or boolean', {
  string: z.string(),
  number: z.number().transform(String),
  boolean: z.boolean().transform(String),
  null: z.null().transform(() => ''),
});
const condition = oneOf<string>('a condition', {
  string: z.string(),
  boolean: z.boolean().transform(String),
  number: z.number().transform(String),
});
const stringList = <T extends z.ZodType<string>>(item: T) =>
  oneOf<string[]>('a string or a list of strings', {
    string: item.transform((v) => [v]),
    list: z.array(item),
  });
const envMap = z.record(
  z.string().regex(envNamePattern, 'expected an environment variable name'),
  scalarText,
);
const minutes = orExpression(
  z.number().positive(),
  'a positive number of minutes or an expression',
);
const flag = orExpression(z.boolean(), 'true, false or an expression');
const shell = z.string().transform((value, ctx): 'bash' | 'sh' => {
  if (value === 'bash' || value === 'sh') return value;
  ctx.addIssue({ code: 'custom', message: `shell \`${value}\` ${NOT_SUPPORTED} (use bash or sh)` });
  return z.NEVER;
});
const runDefaults = mapping({
  run: mapping({ shell: shell.optional(), 'working-directory': nonEmpty.optional() }).optional(),
}).transform((d): RunDefaults =>
  compact({ shell: d.run?.shell, workingDirectory: d.run?.['working-directory'] }),
);

const concurrency = oneOf<Concurrency>('a group name or a mapping with `group`', {
  string: nonEmpty.transform((group) => ({ group, cancelInProgress: false })),
  mapping: mapping(
    { group: nonEmpty, 'cancel-in-progress': flag.optional() },
    { queue: 'one run waits, later ones replace it' },
  ).transform((c) => ({ group: c.group, cancelInProgress: c['cancel-in-progress'] ?? false })),
});

// ---------------------------------------------------------------------------------------------
// on

const pattern = nonEmpty.superRefine((value, ctx) => {
  const problem = filterPatternError(value);
  if (problem) ctx.addIssue({ code: 'custom', message: `invalid filter pattern: ${problem}` });
});
const patterns = stringList(pattern).refine(
  (list) => list.length > 0,
  'expected at least one pattern',
);

function exclusive(pairs: [string, string][]) {
  return (filters: Record<string, unknown>, ctx: z.RefinementCtx) => {
    for (const [include, ignore] of pairs) {
      if (filters[include] === undefined || filters[ignore] === undefined) continue;
      ctx.addIssue({
        code: 'custom',
        path: [ignore],
        message: `use either \`${include}\` or \`${ignore}\`, not both; to exclude within \`${include}\`, add \`!pattern\` entries`,
        params: { atKey: true },
      });
    }
  };
}

const pushFilters = mapping({
  branches: patterns.optional(),
  'branches-ignore': patterns.optional(),
  tags: patterns.optional(),
  'tags-ignore': patterns.optional(),
  paths: patterns.optional(),
  'paths-ignore': patterns.optional(),
})
  .superRefine(
    exclusive([
      ['branches', 'branches-ignore'],
      ['tags', 'tags-ignore'],
      ['paths', 'paths-ignore'],
    ]),
  )
  .transform((p) =>
    compact({
      branches: p.branches,
      branchesIgnore: p['branches-ignore'],
      tags: p.tags,
      tagsIgnore: p['tags-ignore'],
      paths: p.paths,
      pathsIgnore: p['paths-ignore'],
    }),
  );

const pullRequestType = z.string().superRefine((value, ctx) => {
  if (PULL_REQUEST_TYPES.includes(value)) return;
  const match = closest(value, PULL_REQUEST_TYPES);
  ctx.addIssue({
    code: 'custom',
    message: `unknown pull_request type \`${value}\`; ${match ? `did you mean \`${match}\`?` : `expected one of: ${PULL_REQUEST_TYPES.join(', ')}`}`,
  });
});
const pullRequestFilters = mapping({
  types: stringList(pullRequestType).optional(),
  branches: patterns.optional(),
  'branches-ignore': patterns.optional(),
  paths: patterns.optional(),
  'paths-ignore': patterns.optional(),
})
  .superRefine(
    exclusive([
      ['branches', 'branches-ignore'],
      ['paths', 'paths-ignore'],
    ]),
  )
  .transform((p) =>
    compact({
      branches: p.branches,
      branchesIgnore: p['branches-ignore'],
      paths: p.paths,
      pathsIgnore: p['paths-ignore'],
      types: p.types,
    }),
  );

const inputTypes = ['string', 'boolean', 'choice', 'number', 'environment'] as const;
const dispatchInput = mapping({
  description: text.optional(),
  type: z.enum(inputTypes).optional(),
  required: z.boolean().optional(),
  default: oneOf<string | number | boolean>('a string, number or boolean', {
    string: z.string(),
    number: z.number(),
    boolean: z.boolean(),
  }).optional(),
  options: z.array(scalarText).min(1, 'expected at least one option').optional(),
}).transform((input, ctx): DispatchInput => {
  const type = input.type ?? 'string';
  const issue = (path: string, message: string) =>
    ctx.addIssue({ code: 'custom', path: [path], message });
  if (type === 'choice' && !input.options) issue('type', 'a `choice` input needs `options`');
  if (type !== 'choice' && input.options) issue('options', '`options` is only for `type: choice`');
  let value = input.default;
  if (value !== undefined) {
    if (type === 'boolean') {
      if (value === 'true' || value === 'false') value = value === 'true';
      if (typeof value !== 'boolean')
        issue('default', 'expected true or false for a boolean input');
    } else if (type === 'number') {
      if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value)))
        value = Number(value);
      if (typeof value !== 'number') issue('default', 'expected a number for a number input');
    } else {
      value = String(value);
      if (type === 'choice' && input.options && !input.options.includes(value))
        issue('default', `expected one of the options: ${input.options.join(', ')}`);
    }
  }
  return compact({
    description: input.description,
    required: input.required ?? false,
    default: value,
    type,
    options: input.options,
  });
});
const workflowDispatch = oneOf<{ inputs: Record<string, DispatchInput> }>('a mapping or nothing', {
  null: z.null().transform(() => ({ inputs: {} })),
  mapping: mapping({
    inputs: z.record(z.string().regex(idPattern, idMessage), dispatchInput).optional(),
  }).transform((d) => ({ inputs: d.inputs ?? {} })),
});

const schedule = oneOf<{ cron: string }[]>('a list of `- cron: "..."` entries', {
  list: z
    .array(
      mapping(
        {
          cron: z.string().superRefine((value, ctx) => {
            const problem = cronError(value);
            if (problem) ctx.addIssue({ code: 'custom', message: `invalid cron: ${problem}` });
          }),
        },
        { timezone: 'schedules are in UTC' },
      ).transform((s) => ({ cron: s.cron })),
    )
    .min(1, 'expected at least one `- cron: "..."` entry'),
});

const noFilters = <T>(schema: z.ZodType<T>) =>
  oneOf<T>('a mapping or nothing', { null: z.null().transform(() => ({}) as T), mapping: schema });

const unsupportedEvents = Object.fromEntries(UNSUPPORTED_EVENTS.map((e) => [e, '']));
const events = mapping(
  {
    push: noFilters(pushFilters).optional(),
    pull_request: noFilters(pullRequestFilters).optional(),
    workflow_dispatch: workflowDispatch.optional(),
    schedule: schedule.optional(),
  },
  unsupportedEvents,
).transform((e, ctx): Triggers => {
  if (Object.keys(e).length === 0)
    ctx.addIssue({ code: 'custom', message: 'expected at least one event' });
  return compact({
    push: e.push,
    pullRequest: e.pull_request,
    workflowDispatch: e.workflow_dispatch,
    schedule: e.schedule,
  });
});
const eventName = z.string().superRefine((name, ctx) => {
  if (SUPPORTED_EVENTS.includes(name)) return;
  ctx.addIssue({
    code: 'custom',
    message: unknownKeyMessage(name, SUPPORTED_EVENTS, unsupportedEvents).replace('key', 'event'),
  });
});
const byName = (names: string[]) => Object.fromEntries(names.map((n) => [n, null]));
// `on: push` and `on: [push, workflow_dispatch]` mean each event without filters.
const on = oneOf<Triggers>('an event, a list of events or a mapping of events', {
  string: eventName.transform((n, ctx) => parseWith(events, byName([n]), ctx)),
  list: z
    .array(eventName)
    .min(1, 'expected at least one event')
    .transform((names, ctx) => parseWith(events, byName(names), ctx)),
  mapping: events,
});

// ---------------------------------------------------------------------------------------------
// jobs

const runsOn = oneOf<string[]>('a runner label or a list of labels', {
  string: nonEmpty.transform((label) => [label]),
  list: z.array(nonEmpty),
  mapping: mapping(
    { labels: stringList(nonEmpty).optional() },
    { group: 'runner groups' },
  ).transform((r) => r.labels ?? []),
});

const environment = oneOf<{ name: string; url?: string }>(
  'an environment name or a mapping with `name`',
  {
    string: nonEmpty.transform((name) => ({ name })),
    mapping: mapping(
      { name: nonEmpty, url: text.optional() },
      { deployment: 'every job with an environment is a deployment' },
    ).transform((e) => compact({ name: e.name, url: e.url })),
  },
);

const containerMapping = (unsupported: Record<string, string>) =>
  mapping(
    {
      image: nonEmpty,
      env: envMap.optional(),
      ports: z.array(scalarText).optional(),
      options: text.optional(),
      credentials: mapping({ username: nonEmpty, password: nonEmpty }).optional(),
    },
    unsupported,
  ).transform((c): ServiceSpec =>
    compact({
      image: c.image,
      env: c.env,
      ports: c.ports,
      options: c.options,
      credentials: c.credentials && {
        username: c.credentials.username,
        password: c.credentials.password,
      },
    }),
  );
const container = (unsupported: Record<string, string>) =>
  oneOf<ServiceSpec>('an image name or a mapping with `image`', {
    string: nonEmpty.transform((image) => ({ image })),
    mapping: containerMapping(unsupported),
  });

const matrixFilter = orExpression(
  z.array(z.record(z.string(), z.unknown())),
  'a list of mappings or an expression',
);
const matrixValues = orExpression(
  z.array(z.unknown()).min(1),
  'a non-empty list of values or an expression',
);
// A record rather than an object schema, so that the variables keep the file's order (the
// first variable varies slowest).
const matrix = oneOf<MatrixSpec | string>('a mapping of matrix variables or an expression', {
  string: z
    .string()
    .refine(hasExpression, 'expected a mapping of matrix variables or a `${{ }}` expression'),
  mapping: z.record(z.string(), z.unknown()).transform((m, ctx): MatrixSpec => {
    if (Object.keys(m).length === 0)
      ctx.addIssue({
        code: 'custom',
        message: 'expected at least one matrix variable or an `include` list',
      });
    return Object.fromEntries(
      Object.entries(m).map(([key, value]) => [
        key,
        parseWith(
          key === 'include' || key === 'exclude' ? matrixFilter : matrixValues,
          value,
          ctx,
          [key],
        ),
      ]),
    );
  }),
});

const strategy = mapping({
  matrix,
  'fail-fast': z.boolean().optional(),
  'max-parallel': z.number().int().positive().optional(),
}).transform((s) =>
  compact({ matrix: s.matrix, failFast: s['fail-fast'] ?? true, maxParallel: s['max-parallel'] }),
);

const step = mapping({
  id: z.string().regex(idPattern, idMessage).optional(),
  name: text.optional(),
  if: condition.optional(),
  run: z.string().optional(),
  uses: nonEmpty.optional(),
  with: z.record(nonEmpty, scalarText).optional(),
  env: envMap.optional(),
  shell: shell.optional(),
  'working-directory': nonEmpty.optional(),
  'continue-on-error': flag.optional(),
  'timeout-minutes': minutes.optional(),
}).transform((s): Step =>
  compact({
    index: 0,
    id: s.id,
    name: s.name,
    if: s.if,
    run: s.run,
    uses: s.uses,
    with: s.with ?? {},
    shell: s.shell,
    workingDirectory: s['working-directory'],
    env: s.env ?? {},
    continueOnError: s['continue-on-error'] ?? false,
    timeoutMinutes: s['timeout-minutes'],
  }),
);

const reusable = 'reusable workflows are not supported';
const job = mapping(
  {
    name: text.optional(),
    needs: stringList(nonEmpty).optional(),
    if: condition.optional(),
    'runs-on': runsOn.optional(),
    environment: environment.optional(),
    concurrency: concurrency.optional(),
    outputs: z.record(z.string().regex(idPattern, idMessage), z.string()).optional(),
    env: envMap.optional(),
    defaults: runDefaults.optional(),
    'timeout-minutes': minutes.optional(),
    'continue-on-error': flag.optional(),
    strategy: strategy.optional(),
    container: container({ volumes: 'the workspace is mounted for you' }).optional(),
    services: z
      .record(
        z.string().regex(idPattern, idMessage),
        container({ volumes: '', entrypoint: '', command: '' }),
      )
      .optional(),
    steps: z.array(step).min(1, 'expected at least one step'),
  },
  {
    permissions: 'Valve gives steps no GitHub token',
    uses: reusable,
    with: reusable,
    secrets: `${reusable}; steps read secrets as \${{ secrets.NAME }}`,
    snapshot: '',
  },
).transform((j): Omit<Job, 'id'> =>
  compact({
    name: j.name,
    needs: j.needs ?? [],
    if: j.if,
    runsOn: j['runs-on'] ?? [],
    environment: j.environment,
    concurrency: j.concurrency,
    outputs: j.outputs ?? {},
    env: j.env ?? {},
    defaults: j.defaults ?? {},
    timeoutMinutes: j['timeout-minutes'],
    continueOnError: j['continue-on-error'] ?? false,
    strategy: j.strategy,
    container: j.container,
    services: j.services ?? {},
    steps: j.steps.map((s, index) => ({ ...s, index })),
  }),
);

const workflowSchema = mapping(
  {
    name: text.optional(),
    'run-name': text.optional(),
    on,
    env: envMap.optional(),
    defaults: runDefaults.optional(),
    concurrency: concurrency.optional(),
    jobs: z
      .record(z.string().regex(idPattern, `expected a job id: ${idMessage}`), job)
      .refine((jobs) => Object.keys(jobs).length > 0, 'expected at least one job'),
  },
  { permissions: 'Valve gives steps no GitHub token' },
).transform((w): Workflow =>
  compact({
    name: w.name,
    runName: w['run-name'],
    on: w.on,
    env: w.env ?? {},
    defaults: w.defaults ?? {},
    concurrency: w.concurrency,
    jobs: Object.fromEntries(Object.entries(w.jobs).map(([id, j]) => [id, { id, ...j }])),
  }),
);

// ---------------------------------------------------------------------------------------------
// Problems

type Path = (string | number)[];

function problemAt(parsed: ParsedYaml, path: Path, message: string, atKey = false): FileProblem {
  return {
    file: parsed.file,
    ...positionOf(parsed, path, { atKey }),
    field: formatPath(path),
    message,
  };
}

const defaultMessage = /^(Invalid|Too (small|big))/;

// Said after "missing `key`" for the keys every workflow needs.
const requiredKeyHints: Record<string, string> = {
  on: ': say which events start the workflow, e.g. `on: push`',
  jobs: ': a workflow needs at least one job',
  steps: ': a job needs at least one step',
};

function issueMessage(issue: z.core.$ZodIssue): string {
  const last = issue.path[issue.path.length - 1];
  const missing =
    (issue.code === 'custom' && (issue.params as { missing?: boolean } | undefined)?.missing) ||
    (issue.code === 'invalid_type' && issue.input === undefined);
  if (missing && typeof last === 'string')
    return `missing \`${last}\`${requiredKeyHints[last] ?? ''}`;
  if (!defaultMessage.test(issue.message)) return issue.message;
  switch (issue.code) {
    case 'invalid_type': {
      const expected: Record<string, string> = {
        object: 'a mapping',
        array: 'a list',
        string: 'a string',
        number: 'a number',
        int: 'a whole number',
        boolean: 'true or false',
        null: 'nothing',
      };
      return `expected ${expected[issue.expected] ?? issue.expected}, got ${describe(issue.input)}`;
    }
    case 'too_small':
      if (issue.origin === 'array')
        return `expected at least ${issue.minimum} item${issue.minimum === 1 ? '' : 's'}`;
      if (issue.origin === 'string') return 'expected a non-empty string';
      return `expected a number ${issue.inclusive ? 'of at least' : 'greater than'} ${issue.minimum}`;
    case 'invalid_value':
      return `expected one of: ${issue.values.map(String).join(', ')}; got ${describe(issue.input)}`;
    case 'invalid_key':
      return issue.issues[0]?.message ?? issue.message;
    case 'invalid_union':
      return issue.errors[0]?.[0] ? issueMessage(issue.errors[0][0]) : issue.message;
    default:
      return issue.message;
  }
}

function shapeProblems(parsed: ParsedYaml, issues: z.core.$ZodIssue[]): FileProblem[] {
  return issues.map((issue) => {
    const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
    const atKey =
      issue.code === 'invalid_key' ||
      (issue.code === 'custom' &&
        (issue.params as { atKey?: boolean } | undefined)?.atKey === true);
    return problemAt(parsed, path, issueMessage(issue), atKey);
  });
}

// ---------------------------------------------------------------------------------------------
// Meaning

const builtinStep = /^valve\/([a-z0-9-]+)@v\d+$/;
// GitHub Marketplace actions people reach for, and the built-in step that does the job.
const equivalents: Record<string, string> = {
  'actions/checkout': 'checkout',
  'actions/cache': 'cache',
  'actions/upload-artifact': 'upload-artifact',
  'actions/download-artifact': 'download-artifact',
  'docker/build-push-action': 'build-image',
};

function usesProblem(
  uses: string,
  knownSteps: ReadonlySet<string> | undefined,
): string | undefined {
  if (uses.startsWith('./')) return undefined;
  const known = knownSteps ? [...knownSteps] : undefined;
  const builtin = builtinStep.exec(uses);
  if (builtin) {
    const name = builtin[1]!;
    if (!known || known.includes(name)) return undefined;
    const match = closest(name, known);
    return `unknown built-in step \`valve/${name}\`; ${match ? `did you mean \`valve/${match}@v1\`? ` : ''}built-in steps: ${known.join(', ')}`;
  }
  if (uses.startsWith('docker://'))
    return `\`${uses}\`: Docker actions are not supported by Valve (see docs/workflows.md); use a \`run\` step in a job \`container\``;
  const repository = /^([^/@\s]+\/[^/@\s]+)/.exec(uses)?.[1]?.toLowerCase();
  const equivalent = repository ? equivalents[repository] : undefined;
  const suggestion =
    equivalent && (!known || known.includes(equivalent))
      ? `use \`valve/${equivalent}@v1\` instead`
      : `use a built-in step \`valve/<name>@v1\`${known ? ` (${known.join(', ')})` : ''} or a local composite action \`./path\``;
  return `\`${uses}\` is not available in Valve: ${suggestion}`;
}

function meaningProblems(
  parsed: ParsedYaml,
  workflow: Workflow,
  knownSteps: ReadonlySet<string> | undefined,
): FileProblem[] {
  const problems: FileProblem[] = [];
  const at = (path: Path, message: string, atKey = false) =>
    problems.push(problemAt(parsed, path, message, atKey));
  const jobIds = Object.keys(workflow.jobs);
  let needsKnown = true;
  for (const [id, job] of Object.entries(workflow.jobs)) {
    const jobPath = ['jobs', id];
    for (const [i, need] of job.needs.entries()) {
      const needPath = [
        ...jobPath,
        'needs',
        ...(isSeq(parsed.doc.getIn([...jobPath, 'needs'], true)) ? [i] : []),
      ];
      if (need === id) at(needPath, 'a job cannot need itself');
      else if (!Object.hasOwn(workflow.jobs, need)) {
        const match = closest(need, jobIds);
        at(
          needPath,
          `unknown job \`${need}\`; ${match ? `did you mean \`${match}\`?` : `jobs: ${jobIds.join(', ')}`}`,
        );
      } else continue;
      needsKnown = false;
    }
    if (
      job.strategy &&
      typeof job.strategy.matrix !== 'string' &&
      !matrixHasExpressions(job.strategy.matrix)
    ) {
      try {
        expandMatrix(job.strategy.matrix);
      } catch (error) {
        if (!(error instanceof MatrixError)) throw error;
        // An exclude naming an unknown variable points at that key.
        const atKey = error.path[0] === 'exclude' && error.path.length === 3;
        at([...jobPath, 'strategy', 'matrix', ...error.path], error.message, atKey);
      }
    }
    const ids = new Map<string, number>();
    for (const step of job.steps) {
      const stepPath = [...jobPath, 'steps', step.index];
      if ((step.run === undefined) === (step.uses === undefined))
        at(stepPath, 'expected exactly one of `run` or `uses`');
      if (step.uses !== undefined) {
        const problem = usesProblem(step.uses, knownSteps);
        if (problem) at([...stepPath, 'uses'], problem);
        for (const key of ['shell', 'working-directory'] as const)
          if ((key === 'shell' ? step.shell : step.workingDirectory) !== undefined)
            at([...stepPath, key], `\`${key}\` is only for \`run\` steps`, true);
      } else if (Object.keys(step.with).length > 0 || parsed.doc.hasIn([...stepPath, 'with']))
        at([...stepPath, 'with'], '`with` is only for `uses` steps', true);
      if (step.id !== undefined) {
        const first = ids.get(step.id.toLowerCase());
        if (first !== undefined)
          at(
            [...stepPath, 'id'],
            `step id \`${step.id}\` is already used by steps[${first}] of this job`,
          );
        else ids.set(step.id.toLowerCase(), step.index);
      }
    }
  }
  if (needsKnown) {
    try {
      jobOrder(workflow);
    } catch (error) {
      if (!(error instanceof JobCycleError)) throw error;
      at(['jobs', error.cycle[0]!, 'needs'], error.message);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------

// `if: !cancelled()` makes `!cancelled()` a YAML tag and the value empty: GitHub's docs warn
// about it, and nothing in a workflow is a tag, so each one is reported.
function tagProblems(parsed: ParsedYaml, source: string): FileProblem[] {
  return parsed.doc.warnings
    .filter((warning) => warning.code === 'TAG_RESOLVE_FAILED')
    .map((warning) => {
      const tag = /^!\S*/.exec(source.slice(warning.pos[0]))?.[0] ?? '!';
      const { line, col } = parsed.lines.linePos(warning.pos[0]);
      return {
        file: parsed.file,
        line,
        column: col,
        field: '',
        message: `\`${tag}\` is read as a YAML tag, leaving the value empty: put the value in quotes, e.g. \`if: "${tag}"\``,
      };
    });
}

class JobCycleError extends Error {
  constructor(readonly cycle: string[]) {
    super(`jobs need each other in a cycle: ${cycle.join(' → ')}`);
  }
}

/**
 * Parses and validates a workflow file; every problem in it is reported at once, each with
 * file:line:column. `knownSteps` are the names usable as `uses: valve/<name>@v1`.
 */
export function parseWorkflow(
  text: string,
  file: string,
  options: { knownSteps?: ReadonlySet<string> } = {},
): Workflow {
  // The `yaml` package reads YAML 1.2, so the key `on` stays a string (1.1 readers make it true).
  const parsed = parseYaml(text, file);
  const raw: unknown = parsed.doc.toJS();
  const result = workflowSchema.safeParse(raw, { reportInput: true });
  const problems = [
    ...tagProblems(parsed, text),
    ...(result.success
      ? meaningProblems(parsed, result.data, options.knownSteps)
      : shapeProblems(parsed, result.error.issues)),
    ...expressionProblems(parsed, text, raw),
  ];
  if (problems.length) {
    const seen = new Set<string>();
    const unique = problems.filter((p) => {
      const key = `${p.line}:${p.column}:${p.field}:${p.message}`;
      return !seen.has(key) && seen.add(key);
    });
    unique.sort((a, b) => a.line - b.line || a.column - b.column);
    throw new FileValidationError(unique);
  }
  return result.data!;
}

/** Jobs in an order where each comes after the jobs it needs (file order otherwise). */
export function jobOrder(workflow: Workflow): string[] {
  const order: string[] = [];
  const done = new Set<string>();
  const path: string[] = [];
  const visit = (id: string) => {
    if (done.has(id)) return;
    const start = path.indexOf(id);
    if (start >= 0) throw new JobCycleError([...path.slice(start), id]);
    path.push(id);
    for (const need of workflow.jobs[id]?.needs ?? []) visit(need);
    path.pop();
    done.add(id);
    order.push(id);
  };
  Object.keys(workflow.jobs).forEach(visit);
  return order;
}
