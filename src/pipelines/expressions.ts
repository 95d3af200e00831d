/**
 * `${{ }}` expressions in workflow values. The foundation supports context lookups by dotted
 * path (`steps.image.outputs.image`, `github.sha`, `env.NAME`) and quoted strings; any other
 * expression fails the step with a message naming it (the full language comes with the
 * pipelines issue).
 */
export type ExpressionContext = Record<string, unknown>;

const pathPattern = /^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*|\[\d+\])*$/;

export function evaluate(expression: string, context: ExpressionContext): unknown {
  const source = expression.trim();
  const quoted = /^'((?:[^']|'')*)'$/.exec(source);
  if (quoted) return quoted[1]!.replaceAll("''", "'");
  if (!pathPattern.test(source)) throw new Error(`expression not supported yet: \${{ ${source} }}`);
  let value: unknown = context;
  for (const part of source.split(/\.|\[(\d+)\]/).filter((p) => p !== undefined && p !== '')) {
    if (value === null || typeof value !== 'object') return '';
    value = (value as Record<string, unknown>)[part];
  }
  return value ?? '';
}

/** Replaces every `${{ ... }}` in a string with its value. */
export function interpolate(text: string, context: ExpressionContext): string {
  return text.replace(/\$\{\{([\s\S]*?)\}\}/g, (_match, expression: string) => {
    const value = evaluate(expression, context);
    return typeof value === 'object' ? JSON.stringify(value) : String(value);
  });
}
