/**
 * Evaluation with GitHub's value semantics: loose equality that coerces mismatched kinds to
 * numbers, case-insensitive string comparison and property names, `&&`/`||` returning an
 * operand, and the `*` filter (`a.*.b` collects `b` of every element).
 */
import type { BinaryOperator, ExpressionNode } from './parser.js';

export type ExpressionContext = Record<string, unknown>;

export interface ExpressionFunctions {
  success(): boolean;
  failure(): boolean;
  always(): boolean;
  cancelled(): boolean;
  hashFiles(...patterns: string[]): string;
}

/** The result of a `*` filter; later property accesses apply to each element. */
class FilteredArray {
  constructor(readonly items: unknown[]) {}
}

type Kind = 'null' | 'boolean' | 'number' | 'string' | 'array' | 'object';

function kindOf(value: unknown): Kind {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'boolean') return 'boolean';
  if (typeof value === 'number') return 'number';
  if (typeof value === 'string') return 'string';
  if (Array.isArray(value) || value instanceof FilteredArray) return 'array';
  return 'object';
}

const itemsOf = (value: unknown): unknown[] =>
  value instanceof FilteredArray ? value.items : (value as unknown[]);

export function truthy(value: unknown): boolean {
  switch (kindOf(value)) {
    case 'null':
      return false;
    case 'boolean':
      return value as boolean;
    case 'number':
      return value !== 0 && !Number.isNaN(value);
    case 'string':
      return (value as string).length > 0;
    default:
      return true;
  }
}

/** GitHub's number conversion: null is 0, booleans 1/0, strings as JSON-ish numbers ('' is 0). */
function toNumber(value: unknown): number {
  switch (kindOf(value)) {
    case 'null':
      return 0;
    case 'boolean':
      return value ? 1 : 0;
    case 'number':
      return value as number;
    case 'string':
      return Number(value);
    default:
      return NaN;
  }
}

/** String conversion used by format(), join(), contains() and the comparison of strings. */
export function toExpressionString(value: unknown): string {
  switch (kindOf(value)) {
    case 'null':
      return '';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      return formatNumber(value as number);
    case 'string':
      return value as string;
    case 'array':
      return 'Array';
    default:
      return 'Object';
  }
}

// GitHub prints at most 15 significant decimals and no trailing zeros.
function formatNumber(n: number): string {
  if (n === 0 || !Number.isFinite(n)) return String(n === 0 ? 0 : n);
  return String(Number(n.toFixed(15)));
}

// Brings mismatched kinds together as GitHub does: number vs string compares numbers, and
// null or a boolean on either side becomes a number. Arrays and objects are never coerced.
function coerce(left: unknown, right: unknown): [unknown, unknown] {
  const lk = kindOf(left);
  const rk = kindOf(right);
  if (lk === rk) return [left, right];
  if (lk === 'number' && rk === 'string') return [left, toNumber(right)];
  if (lk === 'string' && rk === 'number') return [toNumber(left), right];
  if (lk === 'null' || lk === 'boolean') return coerce(toNumber(left), right);
  if (rk === 'null' || rk === 'boolean') return coerce(left, toNumber(right));
  return [left, right];
}

const upper = (s: string) => s.toUpperCase();

export function looseEquals(a: unknown, b: unknown): boolean {
  const [left, right] = coerce(a, b);
  const kind = kindOf(left);
  if (kind !== kindOf(right)) return false;
  switch (kind) {
    case 'null':
      return true;
    case 'number':
      return left === right; // NaN is never equal
    case 'string':
      return upper(left as string) === upper(right as string);
    case 'boolean':
      return left === right;
    default:
      return left === right; // the same instance
  }
}

function compare(a: unknown, b: unknown, greater: boolean): boolean {
  const [left, right] = coerce(a, b);
  const kind = kindOf(left);
  if (kind !== kindOf(right)) return false;
  let l: number | string;
  let r: number | string;
  if (kind === 'number' || kind === 'boolean') {
    l = Number(left);
    r = Number(right);
    if (Number.isNaN(l) || Number.isNaN(r)) return false;
  } else if (kind === 'string') {
    l = upper(left as string);
    r = upper(right as string);
  } else return false;
  return greater ? l > r : l < r;
}

function binary(operator: BinaryOperator, left: unknown, right: unknown): boolean {
  switch (operator) {
    case '==':
      return looseEquals(left, right);
    case '!=':
      return !looseEquals(left, right);
    case '<':
      return compare(left, right, false);
    case '>':
      return compare(left, right, true);
    case '<=':
      return looseEquals(left, right) || compare(left, right, false);
    case '>=':
      return looseEquals(left, right) || compare(left, right, true);
  }
}

/** Property lookup: exact key first, then case-insensitively as GitHub does. */
function property(object: object, key: string): unknown {
  const record = object as Record<string, unknown>;
  if (Object.hasOwn(record, key)) return record[key] ?? null;
  const lower = key.toLowerCase();
  for (const [k, v] of Object.entries(record)) if (k.toLowerCase() === lower) return v ?? null;
  return undefined;
}

type Index = { star: true } | { star: false; key?: string; position?: number };

function toIndex(value: unknown): Index {
  const kind = kindOf(value);
  const key = kind !== 'array' && kind !== 'object' ? toExpressionString(value) : undefined;
  const n = toNumber(value);
  const position = Number.isFinite(n) && n >= 0 ? Math.floor(n) : undefined;
  return { star: false, key, position };
}

function access(target: unknown, index: Index): unknown {
  if (target instanceof FilteredArray) {
    const result: unknown[] = [];
    for (const item of target.items) {
      const kind = kindOf(item);
      if (index.star) {
        if (kind === 'array') result.push(...itemsOf(item));
        else if (kind === 'object') result.push(...Object.values(item as object));
      } else if (kind === 'object' && index.key !== undefined) {
        const v = property(item as object, index.key);
        if (v !== undefined) result.push(v);
      } else if (kind === 'array' && index.position !== undefined) {
        const items = itemsOf(item);
        if (index.position < items.length) result.push(items[index.position]);
      }
    }
    return new FilteredArray(result);
  }
  switch (kindOf(target)) {
    case 'array': {
      const items = itemsOf(target);
      if (index.star) return new FilteredArray([...items]);
      if (index.position !== undefined && index.position < items.length)
        return items[index.position] ?? null;
      return null;
    }
    case 'object':
      if (index.star) return new FilteredArray(Object.values(target as object));
      return (index.key !== undefined ? property(target as object, index.key) : null) ?? null;
    default:
      return index.star ? new FilteredArray([]) : null;
  }
}

/** Replaces filter results by plain arrays so that callers never see the marker class. */
export function toPlain(value: unknown): unknown {
  if (value instanceof FilteredArray) return value.items.map(toPlain);
  if (value === undefined) return null;
  return value;
}

function format(args: unknown[]): string {
  const text = toExpressionString(args[0]);
  const invalid = () => new Error(`format(): the format string is invalid: ${text}`);
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '{' && text[i + 1] === '{') {
      out += '{';
      i++;
    } else if (c === '}' && text[i + 1] === '}') {
      out += '}';
      i++;
    } else if (c === '{') {
      const match = /^\{(\d+)\}/.exec(text.slice(i));
      if (!match) throw invalid();
      const n = Number(match[1]);
      if (n + 1 >= args.length)
        throw new Error(`format(): {${n}} has no argument; the format string is ${text}`);
      out += toExpressionString(args[n + 1]);
      i += match[0].length - 1;
    } else if (c === '}') throw invalid();
    else out += c;
  }
  return out;
}

function toJson(value: unknown): string {
  return JSON.stringify(toPlain(value), (_key, v: unknown) => (v === undefined ? null : v), 2);
}

function callFunction(
  name: string,
  args: unknown[],
  functions: Partial<ExpressionFunctions>,
): unknown {
  switch (name) {
    case 'contains': {
      const [search, item] = args;
      if (kindOf(search) === 'array') return itemsOf(search).some((v) => looseEquals(item, v));
      if (kindOf(search) === 'object' || ['array', 'object'].includes(kindOf(item))) return false;
      return toExpressionString(search)
        .toLowerCase()
        .includes(toExpressionString(item).toLowerCase());
    }
    case 'startsWith':
    case 'endsWith': {
      const [a, b] = args;
      if (['array', 'object'].includes(kindOf(a)) || ['array', 'object'].includes(kindOf(b)))
        return false;
      const s = toExpressionString(a).toLowerCase();
      const t = toExpressionString(b).toLowerCase();
      return name === 'startsWith' ? s.startsWith(t) : s.endsWith(t);
    }
    case 'format':
      return format(args);
    case 'join': {
      const [items, separator] = args;
      const kind = kindOf(items);
      if (kind === 'array') {
        const sep =
          separator !== undefined && !['array', 'object'].includes(kindOf(separator))
            ? toExpressionString(separator)
            : ',';
        return itemsOf(items).map(toExpressionString).join(sep);
      }
      return kind === 'object' ? '' : toExpressionString(items);
    }
    case 'toJSON':
      return toJson(args[0]);
    case 'fromJSON': {
      const text = toExpressionString(args[0]);
      if (text.trim() === '') throw new Error('fromJSON(): the input is empty');
      try {
        return JSON.parse(text) as unknown;
      } catch (error) {
        throw new Error(`fromJSON(): not valid JSON: ${(error as Error).message}`, {
          cause: error,
        });
      }
    }
    case 'hashFiles': {
      if (!functions.hashFiles) throw new Error('hashFiles() is only available in steps');
      return functions.hashFiles(...args.map(toExpressionString));
    }
    default: {
      const status = functions[name as 'success' | 'failure' | 'always' | 'cancelled'];
      if (!status) throw new Error(`${name}() is only available in \`if\` conditions`);
      return status.call(functions);
    }
  }
}

export function evaluateNode(
  node: ExpressionNode,
  context: ExpressionContext,
  functions: Partial<ExpressionFunctions>,
): unknown {
  const run = (n: ExpressionNode): unknown => {
    switch (n.kind) {
      case 'literal':
        return n.value;
      case 'group':
        return run(n.inner);
      case 'context':
        return property(context, n.name) ?? null;
      case 'index': {
        const target = run(n.target);
        return access(target, n.index === 'star' ? { star: true } : toIndex(run(n.index)));
      }
      case 'call':
        return callFunction(n.name, n.args.map(run), functions);
      case 'not':
        return !truthy(run(n.operand));
      case 'binary':
        return binary(n.operator, run(n.left), run(n.right));
      case 'logical': {
        let result: unknown = null;
        for (const operand of n.operands) {
          result = run(operand);
          if (n.operator === '&&' ? !truthy(result) : truthy(result)) break;
        }
        return result;
      }
    }
  };
  return toPlain(run(node));
}
