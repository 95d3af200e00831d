/**
 * A stand-in for `helm template`, for tests only, where no helm binary can be installed
 * (Debian has no helm package). It evaluates the subset of Go templates and Helm functions
 * that helm.ts's templates use, with Go's semantics where they matter to the output:
 * `{{- -}}` trimming, truthiness (false, 0, "", nil and empty collections are false),
 * `range` over maps in sorted key order, `toJson` as Go's encoding/json writes it,
 * values files merged as Helm does (maps merge, `null` deletes), an empty manifest skipped.
 * Anything outside the subset throws, so a template using more cannot pass unnoticed.
 */
import { createHash } from 'node:crypto';
import { stringify } from 'yaml';
import { canonicalJson } from '../render.js';

type Node =
  | { type: 'text'; text: string }
  | { type: 'action'; pipe: Token[] }
  | { type: 'if' | 'with'; pipe: Token[]; then: Node[]; else: Node[] }
  | { type: 'range'; vars: string[]; pipe: Token[]; body: Node[] };
type Token = { kind: 'string' | 'number' | 'field' | 'var' | 'ident' | 'punct'; text: string };

interface Scope {
  dot: unknown;
  root: unknown;
  vars: Map<string, unknown>;
}

export interface HelmContext {
  chartName: string;
  releaseName: string;
  values: Record<string, unknown>;
}

/** Renders every template of a chart (file path -> content) like `helm template` would. */
export function helmTemplate(
  chart: Record<string, string>,
  context: HelmContext,
): Record<string, string> {
  const defines = new Map<string, Node[]>();
  const parsed = new Map<string, Node[]>();
  for (const [path, text] of Object.entries(chart)) {
    if (!path.startsWith('templates/')) continue;
    parsed.set(path, parse(tokenize(text), defines));
  }
  const root = {
    Values: context.values,
    Chart: { Name: context.chartName },
    Release: { Name: context.releaseName, Service: 'Helm' },
  };
  const output: Record<string, string> = {};
  for (const [path, nodes] of parsed) {
    if (path.endsWith('.tpl')) continue;
    const text = run(nodes, { dot: root, root, vars: new Map() }, defines);
    if (text.trim()) output[path] = text;
  }
  return output;
}

/** Helm's merge of values files: maps merge key by key, `null` deletes, the rest replaces. */
export function mergeValues(
  base: Record<string, unknown>,
  override: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(override)) {
    if (value === null) delete out[key];
    else if (isMap(value) && isMap(out[key])) out[key] = mergeValues(out[key], value);
    else out[key] = value;
  }
  return out;
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

// ---- parsing --------------------------------------------------------------------------

type Piece = { text: string } | { action: string };

function tokenize(source: string): Piece[] {
  const pieces: Piece[] = [];
  let at = 0;
  while (at < source.length) {
    const open = source.indexOf('{{', at);
    if (open < 0) {
      pieces.push({ text: source.slice(at) });
      break;
    }
    let text = source.slice(at, open);
    const close = source.indexOf('}}', open);
    if (close < 0) throw new Error('unclosed {{');
    let inner = source.slice(open + 2, close);
    if (inner.startsWith('- ')) {
      text = text.replace(/\s+$/, '');
      inner = inner.slice(2);
    }
    at = close + 2;
    if (inner.endsWith(' -')) {
      inner = inner.slice(0, -2);
      at += /^\s*/.exec(source.slice(at))![0].length;
    }
    pieces.push({ text });
    inner = inner.trim();
    if (!(inner.startsWith('/*') && inner.endsWith('*/'))) pieces.push({ action: inner });
  }
  return pieces;
}

function parse(pieces: Piece[], defines: Map<string, Node[]>): Node[] {
  let i = 0;
  const block = (terminators: string[]): { nodes: Node[]; end: string } => {
    const nodes: Node[] = [];
    while (i < pieces.length) {
      const piece = pieces[i++]!;
      if ('text' in piece) {
        if (piece.text) nodes.push({ type: 'text', text: piece.text });
        continue;
      }
      const [keyword = '', ...rest] = piece.action.split(/\s+/);
      const args = piece.action.slice(keyword.length).trim();
      if (terminators.includes(keyword)) return { nodes, end: keyword };
      if (keyword === 'if' || keyword === 'with') {
        const then = block(['else', 'end']);
        const otherwise = then.end === 'else' ? block(['end']).nodes : [];
        nodes.push({ type: keyword, pipe: lex(args), then: then.nodes, else: otherwise });
      } else if (keyword === 'range') {
        const match = /^(\$\w+)(?:\s*,\s*(\$\w+))?\s*:=\s*(.*)$/.exec(args);
        const vars = match ? [match[1]!, match[2]].filter((v): v is string => !!v) : [];
        const body = block(['end']).nodes;
        nodes.push({ type: 'range', vars, pipe: lex(match ? match[3]! : args), body });
      } else if (keyword === 'define') {
        defines.set(JSON.parse(rest.join(' ')) as string, block(['end']).nodes);
      } else {
        nodes.push({ type: 'action', pipe: lex(piece.action) });
      }
    }
    if (terminators.length) throw new Error(`missing {{ end }}`);
    return { nodes, end: '' };
  };
  return block([]).nodes;
}

function lex(expression: string): Token[] {
  const tokens: Token[] = [];
  const pattern =
    /\s*(?:("(?:[^"\\]|\\.)*")|(-?\d+(?:\.\d+)?)|(\$\w*(?:\.\w+)*)|(\.(?:\w+(?:\.\w+)*)?)|([A-Za-z_]\w*)|([|()]))/y;
  let match: RegExpExecArray | null;
  while (pattern.lastIndex < expression.length && (match = pattern.exec(expression))) {
    if (match[1]) tokens.push({ kind: 'string', text: match[1] });
    else if (match[2]) tokens.push({ kind: 'number', text: match[2] });
    else if (match[3]) tokens.push({ kind: 'var', text: match[3] });
    else if (match[4]) tokens.push({ kind: 'field', text: match[4] });
    else if (match[5]) tokens.push({ kind: 'ident', text: match[5] });
    else if (match[6]) tokens.push({ kind: 'punct', text: match[6] });
  }
  if (expression.slice(pattern.lastIndex).trim())
    throw new Error(`unsupported template expression: ${expression}`);
  return tokens;
}

// ---- evaluation -----------------------------------------------------------------------

function run(nodes: Node[], scope: Scope, defines: Map<string, Node[]>): string {
  let out = '';
  for (const node of nodes) {
    if (node.type === 'text') out += node.text;
    else if (node.type === 'action') out += print(evaluate(node.pipe, scope, defines));
    else if (node.type === 'if' || node.type === 'with') {
      const value = evaluate(node.pipe, scope, defines);
      const inner = node.type === 'with' ? { ...scope, dot: value } : scope;
      out += truthy(value) ? run(node.then, inner, defines) : run(node.else, scope, defines);
    } else if (node.type === 'range') {
      const { vars: names, body } = node;
      const value = evaluate(node.pipe, scope, defines);
      const entries: [unknown, unknown][] = Array.isArray(value)
        ? value.map((v, i) => [i, v])
        : isMap(value)
          ? Object.keys(value)
              .sort()
              .map((k) => [k, value[k]])
          : [];
      for (const [key, item] of entries) {
        const vars = new Map(scope.vars);
        if (names.length === 2) vars.set(names[0]!, key).set(names[1]!, item);
        else if (names.length === 1) vars.set(names[0]!, item);
        out += run(body, { ...scope, dot: item, vars }, defines);
      }
    }
  }
  return out;
}

function evaluate(tokens: Token[], scope: Scope, defines: Map<string, Node[]>): unknown {
  // Split into commands at top-level pipes; each command's result feeds the next as last argument.
  const commands: Token[][] = [[]];
  let depth = 0;
  for (const token of tokens) {
    if (token.text === '(') depth++;
    if (token.text === ')') depth--;
    if (token.kind === 'punct' && token.text === '|' && depth === 0) commands.push([]);
    else commands.at(-1)!.push(token);
  }
  let piped: unknown[] = [];
  for (const command of commands) {
    const operands = operandsOf(command, scope, defines);
    const head = command[0]!;
    if (head.kind === 'ident' && !['true', 'false', 'nil'].includes(head.text)) {
      piped = [call(head.text, [...operands.slice(1), ...piped], scope, defines)];
    } else {
      if (operands.length !== 1 || piped.length) throw new Error('unsupported pipeline');
      piped = operands;
    }
  }
  return piped[0];
}

function operandsOf(tokens: Token[], scope: Scope, defines: Map<string, Node[]>): unknown[] {
  const values: unknown[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.text === '(') {
      let depth = 1;
      let j = i + 1;
      for (; j < tokens.length && depth; j++) {
        if (tokens[j]!.text === '(') depth++;
        if (tokens[j]!.text === ')') depth--;
      }
      values.push(evaluate(tokens.slice(i + 1, j - 1), scope, defines));
      i = j - 1;
    } else if (token.kind === 'string') values.push(JSON.parse(token.text));
    else if (token.kind === 'number') values.push(Number(token.text));
    else if (token.kind === 'field') values.push(lookup(scope.dot, token.text.slice(1)));
    else if (token.kind === 'var') {
      const [name = '', ...path] = token.text.split('.');
      const base = name === '$' ? scope.root : scope.vars.get(name);
      if (name !== '$' && !scope.vars.has(name)) throw new Error(`undefined variable ${name}`);
      values.push(lookup(base, path.join('.')));
    } else if (token.kind === 'ident')
      values.push({ true: true, false: false, nil: null }[token.text] ?? token.text);
    else throw new Error(`unexpected ${token.text}`);
  }
  return values;
}

function lookup(value: unknown, path: string): unknown {
  if (!path) return value;
  let current = value;
  for (const key of path.split('.')) current = isMap(current) ? current[key] : undefined;
  return current;
}

function call(name: string, args: unknown[], scope: Scope, defines: Map<string, Node[]>) {
  switch (name) {
    case 'include': {
      const nodes = defines.get(args[0] as string);
      if (!nodes) throw new Error(`no template named ${String(args[0])}`);
      return run(nodes, { dot: args[1], root: scope.root, vars: new Map() }, defines);
    }
    case 'quote':
      return JSON.stringify(print(args[0]));
    case 'nindent':
      return `\n${indent(args[0] as number, String(args[1]))}`;
    case 'toYaml':
      return stringify(args[0], { sortMapEntries: true, lineWidth: 0 }).replace(/\n$/, '');
    case 'toJson':
      return canonicalJson(args[0]);
    case 'sha256sum':
      return createHash('sha256').update(String(args[0])).digest('hex');
    case 'required':
      if (!truthy(args[1])) throw new Error(String(args[0]));
      return args[1];
    case 'not':
      return !truthy(args[0]);
    case 'or':
      return args.find(truthy) ?? args.at(-1);
    default:
      throw new Error(`unsupported template function ${name}`);
  }
}

function indent(spaces: number, text: string): string {
  return text
    .split('\n')
    .map((line) => ' '.repeat(spaces) + line)
    .join('\n');
}

function truthy(value: unknown): boolean {
  if (Array.isArray(value)) return value.length > 0;
  if (isMap(value)) return Object.keys(value).length > 0;
  return value !== undefined && value !== null && value !== false && value !== 0 && value !== '';
}

/** How `{{ x }}` prints: Helm turns a missing value into nothing. */
function print(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}
