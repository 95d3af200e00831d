/**
 * GitHub Actions expressions (`${{ }}`) for workflow values: the language is GitHub's
 * (docs/workflows.md lists what Valve supports). `checkExpression` and `contextReferences` serve
 * validation at parse time; `evaluate`, `interpolate` and `evaluateCondition` serve the runner.
 */
import {
  ExpressionError,
  parseExpression,
  STATUS_FUNCTIONS,
  walk,
  type ExpressionNode,
} from './parser.js';
import {
  evaluateNode,
  toExpressionString,
  truthy,
  type ExpressionContext,
  type ExpressionFunctions,
} from './evaluator.js';

export { ExpressionError, CONTEXT_NAMES, FUNCTIONS, STATUS_FUNCTIONS, closest } from './parser.js';
export { looseEquals, toExpressionString, truthy } from './evaluator.js';
export type { ExpressionContext, ExpressionFunctions } from './evaluator.js';

/**
 * Evaluates one expression: the text between `${{` and `}}`, or that text still wrapped in one
 * `${{ }}` (as a `timeout-minutes: ${{ ... }}` value stands in the workflow).
 */
export function evaluate(
  expression: string,
  context: ExpressionContext,
  functions: Partial<ExpressionFunctions> = {},
): unknown {
  return evaluateNode(parseExpression(unwrap(expression)), context, functions);
}

function unwrap(text: string): string {
  const trimmed = text.trim();
  if (!trimmed.startsWith('${{')) return text;
  const parts = findExpressions(trimmed);
  return parts.length === 1 && parts[0]!.end === trimmed.length ? parts[0]!.expression : text;
}

/** A `${{ ... }}` found in a string: `start` is the offset of `${{`, `end` just after `}}`. */
export interface TemplatePart {
  start: number;
  end: number;
  expression: string;
}

/**
 * Finds every `${{ ... }}` in a string. The closing `}}` is the first one outside a quoted
 * string, so `${{ format('{{0}}', x) }}` is one expression. Throws ExpressionError (offset into
 * `text`) when one is never closed.
 */
export function findExpressions(text: string): TemplatePart[] {
  const parts: TemplatePart[] = [];
  let from = 0;
  for (;;) {
    const start = text.indexOf('${{', from);
    if (start < 0) return parts;
    let inString = false;
    let i = start + 3;
    for (; i < text.length; i++) {
      if (text[i] === "'") inString = !inString;
      else if (!inString && text[i] === '}' && text[i + 1] === '}') break;
    }
    if (i >= text.length) throw new ExpressionError('`${{` is never closed with `}}`', start);
    parts.push({ start, end: i + 2, expression: text.slice(start + 3, i) });
    from = i + 2;
  }
}

/** Value of an expression as text in a string: null is empty, arrays and objects are JSON. */
function asText(value: unknown): string {
  if (value !== null && typeof value === 'object') return JSON.stringify(value);
  return toExpressionString(value);
}

/** Replaces every `${{ ... }}` in a string with its value. */
export function interpolate(
  text: string,
  context: ExpressionContext,
  functions: Partial<ExpressionFunctions> = {},
): string {
  let out = '';
  let last = 0;
  for (const part of findExpressions(text)) {
    out += text.slice(last, part.start) + asText(evaluate(part.expression, context, functions));
    last = part.end;
  }
  return out + text.slice(last);
}

/**
 * The expression of an `if`: GitHub lets it be written bare or wrapped in one `${{ }}`.
 * Returns the expression text and its offset in `condition`; throws when `${{ }}` wraps only part.
 */
export function conditionExpression(condition: string): { expression: string; offset: number } {
  const parts = findExpressions(condition);
  if (parts.length === 0) return { expression: condition, offset: 0 };
  const [part] = parts;
  if (
    parts.length > 1 ||
    condition.slice(0, part!.start).trim() !== '' ||
    condition.slice(part!.end).trim() !== ''
  ) {
    throw new ExpressionError(
      'write the condition without `${{ }}`, or wrap all of it in one `${{ }}`: text outside it would make it a non-empty string, always true',
      part!.start,
    );
  }
  return { expression: part!.expression, offset: part!.start + 3 };
}

const usesStatusFunction = (tree: ExpressionNode) => {
  let found = false;
  walk(tree, (node) => {
    if (node.kind === 'call' && STATUS_FUNCTIONS.includes(node.name)) found = true;
  });
  return found;
};

/**
 * A GitHub `if`: `${{ }}` is optional; without a status function (success, failure, always,
 * cancelled) the condition is `success() && (condition)`; an absent condition is `success()`.
 */
export function evaluateCondition(
  condition: string | undefined,
  context: ExpressionContext,
  functions: ExpressionFunctions,
): boolean {
  if (condition === undefined || condition.trim() === '') return functions.success();
  const tree = parseExpression(conditionExpression(condition).expression);
  if (!usesStatusFunction(tree) && !functions.success()) return false;
  return truthy(evaluateNode(tree, context, functions));
}

/**
 * Syntax-checks one expression; returns the contexts (lower case) and functions (canonical
 * spelling) it uses. Throws ExpressionError for syntax errors, unknown functions or contexts.
 */
export function checkExpression(expression: string): { contexts: string[]; functions: string[] } {
  const tree = parseExpression(expression);
  const contexts = new Set<string>();
  const functions = new Set<string>();
  walk(tree, (node) => {
    if (node.kind === 'context') contexts.add(node.name);
    if (node.kind === 'call') functions.add(node.name);
  });
  return { contexts: [...contexts], functions: [...functions] };
}

/** One use of a context; `property` is its first property when it is written literally. */
export interface ContextReference {
  context: string;
  property?: string;
  /** Offset of the context name in the expression. */
  offset: number;
}

/** Every context use in an expression, e.g. `needs.build.outputs.x` gives needs / build. */
export function contextReferences(expression: string): ContextReference[] {
  const references: ContextReference[] = [];
  const seen = new Set<ExpressionNode>();
  walk(parseExpression(expression), (node) => {
    if (node.kind === 'index' && node.target.kind === 'context') {
      seen.add(node.target);
      const index = node.index;
      const literal = index !== 'star' && index.kind === 'literal' ? index.value : undefined;
      references.push({
        context: node.target.name,
        property: typeof literal === 'string' ? literal : undefined,
        offset: node.target.offset,
      });
    } else if (node.kind === 'context' && !seen.has(node)) {
      references.push({ context: node.name, offset: node.offset });
    }
  });
  return references;
}

/**
 * Names of the secrets used as `secrets.NAME` (or `secrets['NAME']`) in a text's expressions.
 * It reads whole workflow files, comments included, so a part that does not parse is searched
 * for the same two spellings instead of failing: naming one secret too many is harmless here.
 */
export function referencesSecret(text: string): string[] {
  const names = new Set<string>();
  const loose = (source: string) => {
    for (const m of source.matchAll(/\bsecrets\s*(?:\.\s*([A-Za-z_][\w-]*)|\[\s*'([^']+)'\s*\])/gi))
      names.add((m[1] ?? m[2])!);
  };
  let from = 0;
  for (;;) {
    const start = text.indexOf('${{', from);
    if (start < 0) break;
    let parts: TemplatePart[];
    try {
      parts = findExpressions(text.slice(start));
    } catch {
      loose(text.slice(start));
      break;
    }
    const part = parts[0]!;
    try {
      for (const reference of contextReferences(part.expression))
        if (reference.context === 'secrets' && reference.property !== undefined)
          names.add(reference.property);
    } catch {
      loose(part.expression);
    }
    from = start + part.end;
  }
  return [...names];
}
