/**
 * User-written YAML files (workflows, app specs, deploy manifests) validated by a zod schema,
 * with every problem reported as `file:line:column: field: what was expected`.
 */
import {
  LineCounter,
  isMap,
  isScalar,
  isSeq,
  parseAllDocuments,
  parseDocument,
  type Document,
  type Node,
} from 'yaml';
import type { z } from 'zod';

export interface FileProblem {
  file: string;
  line: number;
  column: number;
  field: string;
  message: string;
}

export class FileValidationError extends Error {
  constructor(readonly problems: FileProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'FileValidationError';
  }
}

export const formatProblem = (p: FileProblem) =>
  `${p.file}:${p.line}:${p.column}: ${p.field ? `${p.field}: ` : ''}${p.message}`;

export interface ParsedYaml {
  file: string;
  doc: Document.Parsed;
  lines: LineCounter;
}

/** Parses one YAML document; syntax errors become FileValidationError with positions. */
export function parseYaml(text: string, file: string): ParsedYaml {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  throwOnSyntaxErrors(doc, lines, file);
  return { file, doc, lines };
}

/** Parses a multi-document YAML stream (`---` separated, as Kubernetes manifests are). */
export function parseYamlStream(text: string, file: string): ParsedYaml[] {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, {
    lineCounter: lines,
    prettyErrors: false,
    uniqueKeys: true,
  });
  if (!Array.isArray(docs)) return [];
  for (const doc of docs) throwOnSyntaxErrors(doc, lines, file);
  return docs.filter((doc) => doc.contents !== null).map((doc) => ({ file, doc, lines }));
}

function throwOnSyntaxErrors(doc: Document.Parsed, lines: LineCounter, file: string) {
  if (doc.errors.length === 0) return;
  throw new FileValidationError(
    doc.errors.map((error) => {
      const pos = lines.linePos(error.pos[0]);
      return {
        file,
        line: pos.line,
        column: pos.col,
        field: '',
        message: error.message.split('\n')[0] ?? '',
      };
    }),
  );
}

/** Validates a parsed document against a schema; each issue points at the offending node. */
export function validateYaml<T extends z.ZodType>(parsed: ParsedYaml, schema: T): z.infer<T> {
  const result = schema.safeParse(parsed.doc.toJS());
  if (result.success) return result.data;
  throw new FileValidationError(
    result.error.issues.map((issue) => {
      const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
      // Point an unknown key at the key itself, and name it.
      const unknownKey = issue.code === 'unrecognized_keys' && issue.keys[0] !== undefined;
      if (unknownKey) path.push(issue.keys[0]!);
      const { line, column } = positionOf(parsed, path, { atKey: unknownKey });
      return { file: parsed.file, line, column, field: formatPath(path), message: issue.message };
    }),
  );
}

/** Line and column of the deepest node that exists along `path` (1-based). */
export function positionOf(
  parsed: ParsedYaml,
  path: (string | number)[],
  options: { atKey?: boolean } = {},
): { line: number; column: number } {
  let node: Node | null | undefined = parsed.doc.contents;
  let best = node?.range?.[0] ?? 0;
  for (const [depth, key] of path.entries()) {
    if (isMap(node)) {
      const pair = node.items.find((item) => isScalar(item.key) && item.key.value === key);
      if (!pair) break;
      best = (pair.key as Node).range?.[0] ?? best;
      // An unknown key points at the key itself; a bad value at the value.
      if (options.atKey && depth === path.length - 1) break;
      node = pair.value as Node | null;
      if (node?.range) best = node.range[0];
    } else if (isSeq(node) && typeof key === 'number') {
      node = node.items[key] as Node | undefined;
      if (node?.range) best = node.range[0];
    } else {
      break;
    }
  }
  const pos = parsed.lines.linePos(best);
  return { line: pos.line, column: pos.col };
}

export function formatPath(path: (string | number)[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}
