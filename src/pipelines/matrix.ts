/**
 * `strategy.matrix`: the combinations a job runs with, with GitHub's `include`/`exclude` rules.
 *
 * - The variables (every key but `include` and `exclude`) give their cartesian product, the
 *   first variable varying slowest.
 * - `exclude` entries remove every combination they partially match; it applies before include.
 * - Each `include` entry is merged into every original combination whose original values it
 *   does not contradict (values added by an earlier include may be overwritten); an entry that
 *   fits no original combination becomes a combination of its own.
 */
import {
  findExpressions,
  evaluate,
  interpolate,
  type ExpressionContext,
} from './expressions/index.js';

/** Variables to lists of values, plus optional `include` and `exclude` lists of objects. */
export type MatrixSpec = Record<string, unknown>;

export const MAX_MATRIX_JOBS = 256;

/** A matrix that cannot be expanded; `path` is relative to the matrix (e.g. `['exclude', 0]`). */
export class MatrixError extends Error {
  constructor(
    message: string,
    readonly path: (string | number)[] = [],
  ) {
    super(message);
    this.name = 'MatrixError';
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((v, i) => deepEqual(v, b[i]));
  if (isRecord(a) && isRecord(b)) {
    const keys = Object.keys(a);
    return (
      keys.length === Object.keys(b).length && keys.every((k) => k in b && deepEqual(a[k], b[k]))
    );
  }
  return false;
}

function entries(spec: MatrixSpec, key: 'include' | 'exclude'): Record<string, unknown>[] {
  const list = spec[key];
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw new MatrixError(`expected a list of objects`, [key]);
  return list.map((entry, i) => {
    if (!isRecord(entry)) throw new MatrixError('expected an object', [key, i]);
    return entry;
  });
}

/**
 * The combinations of a matrix, in GitHub's order: `[{}]` when the matrix is empty (no matrix).
 * Throws MatrixError when a variable has no values, an exclude names an unknown variable, no
 * combination is left, or there are more than 256.
 */
export function expandMatrix(spec: MatrixSpec): Record<string, unknown>[] {
  const variables = Object.keys(spec).filter((k) => k !== 'include' && k !== 'exclude');
  const exclude = entries(spec, 'exclude');
  const include = entries(spec, 'include');
  if (variables.length === 0 && include.length === 0) return [{}];

  const values = variables.map((name) => {
    const list = spec[name];
    if (!Array.isArray(list)) throw new MatrixError(`expected a list of values`, [name]);
    if (list.length === 0) throw new MatrixError(`expected at least one value`, [name]);
    return list as unknown[];
  });
  for (const [i, entry] of exclude.entries()) {
    for (const key of Object.keys(entry)) {
      if (!variables.includes(key))
        throw new MatrixError(
          `exclude names \`${key}\`, which is not a matrix variable (${variables.join(', ') || 'none'})`,
          ['exclude', i, key],
        );
    }
  }
  const excluded = (combination: Record<string, unknown>) =>
    exclude.some((entry) => Object.entries(entry).every(([k, v]) => deepEqual(combination[k], v)));

  const tooMany = () =>
    new MatrixError(
      `the matrix has more than ${MAX_MATRIX_JOBS} combinations, the most one job may run`,
    );
  const original: Record<string, unknown>[] = [];
  if (variables.length > 0) {
    // Odometer over the variables, last one fastest; excluded combinations are never kept.
    const position = variables.map(() => 0);
    for (;;) {
      const combination = Object.fromEntries(
        variables.map((v, i) => [v, values[i]![position[i]!]]),
      );
      if (!excluded(combination)) {
        original.push(combination);
        if (original.length > MAX_MATRIX_JOBS) throw tooMany();
      }
      let digit = variables.length - 1;
      while (digit >= 0 && ++position[digit]! === values[digit]!.length) position[digit--] = 0;
      if (digit < 0) break;
    }
  }

  const added: Record<string, unknown>[] = [];
  for (const entry of include) {
    const fixed = Object.entries(entry).filter(([k]) => variables.includes(k));
    const extra = Object.entries(entry).filter(([k]) => !variables.includes(k));
    let merged = false;
    for (const combination of original) {
      if (!fixed.every(([k, v]) => deepEqual(combination[k], v))) continue;
      for (const [k, v] of extra) combination[k] = v;
      merged = true;
    }
    if (!merged) added.push({ ...entry });
  }

  const all = [...original, ...added];
  if (all.length > MAX_MATRIX_JOBS) throw tooMany();
  if (all.length === 0) throw new MatrixError('`exclude` removes every combination of the matrix');
  return all;
}

/** Does the matrix (or any value in it) contain `${{ }}`, so that it expands only at run time? */
export function matrixHasExpressions(matrix: unknown): boolean {
  if (typeof matrix === 'string') return matrix.includes('${{');
  if (Array.isArray(matrix)) return matrix.some(matrixHasExpressions);
  if (isRecord(matrix)) return Object.values(matrix).some(matrixHasExpressions);
  return false;
}

/**
 * Evaluates the expressions of a matrix at run time (`${{ fromJSON(needs.a.outputs.list) }}`
 * as the whole matrix, a variable's values, `include` or `exclude`). A value that is one
 * `${{ }}` becomes the expression's value; a value with text around it becomes a string.
 */
export function resolveMatrix(matrix: MatrixSpec | string, context: ExpressionContext): MatrixSpec {
  const resolve = (value: unknown): unknown => {
    if (typeof value === 'string') {
      const parts = findExpressions(value);
      if (parts.length === 1 && parts[0]!.start === 0 && parts[0]!.end === value.length)
        return evaluate(parts[0]!.expression, context);
      return parts.length ? interpolate(value, context) : value;
    }
    if (Array.isArray(value)) return value.map(resolve);
    if (isRecord(value))
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolve(v)]));
    return value;
  };
  const resolved = resolve(matrix);
  if (!isRecord(resolved))
    throw new MatrixError(`the matrix expression gave ${JSON.stringify(resolved)}, not an object`);
  return resolved;
}
