/**
 * Lexer and parser for GitHub Actions expressions (the text inside `${{ }}`), written by hand:
 * no published library implements this language. Grammar, lowest precedence first:
 *
 *   or      := and ('||' and)*
 *   and     := equality ('&&' equality)*
 *   equality:= compare (('==' | '!=') compare)*
 *   compare := unary (('<' | '<=' | '>' | '>=') unary)*
 *   unary   := '!' unary | postfix
 *   postfix := (call | context | '(' or ')') ('.' name | '.' '*' | '[' or ']' | '[' '*' ']')*
 *   primary := null | true | false | number | 'string' | postfix
 *
 * Property access applies only to contexts, calls and parenthesised groups, as in GitHub.
 */

/** A syntax error, an unknown function or context; `offset` is 0-based within the expression. */
export class ExpressionError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
    this.name = 'ExpressionError';
  }
}

export type BinaryOperator = '==' | '!=' | '<' | '<=' | '>' | '>=';

export type ExpressionNode =
  | { kind: 'literal'; value: null | boolean | number | string; offset: number }
  | { kind: 'context'; name: string; offset: number }
  | { kind: 'index'; target: ExpressionNode; index: ExpressionNode | 'star'; offset: number }
  | { kind: 'call'; name: string; args: ExpressionNode[]; offset: number }
  | { kind: 'not'; operand: ExpressionNode; offset: number }
  | {
      kind: 'binary';
      operator: BinaryOperator;
      left: ExpressionNode;
      right: ExpressionNode;
      offset: number;
    }
  | { kind: 'logical'; operator: '&&' | '||'; operands: ExpressionNode[]; offset: number }
  | { kind: 'group'; inner: ExpressionNode; offset: number };

/** The named values GitHub knows; which ones a workflow key may use is decided by the caller. */
export const CONTEXT_NAMES = [
  'github',
  'env',
  'vars',
  'job',
  'jobs',
  'steps',
  'runner',
  'secrets',
  'strategy',
  'matrix',
  'needs',
  'inputs',
] as const;

/** Functions by lower-case name: canonical spelling and argument counts. */
export const FUNCTIONS: Record<string, { name: string; min: number; max: number }> = {
  contains: { name: 'contains', min: 2, max: 2 },
  startswith: { name: 'startsWith', min: 2, max: 2 },
  endswith: { name: 'endsWith', min: 2, max: 2 },
  format: { name: 'format', min: 1, max: 255 },
  join: { name: 'join', min: 1, max: 2 },
  tojson: { name: 'toJSON', min: 1, max: 1 },
  fromjson: { name: 'fromJSON', min: 1, max: 1 },
  hashfiles: { name: 'hashFiles', min: 1, max: 255 },
  success: { name: 'success', min: 0, max: 0 },
  failure: { name: 'failure', min: 0, max: 0 },
  always: { name: 'always', min: 0, max: 0 },
  cancelled: { name: 'cancelled', min: 0, max: 0 },
};

/** Edit distance counting a swap of two neighbours as one edit, for "did you mean" hints. */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/** The candidate closest to `word` (case-insensitive), if it is close enough to be a typo. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const lower = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(lower, candidate.toLowerCase());
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  // A typo keeps most of the word: at most a third of it changes (1 to 3 edits).
  const allowed = Math.max(1, Math.min(3, Math.floor(word.length / 3)));
  return bestDistance <= allowed && bestDistance < Math.min(word.length, best!.length)
    ? best
    : undefined;
}

const didYouMean = (word: string, candidates: readonly string[]) => {
  const match = closest(word, candidates);
  return match ? `did you mean \`${match}\`? ` : '';
};

export const STATUS_FUNCTIONS = ['success', 'failure', 'always', 'cancelled'];

const MAX_LENGTH = 21_000;
const MAX_DEPTH = 50;

type TokenType =
  | '('
  | ')'
  | '['
  | ']'
  | ','
  | '.'
  | '!'
  | '!='
  | '=='
  | '<'
  | '<='
  | '>'
  | '>='
  | '&&'
  | '||'
  | '*'
  | 'number'
  | 'string'
  | 'identifier'
  | 'true'
  | 'false'
  | 'null'
  | 'end';

interface Token {
  type: TokenType;
  text: string;
  offset: number;
  value?: number | string;
}

// Characters that end a number or an identifier.
const boundary = new Set(['(', '[', ')', ']', ',', '.', '!', '>', '<', '=', '&', '|']);
const isBoundary = (c: string) => boundary.has(c) || /\s/.test(c);
const identifierPattern = /^[A-Za-z_][A-Za-z0-9_-]*$/;

function tokenize(input: string): Token[] {
  if (input.length > MAX_LENGTH)
    throw new ExpressionError(`expression is longer than ${MAX_LENGTH} characters`, 0);
  const tokens: Token[] = [];
  const previous = () => tokens[tokens.length - 1]?.type;
  let i = 0;
  const push = (type: TokenType, start: number, value?: number | string) =>
    tokens.push({ type, text: input.slice(start, i), offset: start, value });
  const readWord = () => {
    while (i < input.length && !isBoundary(input[i]!)) i++;
  };
  const readNumber = (start: number) => {
    while (i < input.length && (!isBoundary(input[i]!) || input[i] === '.')) i++;
    const text = input.slice(start, i);
    const value = Number(text);
    if (Number.isNaN(value)) throw new ExpressionError(`unexpected symbol \`${text}\``, start);
    push('number', start, value);
  };
  while (i < input.length) {
    const start = i;
    const c = input[i++]!;
    const next = input[i];
    if (/\s/.test(c)) continue;
    switch (c) {
      case '(':
      case ')':
      case '[':
      case ']':
      case ',':
      case '*':
        push(c, start);
        continue;
      case '.': {
        // After a name, `]`, `)` or `*` a dot is property access; elsewhere it starts `.5`.
        const p = previous();
        if (p === 'identifier' || p === ']' || p === ')' || p === '*') push('.', start);
        else readNumber(start);
        continue;
      }
      case '-':
      case '+':
        readNumber(start);
        continue;
      case '!':
      case '<':
      case '>':
        if (next === '=') i++;
        push((next === '=' ? `${c}=` : c) as TokenType, start);
        continue;
      case '=':
      case '&':
      case '|': {
        const double = `${c}${c}`;
        if (next !== c) {
          readWord();
          throw new ExpressionError(
            `unexpected symbol \`${input.slice(start, i)}\`${c === '=' ? '; use == to compare' : `; use ${double}`}`,
            start,
          );
        }
        i++;
        push(double as TokenType, start);
        continue;
      }
      case "'": {
        let value = '';
        for (;;) {
          if (i >= input.length)
            throw new ExpressionError('unterminated string: a closing quote is missing', start);
          const ch = input[i++]!;
          if (ch !== "'") value += ch;
          else if (input[i] === "'") {
            value += "'";
            i++;
          } else break;
        }
        push('string', start, value);
        continue;
      }
      default:
        if (c >= '0' && c <= '9') {
          readNumber(start);
          continue;
        }
        if (c === '"')
          throw new ExpressionError('unexpected symbol `"`: strings use single quotes', start);
        readWord();
        {
          const word = input.slice(start, i);
          if (!identifierPattern.test(word))
            throw new ExpressionError(`unexpected symbol \`${word}\``, start);
          // After a dot every word is a property name, even `true` or `null`.
          if (previous() !== '.' && ['true', 'false', 'null'].includes(word))
            push(word as TokenType, start);
          else if (previous() !== '.' && (word === 'NaN' || word === 'Infinity'))
            push('number', start, Number(word));
          else push('identifier', start);
        }
    }
  }
  tokens.push({ type: 'end', text: '', offset: input.length });
  return tokens;
}

/** Parses one expression (without `${{ }}`); throws ExpressionError. */
export function parseExpression(input: string): ExpressionNode {
  const tokens = tokenize(input);
  let position = 0;
  let depth = 0;
  const peek = () => tokens[position]!;
  const advance = () => tokens[position++]!;
  const at = (...types: TokenType[]) => types.includes(peek().type);
  const unexpected = (token: Token) =>
    token.type === 'end'
      ? new ExpressionError('unexpected end of expression', token.offset)
      : new ExpressionError(`unexpected symbol \`${token.text}\``, token.offset);
  const expect = (type: TokenType) => {
    if (!at(type)) throw unexpected(peek());
    return advance();
  };
  const nested = <T>(parse: () => T): T => {
    if (++depth > MAX_DEPTH)
      throw new ExpressionError(`expression nests deeper than ${MAX_DEPTH} levels`, peek().offset);
    try {
      return parse();
    } finally {
      depth--;
    }
  };

  const logical = (operator: '&&' | '||', operand: () => ExpressionNode) => () => {
    const first = operand();
    if (!at(operator)) return first;
    const operands = [first];
    while (at(operator)) {
      advance();
      operands.push(operand());
    }
    return { kind: 'logical', operator, operands, offset: first.offset } as ExpressionNode;
  };
  const binary = (operators: BinaryOperator[], operand: () => ExpressionNode) => () => {
    let left = operand();
    while (at(...operators)) {
      const operator = advance().type as BinaryOperator;
      const right = operand();
      left = { kind: 'binary', operator, left, right, offset: left.offset };
    }
    return left;
  };

  const unary = (): ExpressionNode => {
    if (!at('!')) return primary();
    const token = advance();
    return nested(() => ({ kind: 'not', operand: unary(), offset: token.offset }));
  };
  const compare = binary(['<', '<=', '>', '>='], unary);
  const equality = binary(['==', '!='], compare);
  const and = logical('&&', equality);
  const or = logical('||', and);
  const expression = (): ExpressionNode => nested(or);

  function primary(): ExpressionNode {
    const token = advance();
    switch (token.type) {
      case 'null':
        return { kind: 'literal', value: null, offset: token.offset };
      case 'true':
      case 'false':
        return { kind: 'literal', value: token.type === 'true', offset: token.offset };
      case 'number':
      case 'string':
        return { kind: 'literal', value: token.value!, offset: token.offset };
      case '(': {
        const inner = expression();
        expect(')');
        return postfix({ kind: 'group', inner, offset: token.offset });
      }
      case 'identifier':
        return postfix(at('(') ? call(token) : context(token));
      default:
        throw unexpected(token);
    }
  }

  function call(name: Token): ExpressionNode {
    advance(); // (
    const args: ExpressionNode[] = [];
    while (!at(')')) {
      args.push(expression());
      if (!at(')')) expect(',');
    }
    advance(); // )
    const fn = FUNCTIONS[name.text.toLowerCase()];
    if (!fn) {
      const known = Object.values(FUNCTIONS).map((f) => `${f.name}()`);
      const hint = didYouMean(`${name.text}()`, known);
      throw new ExpressionError(
        `unknown function \`${name.text}()\`; ${hint}expected one of: ${known.join(', ')}`,
        name.offset,
      );
    }
    if (args.length < fn.min || args.length > fn.max) {
      const expected =
        fn.min === fn.max
          ? `${fn.min}`
          : fn.max === 255
            ? `at least ${fn.min}`
            : `${fn.min} to ${fn.max}`;
      throw new ExpressionError(
        `\`${fn.name}()\` takes ${expected} argument${expected === '1' ? '' : 's'}, got ${args.length}`,
        name.offset,
      );
    }
    return { kind: 'call', name: fn.name, args, offset: name.offset };
  }

  function context(name: Token): ExpressionNode {
    const lower = name.text.toLowerCase();
    if (!(CONTEXT_NAMES as readonly string[]).includes(lower))
      throw new ExpressionError(
        `unknown context \`${name.text}\`; ${didYouMean(name.text, CONTEXT_NAMES)}expected one of: ${CONTEXT_NAMES.join(', ')} (a string needs single quotes)`,
        name.offset,
      );
    return { kind: 'context', name: lower, offset: name.offset };
  }

  function postfix(target: ExpressionNode): ExpressionNode {
    let node = target;
    let levels = 0;
    try {
      while (at('.', '[')) {
        if (++depth > MAX_DEPTH)
          throw new ExpressionError(
            `expression nests deeper than ${MAX_DEPTH} levels`,
            peek().offset,
          );
        levels++;
        const open = advance();
        if (open.type === '.') {
          const property = advance();
          if (property.type === '*') {
            node = { kind: 'index', target: node, index: 'star', offset: node.offset };
          } else if (property.type === 'identifier') {
            const index = { kind: 'literal', value: property.text, offset: property.offset };
            node = {
              kind: 'index',
              target: node,
              index: index as ExpressionNode,
              offset: node.offset,
            };
          } else throw unexpected(property);
        } else if (at('*')) {
          advance();
          expect(']');
          node = { kind: 'index', target: node, index: 'star', offset: node.offset };
        } else {
          const index = expression();
          expect(']');
          node = { kind: 'index', target: node, index, offset: node.offset };
        }
      }
    } finally {
      depth -= levels;
    }
    return node;
  }

  if (at('end')) throw new ExpressionError('empty expression', 0);
  const tree = expression();
  if (!at('end')) throw unexpected(peek());
  return tree;
}

/** Visits every node of a tree, parents first. */
export function walk(node: ExpressionNode, visit: (node: ExpressionNode) => void): void {
  visit(node);
  switch (node.kind) {
    case 'index':
      walk(node.target, visit);
      if (node.index !== 'star') walk(node.index, visit);
      break;
    case 'call':
      node.args.forEach((arg) => walk(arg, visit));
      break;
    case 'not':
      walk(node.operand, visit);
      break;
    case 'binary':
      walk(node.left, visit);
      walk(node.right, visit);
      break;
    case 'logical':
      node.operands.forEach((operand) => walk(operand, visit));
      break;
    case 'group':
      walk(node.inner, visit);
      break;
  }
}
