/**
 * What starts a workflow (`on`): push filters with GitHub's filter patterns, manual dispatch
 * with typed inputs, cron schedules. The `on` schema is in workflow.ts; these are the rules
 * applied when an event arrives.
 */
import { CronExpressionParser } from 'cron-parser';
import { ValveError } from '../errors.js';

export interface PushFilters {
  branches?: string[];
  branchesIgnore?: string[];
  tags?: string[];
  tagsIgnore?: string[];
  paths?: string[];
  pathsIgnore?: string[];
}

/** Parsed and validated; Valve's git server has no pull requests yet, so it never fires. */
export interface PullRequestFilters {
  branches?: string[];
  branchesIgnore?: string[];
  paths?: string[];
  pathsIgnore?: string[];
  types?: string[];
}

export interface DispatchInput {
  description?: string;
  required: boolean;
  default?: string | boolean | number;
  type: 'string' | 'boolean' | 'choice' | 'number' | 'environment';
  options?: string[];
}

export interface Triggers {
  push?: PushFilters;
  workflowDispatch?: { inputs: Record<string, DispatchInput> };
  schedule?: { cron: string }[];
  pullRequest?: PullRequestFilters;
}

/** Event names Valve acts on (`pull_request` is accepted but has no source of events yet). */
export const SUPPORTED_EVENTS = ['push', 'workflow_dispatch', 'schedule', 'pull_request'];

/** GitHub events a workflow may name that Valve does not support. */
export const UNSUPPORTED_EVENTS = [
  'branch_protection_rule',
  'check_run',
  'check_suite',
  'create',
  'delete',
  'deployment',
  'deployment_status',
  'discussion',
  'discussion_comment',
  'fork',
  'gollum',
  'image_version',
  'issue_comment',
  'issues',
  'label',
  'merge_group',
  'milestone',
  'page_build',
  'project',
  'project_card',
  'project_column',
  'public',
  'pull_request_comment',
  'pull_request_review',
  'pull_request_review_comment',
  'pull_request_target',
  'registry_package',
  'release',
  'repository_dispatch',
  'status',
  'watch',
  'workflow_call',
  'workflow_run',
];

export const PULL_REQUEST_TYPES = [
  'assigned',
  'unassigned',
  'labeled',
  'unlabeled',
  'opened',
  'edited',
  'closed',
  'reopened',
  'synchronize',
  'converted_to_draft',
  'ready_for_review',
  'locked',
  'unlocked',
  'review_requested',
  'review_request_removed',
  'auto_merge_enabled',
  'auto_merge_disabled',
  'milestoned',
  'demilestoned',
  'enqueued',
  'dequeued',
];

// Translates one filter pattern (GitHub's cheat sheet) to a regular expression:
// `*` any run without `/`, `**` anything, `**/` zero or more directories, `?` and `+` make the
// preceding character optional or repeatable, `[a-z0-9]` one character, `\` escapes.
function compileGlob(glob: string): RegExp {
  let source = '';
  let quantifiable = false;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        if (glob[i + 1] === '/') {
          i++;
          source += '(?:.*/)?';
        } else source += '.*';
      } else source += '[^/]*';
      quantifiable = false;
    } else if (c === '?' || c === '+') {
      if (!quantifiable)
        throw new Error(`\`${c}\` at position ${i + 1} must follow a character it applies to`);
      source += c;
      quantifiable = false;
    } else if (c === '[') {
      const close = glob.indexOf(']', i + 1);
      if (close < 0) throw new Error(`\`[\` at position ${i + 1} is never closed with \`]\``);
      const body = glob.slice(i + 1, close);
      if (body === '') throw new Error(`\`[]\` at position ${i + 1} lists no characters`);
      let set = '';
      for (let j = 0; j < body.length; j++) {
        const from = body[j]!;
        if (body[j + 1] === '-' && j + 2 < body.length) {
          const to = body[j + 2]!;
          const sameClass = [/[a-z]/, /[A-Z]/, /[0-9]/].some((r) => r.test(from) && r.test(to));
          if (!sameClass || from > to)
            throw new Error(`range \`${from}-${to}\` must be within a-z, A-Z or 0-9`);
          set += `${from}-${to}`;
          j += 2;
        } else set += from.replace(/[\\\]^-]/g, '\\$&');
      }
      source += `[${set}]`;
      i = close;
      quantifiable = true;
    } else if (c === '\\') {
      const next = glob[i + 1];
      if (next === undefined) throw new Error('ends with `\\`, which escapes nothing');
      source += next.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
      i++;
      quantifiable = true;
    } else {
      source += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
      quantifiable = true;
    }
  }
  return new RegExp(`^${source}$`);
}

/** Why a filter pattern is invalid, or undefined when it is fine. A leading `!` is allowed. */
export function filterPatternError(pattern: string): string | undefined {
  try {
    compileGlob(pattern.startsWith('!') ? pattern.slice(1) : pattern);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/** One filter pattern against a branch, tag or path (a leading `!` is for lists, not here). */
export function globMatch(glob: string, value: string): boolean {
  return compileGlob(glob).test(value);
}

/**
 * A list of patterns, checked in order: a match includes, a later `!pattern` match excludes,
 * a later positive match includes again.
 */
export function matchesFilterList(patterns: string[], value: string): boolean {
  let included = false;
  for (const pattern of patterns) {
    if (pattern.startsWith('!')) {
      if (included && globMatch(pattern.slice(1), value)) included = false;
    } else if (!included && globMatch(pattern, value)) included = true;
  }
  return included;
}

function pathsMatch(filters: PushFilters, changedFiles: string[] | null): boolean {
  if (changedFiles === null) return true;
  if (filters.paths) return changedFiles.some((f) => matchesFilterList(filters.paths!, f));
  if (filters.pathsIgnore)
    return changedFiles.some((f) => !matchesFilterList(filters.pathsIgnore!, f));
  return true;
}

/**
 * Does a push start this workflow? As in GitHub: with only branch filters tags never match
 * (and the reverse), with neither both do; path filters apply to branches, not to tags, and
 * pass when the changed files are unknown (`null`, e.g. a new branch).
 */
export function matchesPush(
  on: Triggers,
  event: { ref: string; changedFiles: string[] | null },
): boolean {
  const push = on.push;
  if (!push) return false;
  const hasBranchFilter = push.branches !== undefined || push.branchesIgnore !== undefined;
  const hasTagFilter = push.tags !== undefined || push.tagsIgnore !== undefined;
  if (event.ref.startsWith('refs/heads/')) {
    const branch = event.ref.slice('refs/heads/'.length);
    if (push.branches) {
      if (!matchesFilterList(push.branches, branch)) return false;
    } else if (push.branchesIgnore) {
      if (matchesFilterList(push.branchesIgnore, branch)) return false;
    } else if (hasTagFilter) return false;
    return pathsMatch(push, event.changedFiles);
  }
  if (event.ref.startsWith('refs/tags/')) {
    const tag = event.ref.slice('refs/tags/'.length);
    if (push.tags) return matchesFilterList(push.tags, tag);
    if (push.tagsIgnore) return !matchesFilterList(push.tagsIgnore, tag);
    return !hasBranchFilter;
  }
  return false;
}

/** The cron strings of `on.schedule` (UTC, five fields). */
export function cronSchedules(on: Triggers): string[] {
  return (on.schedule ?? []).map((s) => s.cron);
}

const MONTHS = 'JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC';
const DAYS = 'SUN|MON|TUE|WED|THU|FRI|SAT';
const cronFields = [
  { name: 'minute', pattern: /^[0-9*,/-]+$/ },
  { name: 'hour', pattern: /^[0-9*,/-]+$/ },
  { name: 'day of month', pattern: /^[0-9*,/-]+$/ },
  { name: 'month', pattern: new RegExp(`^([0-9*,/-]|${MONTHS})+$`, 'i') },
  { name: 'day of week', pattern: new RegExp(`^([0-9*,/-]|${DAYS})+$`, 'i') },
];

/** Why a schedule's cron string is invalid (POSIX, five fields, as GitHub), or undefined. */
export function cronError(cron: string): string | undefined {
  const fields = cron.trim().split(/\s+/);
  if (cron.trim().startsWith('@'))
    return 'macros such as @daily are not supported: write five fields, e.g. "0 0 * * *"';
  if (fields.length !== 5)
    return `expected 5 fields (minute hour day-of-month month day-of-week), got ${fields.length}`;
  for (const [i, field] of fields.entries()) {
    if (!cronFields[i]!.pattern.test(field))
      return `the ${cronFields[i]!.name} field "${field}" is not valid`;
  }
  try {
    CronExpressionParser.parse(cron, { tz: 'UTC' });
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

const invalidInput = (name: string, message: string) =>
  new ValveError('INPUT_INVALID', `inputs.${name}: ${message}`);

function coerceInput(name: string, input: DispatchInput, raw: unknown): string | boolean | number {
  const shown = typeof raw === 'string' ? `"${raw}"` : JSON.stringify(raw);
  switch (input.type) {
    case 'boolean':
      if (typeof raw === 'boolean') return raw;
      if (typeof raw === 'string' && /^(true|false)$/i.test(raw.trim()))
        return raw.trim().toLowerCase() === 'true';
      throw invalidInput(name, `expected true or false, got ${shown}`);
    case 'number': {
      const n =
        typeof raw === 'number'
          ? raw
          : typeof raw === 'string' && raw.trim() !== ''
            ? Number(raw)
            : NaN;
      if (Number.isFinite(n)) return n;
      throw invalidInput(name, `expected a number, got ${shown}`);
    }
    case 'choice': {
      const value = typeof raw === 'number' || typeof raw === 'boolean' ? String(raw) : raw;
      if (typeof value === 'string' && input.options?.includes(value)) return value;
      throw invalidInput(name, `expected one of: ${input.options?.join(', ')}; got ${shown}`);
    }
    default:
      if (typeof raw === 'string') return raw;
      if (typeof raw === 'number' || typeof raw === 'boolean') return String(raw);
      throw invalidInput(name, `expected a string, got ${shown}`);
  }
}

/**
 * The `inputs` of a manual run: every declared input, from `provided`, else its default, else
 * false / 0 / '' by type. Throws ValveError INPUT_INVALID naming the input for an unknown
 * input, a missing required one, or a value that does not fit the type.
 */
export function resolveDispatchInputs(
  on: Triggers,
  provided: Record<string, unknown>,
): Record<string, string | boolean | number> {
  if (!on.workflowDispatch)
    throw new ValveError('INPUT_INVALID', 'this workflow has no on.workflow_dispatch trigger');
  const declared = on.workflowDispatch.inputs;
  for (const name of Object.keys(provided)) {
    if (!Object.hasOwn(declared, name))
      throw invalidInput(
        name,
        `not an input of this workflow; expected one of: ${Object.keys(declared).join(', ') || '(none)'}`,
      );
  }
  const result: Record<string, string | boolean | number> = {};
  for (const [name, input] of Object.entries(declared)) {
    const raw = provided[name];
    // An empty value counts as not given, except for an optional string input.
    const missing =
      raw === undefined ||
      raw === null ||
      (raw === '' && (input.type !== 'string' || input.required));
    if (!missing) result[name] = coerceInput(name, input, raw);
    else if (input.default !== undefined) result[name] = coerceInput(name, input, input.default);
    else if (input.required) throw invalidInput(name, 'expected a value: the input is required');
    else result[name] = input.type === 'boolean' ? false : input.type === 'number' ? 0 : '';
  }
  return result;
}
