/**
 * Which contexts and functions an expression may use, by workflow key: GitHub's "context
 * availability" table, less what Valve does not have (`vars`, `jobs`). `expressionProblems`
 * walks a parsed workflow file and checks every `${{ }}` (and every `if`) where it stands, so
 * that `${{ secrets.X }}` in `runs-on` or `${{ matrix.os }}` in a job without a matrix is an
 * error before any job starts.
 */
import { isScalar } from 'yaml';
import { formatPath, positionOf, type FileProblem, type ParsedYaml } from '../../formats/yaml.js';
import {
  checkExpression,
  conditionExpression,
  contextReferences,
  ExpressionError,
  findExpressions,
} from './index.js';
import { closest, STATUS_FUNCTIONS } from './parser.js';

type Path = (string | number)[];

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const hasExpression = (v: unknown): v is string => typeof v === 'string' && v.includes('${{');

export interface Scope {
  /** The workflow key as GitHub documents it, e.g. `jobs.<job_id>.runs-on`. */
  key: string;
  contexts: readonly string[];
  functions: readonly string[];
}

const jobLevel = ['github', 'needs', 'strategy', 'matrix', 'inputs'];
const stepLevel = [...jobLevel, 'job', 'runner', 'env', 'secrets', 'steps'];
const scope = (key: string, contexts: string[], functions: string[] = []): Scope => ({
  key,
  contexts,
  functions,
});

export const SCOPES = {
  runName: scope('run-name', ['github', 'inputs']),
  concurrency: scope('concurrency', ['github', 'inputs']),
  env: scope('env', ['github', 'secrets', 'inputs']),
  jobIf: scope('jobs.<job_id>.if', ['github', 'needs', 'inputs'], STATUS_FUNCTIONS),
  jobName: scope('jobs.<job_id>.name', jobLevel),
  jobRunsOn: scope('jobs.<job_id>.runs-on', jobLevel),
  jobEnvironment: scope('jobs.<job_id>.environment', jobLevel),
  jobEnvironmentUrl: scope('jobs.<job_id>.environment.url', [
    ...jobLevel,
    'job',
    'runner',
    'env',
    'steps',
  ]),
  jobConcurrency: scope('jobs.<job_id>.concurrency', jobLevel),
  jobOutputs: scope('jobs.<job_id>.outputs', stepLevel),
  jobEnv: scope('jobs.<job_id>.env', [...jobLevel, 'secrets']),
  jobDefaults: scope('jobs.<job_id>.defaults.run', [...jobLevel, 'env']),
  jobTimeout: scope('jobs.<job_id>.timeout-minutes', jobLevel),
  jobContinueOnError: scope('jobs.<job_id>.continue-on-error', jobLevel),
  jobStrategy: scope('jobs.<job_id>.strategy', ['github', 'needs', 'inputs']),
  container: scope('jobs.<job_id>.container', jobLevel),
  containerCredentials: scope('jobs.<job_id>.container.credentials', [
    ...jobLevel,
    'env',
    'secrets',
  ]),
  containerEnv: scope('jobs.<job_id>.container.env', [
    ...jobLevel,
    'job',
    'runner',
    'env',
    'secrets',
  ]),
  services: scope('jobs.<job_id>.services', jobLevel),
  serviceCredentials: scope('jobs.<job_id>.services.<service_id>.credentials', [
    ...jobLevel,
    'env',
    'secrets',
  ]),
  serviceEnv: scope('jobs.<job_id>.services.<service_id>.env', [
    ...jobLevel,
    'job',
    'runner',
    'env',
    'secrets',
  ]),
  stepIf: scope(
    'jobs.<job_id>.steps[*].if',
    stepLevel.filter((c) => c !== 'secrets'),
    [...STATUS_FUNCTIONS, 'hashFiles'],
  ),
  step: scope('jobs.<job_id>.steps[*]', stepLevel, ['hashFiles']),
} satisfies Record<string, Scope>;

/** What the surrounding workflow declares, for checking the names used after a context. */
export interface ScopeFacts {
  /** The jobs this job needs. */
  needs: string[];
  /** Matrix variables; undefined without a matrix; null when the matrix is computed. */
  matrixKeys: string[] | null | undefined;
  /** Step ids an expression here may read (earlier steps; all steps for job outputs). */
  stepIds: string[];
  /** Declared workflow_dispatch inputs; undefined without workflow_dispatch. */
  inputs: string[] | undefined;
}

const UNSUPPORTED_CONTEXTS: Record<string, string> = {
  vars: 'configuration variables (`vars`) are not supported by Valve: use `env` or secrets (see docs/workflows.md)',
  jobs: 'the `jobs` context belongs to reusable workflows, which Valve does not support (see docs/workflows.md)',
};

const RESTRICTED_FUNCTIONS = [...STATUS_FUNCTIONS, 'hashFiles'];

const hint = (word: string, candidates: string[]) => {
  const match = closest(word, candidates);
  return match ? `did you mean \`${match}\`? ` : '';
};

/**
 * The problems of one expression standing at a key of the given scope: syntax first (throws
 * ExpressionError), then contexts and functions not available there, then names that the
 * workflow does not declare (`needs.x`, `steps.x`, `matrix.x`, `inputs.x`).
 */
export function scopeProblems(expression: string, where: Scope, facts: ScopeFacts): string[] {
  const { contexts, functions } = checkExpression(expression);
  const problems: string[] = [];
  for (const context of contexts) {
    if (UNSUPPORTED_CONTEXTS[context]) problems.push(UNSUPPORTED_CONTEXTS[context]);
    else if (!where.contexts.includes(context))
      problems.push(
        `context \`${context}\` is not available in \`${where.key}\` (available there: ${where.contexts.join(', ')})`,
      );
    else if (context === 'matrix' && facts.matrixKeys === undefined)
      problems.push('context `matrix` is only available in a job with `strategy.matrix`');
    else if (context === 'needs' && facts.needs.length === 0)
      problems.push('context `needs` is empty: this job has no `needs`');
    else if (context === 'inputs' && facts.inputs === undefined)
      problems.push('context `inputs` is only available with an `on.workflow_dispatch` trigger');
  }
  for (const fn of functions) {
    // contains, format, fromJSON and the like are available everywhere.
    if (!RESTRICTED_FUNCTIONS.includes(fn) || where.functions.includes(fn)) continue;
    problems.push(
      STATUS_FUNCTIONS.includes(fn)
        ? `\`${fn}()\` is only available in \`if\` conditions`
        : `\`${fn}()\` is only available in steps (and step \`if\`)`,
    );
  }
  if (problems.length) return problems;

  for (const { context, property } of contextReferences(expression)) {
    if (property === undefined) continue;
    const has = (names: string[]) => names.some((n) => n.toLowerCase() === property.toLowerCase());
    if (context === 'needs' && !has(facts.needs))
      problems.push(
        `\`needs.${property}\`: this job does not need \`${property}\`; ${hint(property, facts.needs)}its needs: ${facts.needs.join(', ')}`,
      );
    else if (context === 'steps' && !has(facts.stepIds))
      problems.push(
        `\`steps.${property}\`: no earlier step of this job has \`id: ${property}\`; ${hint(property, facts.stepIds)}ids available here: ${facts.stepIds.join(', ') || '(none)'}`,
      );
    else if (context === 'matrix' && facts.matrixKeys && !has(facts.matrixKeys))
      problems.push(
        `\`matrix.${property}\` is not a variable of this job's matrix; ${hint(property, facts.matrixKeys)}variables: ${facts.matrixKeys.join(', ')}`,
      );
    else if (context === 'inputs' && facts.inputs && !has(facts.inputs))
      problems.push(
        `\`inputs.${property}\` is not declared in \`on.workflow_dispatch.inputs\`; ${hint(property, facts.inputs)}inputs: ${facts.inputs.join(', ') || '(none)'}`,
      );
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Where each value of a workflow file stands

interface Site {
  scope: Scope | null;
  condition: boolean;
  job?: string;
  step?: number;
}

/** Which scope a value's expressions are checked in; undefined where the key is unknown. */
function siteOf(path: Path): Site | undefined {
  const [top, jobId, key, a, b] = path;
  const site = (scope: Scope | null, condition = false): Site => ({ scope, condition });
  switch (top) {
    case 'run-name':
      return site(SCOPES.runName);
    case 'env':
      return site(SCOPES.env);
    case 'concurrency':
      return site(SCOPES.concurrency);
    case 'name':
    case 'on':
    case 'defaults':
      return site(null);
    case 'jobs':
      break;
    default:
      return undefined;
  }
  const inJob = (scope: Scope | null, condition = false): Site => ({
    scope,
    condition,
    job: String(jobId),
  });
  switch (key) {
    case 'if':
      return inJob(SCOPES.jobIf, true);
    case 'name':
      return inJob(SCOPES.jobName);
    case 'runs-on':
      return inJob(SCOPES.jobRunsOn);
    case 'environment':
      return inJob(a === 'url' ? SCOPES.jobEnvironmentUrl : SCOPES.jobEnvironment);
    case 'concurrency':
      return inJob(SCOPES.jobConcurrency);
    case 'outputs':
      return inJob(SCOPES.jobOutputs);
    case 'env':
      return inJob(SCOPES.jobEnv);
    case 'defaults':
      return inJob(SCOPES.jobDefaults);
    case 'timeout-minutes':
      return inJob(SCOPES.jobTimeout);
    case 'continue-on-error':
      return inJob(SCOPES.jobContinueOnError);
    case 'strategy':
      return inJob(SCOPES.jobStrategy);
    case 'container':
      return inJob(
        a === 'credentials'
          ? SCOPES.containerCredentials
          : a === 'env'
            ? SCOPES.containerEnv
            : SCOPES.container,
      );
    case 'services':
      return inJob(
        b === 'credentials'
          ? SCOPES.serviceCredentials
          : b === 'env'
            ? SCOPES.serviceEnv
            : SCOPES.services,
      );
    case 'needs':
      return inJob(null);
    case 'steps': {
      const stepKey = b;
      if (typeof a !== 'number') return undefined;
      const inStep = (scope: Scope | null, condition = false): Site => ({
        ...inJob(scope, condition),
        step: a,
      });
      if (stepKey === 'if') return inStep(SCOPES.stepIf, true);
      if (stepKey === 'id' || stepKey === 'uses' || stepKey === 'shell') return inStep(null);
      return inStep(SCOPES.step);
    }
    default:
      return undefined;
  }
}

/** Names a job's expressions may refer to, read defensively from the raw document. */
function factsOf(raw: Record<string, unknown>, site: Site): ScopeFacts {
  const asList = (v: unknown) =>
    typeof v === 'string'
      ? [v]
      : Array.isArray(v)
        ? v.filter((x): x is string => typeof x === 'string')
        : [];
  const on = raw.on;
  const dispatch =
    on === 'workflow_dispatch' || (Array.isArray(on) && on.includes('workflow_dispatch'))
      ? {}
      : isRecord(on) && Object.hasOwn(on, 'workflow_dispatch')
        ? on.workflow_dispatch
        : undefined;
  const inputs =
    dispatch === undefined
      ? undefined
      : isRecord(dispatch) && isRecord(dispatch.inputs)
        ? Object.keys(dispatch.inputs)
        : [];
  const jobs = isRecord(raw.jobs) ? raw.jobs : {};
  const job =
    site.job !== undefined && isRecord(jobs[site.job])
      ? (jobs[site.job] as Record<string, unknown>)
      : {};
  const strategy = isRecord(job.strategy) ? job.strategy : undefined;
  let matrixKeys: string[] | null | undefined;
  if (strategy && strategy.matrix !== undefined) {
    const m = strategy.matrix;
    if (
      !isRecord(m) ||
      hasExpression(m.include) ||
      Object.entries(m).some(([k, v]) => k !== 'exclude' && hasExpression(v))
    )
      matrixKeys = null;
    else {
      const keys = new Set(Object.keys(m).filter((k) => k !== 'include' && k !== 'exclude'));
      if (Array.isArray(m.include))
        for (const entry of m.include)
          if (isRecord(entry)) Object.keys(entry).forEach((k) => keys.add(k));
      matrixKeys = [...keys];
    }
  }
  const steps = Array.isArray(job.steps) ? job.steps : [];
  const stepIds = steps
    .slice(0, site.step ?? steps.length)
    .map((s) => (isRecord(s) && typeof s.id === 'string' ? s.id : undefined))
    .filter((id): id is string => id !== undefined);
  return { needs: asList(job.needs), matrixKeys, stepIds, inputs };
}

/** Line and column of the `${{` at `offset` of a scalar's value, found in the source text. */
function expressionPosition(
  parsed: ParsedYaml,
  source: string,
  path: Path,
  value: string,
  offset: number,
) {
  const node = parsed.doc.getIn(path, true);
  const fallback = positionOf(parsed, path);
  if (!isScalar(node) || !node.range) return fallback;
  const occurrence = value.slice(0, offset).split('${{').length - 1;
  const raw = source.slice(node.range[0], node.range[1]);
  let at = -1;
  for (let i = 0; i <= occurrence; i++) {
    at = raw.indexOf('${{', at + 1);
    if (at < 0) return fallback;
  }
  const pos = parsed.lines.linePos(node.range[0] + at);
  return { line: pos.line, column: pos.col };
}

export function expressionProblems(
  parsed: ParsedYaml,
  source: string,
  raw: unknown,
): FileProblem[] {
  if (!isRecord(raw)) return [];
  const problems: FileProblem[] = [];
  const visit = (value: unknown, path: Path) => {
    if (Array.isArray(value)) value.forEach((v, i) => visit(v, [...path, i]));
    else if (isRecord(value)) for (const [k, v] of Object.entries(value)) visit(v, [...path, k]);
    else if (typeof value === 'string') checkValue(value, path);
  };
  const checkValue = (value: string, path: Path) => {
    const site = siteOf(path);
    if (!site) return;
    // An empty `if` is no condition, as at run time.
    if (site.condition ? value.trim() === '' : !value.includes('${{')) return;
    const report = (offset: number | undefined, message: string) =>
      problems.push({
        file: parsed.file,
        ...(offset === undefined
          ? positionOf(parsed, path)
          : expressionPosition(parsed, source, path, value, offset)),
        field: formatPath(path),
        message,
      });
    let parts: { expression: string; start: number | undefined }[];
    try {
      if (site.condition) {
        const { expression, offset } = conditionExpression(value);
        parts = [{ expression, start: offset === 0 ? undefined : offset - 3 }];
      } else
        parts = findExpressions(value).map((p) => ({ expression: p.expression, start: p.start }));
    } catch (error) {
      if (!(error instanceof ExpressionError)) throw error;
      report(error.offset, error.message);
      return;
    }
    if (!site.scope) {
      report(parts[0]?.start, 'expressions are not allowed here');
      return;
    }
    for (const part of parts) {
      const shown = part.expression.trim();
      try {
        for (const message of scopeProblems(part.expression, site.scope, factsOf(raw, site)))
          report(part.start, message);
      } catch (error) {
        if (!(error instanceof ExpressionError)) throw error;
        report(part.start, `\`${shown}\`: ${error.message}`);
      }
    }
  };
  visit(raw, []);
  return problems;
}
