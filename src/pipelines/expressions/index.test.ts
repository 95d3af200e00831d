import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  checkExpression,
  contextReferences,
  evaluate,
  evaluateCondition,
  ExpressionError,
  findExpressions,
  interpolate,
  referencesSecret,
  type ExpressionFunctions,
} from './index.js';

const context = {
  github: {
    ref: 'refs/heads/main',
    sha: 'abc123',
    event: {
      commits: [{ id: 1 }, { id: 2 }],
      items: [{ name: 'a', tags: ['x'] }, { name: 'b', tags: ['y', 'z'] }, { other: 1 }],
    },
  },
  env: { NAME: 'valve', EMPTY: '' },
  steps: { build: { outputs: { image: 'reg/app@sha256:1' }, outcome: 'success' } },
  needs: { test: { result: 'success', outputs: { list: '["a","b"]' } } },
  matrix: { os: 'linux', node: 20 },
};
const ev = (expression: string) => evaluate(expression, context);

describe('literals', () => {
  test('null, booleans, numbers in JSON, hex and exponent forms, quoted strings', () => {
    assert.equal(ev('null'), null);
    assert.equal(ev('true'), true);
    assert.equal(ev('false'), false);
    assert.equal(ev('711'), 711);
    assert.equal(ev('-9.2'), -9.2);
    assert.equal(ev('0xff'), 255);
    assert.equal(ev('-2.99e-2'), -0.0299);
    assert.equal(ev('.5'), 0.5);
    assert.equal(ev("'Mona the Octocat'"), 'Mona the Octocat');
    assert.equal(ev("'It''s open source!'"), "It's open source!");
    assert.ok(Number.isNaN(ev('NaN')));
    assert.equal(ev('Infinity'), Infinity);
  });
});

describe('operators', () => {
  test('precedence: ! binds tighter than comparison, comparison than ==, == than && than ||', () => {
    assert.equal(ev('!false == true'), true);
    assert.equal(ev('1 < 2 == true'), true);
    assert.equal(ev('true || false && false'), true);
    assert.equal(ev('(true || false) && false'), false);
    assert.equal(ev('!!env.NAME'), true);
  });

  test('&& and || return an operand, not a boolean', () => {
    assert.equal(ev("env.EMPTY || 'fallback'"), 'fallback');
    assert.equal(ev("env.NAME || 'fallback'"), 'valve');
    assert.equal(ev("env.NAME && 'second'"), 'second');
    assert.equal(ev('env.MISSING && true'), null);
    assert.equal(ev("0 || '' || null"), null);
  });

  test('loose equality coerces mismatched kinds to numbers, as GitHub documents', () => {
    assert.equal(ev("1 == '1'"), true);
    assert.equal(ev("'' == 0"), true);
    assert.equal(ev('null == 0'), true);
    assert.equal(ev('null == false'), true);
    assert.equal(ev("'' == null"), true);
    assert.equal(ev('true == 1'), true);
    assert.equal(ev("true == 'true'"), false); // 'true' is NaN as a number
    assert.equal(ev("'0x10' == 16"), true);
    assert.equal(ev("'abc' == 'ABC'"), true); // strings ignore case
    assert.equal(ev('NaN == NaN'), false);
    assert.equal(ev('github == github'), true); // the same object
    assert.equal(ev("fromJSON('{}') == fromJSON('{}')"), false); // objects only equal themselves
    assert.equal(ev("github == 'Object'"), false); // objects are never coerced
    assert.equal(ev('matrix.node != 18'), true);
  });

  test('comparisons: numbers, case-insensitive strings, mismatched objects are false', () => {
    assert.equal(ev("'b' > 'A'"), true);
    assert.equal(ev("'10' > 9"), true);
    assert.equal(ev('true > false'), true);
    assert.equal(ev('null < 1'), true);
    assert.equal(ev("'abc' < 1"), false); // NaN
    assert.equal(ev('2 >= 2'), true);
    assert.equal(ev("'A' <= 'a'"), true);
    assert.equal(ev('github > 1'), false);
  });
});

describe('property access', () => {
  test('dots, brackets, case-insensitive names, arrays by index, missing is null', () => {
    assert.equal(ev('github.ref'), 'refs/heads/main');
    assert.equal(ev('GitHub.REF'), 'refs/heads/main');
    assert.equal(ev("github['sha']"), 'abc123');
    assert.equal(ev('steps.build.outputs.image'), 'reg/app@sha256:1');
    assert.deepEqual(ev('github.event.commits[1]'), { id: 2 });
    assert.deepEqual(ev('github.event.commits[1.7]'), { id: 2 });
    assert.equal(ev('github.event.commits[5]'), null);
    assert.equal(ev('github.event.commits[-1]'), null);
    assert.equal(ev('github.nothing.deeper'), null);
    assert.equal(ev('inputs.anything'), null); // an absent context is null
    assert.equal(ev('fromJSON(needs.test.outputs.list)[0]'), 'a');
  });

  test('the * filter collects a property of every element and drops the missing ones', () => {
    assert.deepEqual(ev('github.event.items.*.name'), ['a', 'b']);
    assert.deepEqual(ev('github.event.commits.*.id'), [1, 2]);
    assert.deepEqual(ev('github.event.items.*.tags.*'), ['x', 'y', 'z']);
    assert.deepEqual(ev('github.event.items[*].tags[0]'), ['x', 'y']);
    assert.deepEqual(ev('matrix.*'), ['linux', 20]);
    assert.deepEqual(ev('env.NAME.*'), []);
    assert.equal(ev("contains(github.event.items.*.name, 'B')"), true);
  });
});

describe('functions', () => {
  test('contains, startsWith, endsWith ignore case; contains searches arrays with ==', () => {
    assert.equal(ev("contains('Hello world', 'WORLD')"), true);
    assert.equal(ev('contains(fromJSON(\'["push", "pull_request"]\'), \'PUSH\')'), true);
    assert.equal(ev("contains(fromJSON('[1, 2]'), '2')"), true);
    assert.equal(ev("contains(fromJSON('[1, 2]'), 3)"), false);
    assert.equal(ev("contains(github, 'ref')"), false);
    assert.equal(ev("startsWith(github.ref, 'REFS/heads/')"), true);
    assert.equal(ev("endsWith(github.ref, '/MAIN')"), true);
    assert.equal(ev('startsWith(12345, 12)'), true);
  });

  test('format replaces {N} and unescapes {{ }}; join; toJSON; fromJSON', () => {
    assert.equal(
      ev("format('Hello {0} {1} {2}', 'Mona', 'the', 'Octocat')"),
      'Hello Mona the Octocat',
    );
    assert.equal(
      ev("format('{{Hello {0} {1} {2}!}}', 'Mona', 'the', 'Octocat')"),
      '{Hello Mona the Octocat!}',
    );
    assert.equal(ev("format('{0}/{0}', true)"), 'true/true');
    assert.equal(ev("format('{0}', null)"), '');
    assert.equal(ev("format('{0}', 0.1)"), '0.1');
    assert.equal(ev("format('{0}', 1.50)"), '1.5');
    assert.equal(ev("format('{0}', github)"), 'Object');
    assert.equal(ev('join(github.event.items.*.name)'), 'a,b');
    assert.equal(ev("join(github.event.items.*.name, ' | ')"), 'a | b');
    assert.equal(ev("join('single')"), 'single');
    assert.equal(ev('toJSON(matrix)'), '{\n  "os": "linux",\n  "node": 20\n}');
    assert.deepEqual(ev('fromJSON(\'{"a": [1, true, null]}\')'), { a: [1, true, null] });
    assert.equal(ev("fromJSON('42')"), 42);
    assert.equal(ev('TOJSON(null)'), 'null'); // function names ignore case
  });

  test('format and fromJSON errors name the problem', () => {
    assert.throws(() => ev("format('{1}', 'a')"), /\{1\} has no argument/);
    assert.throws(() => ev("format('{x}', 'a')"), /format string is invalid/);
    assert.throws(() => ev("format('}', 'a')"), /format string is invalid/);
    assert.throws(() => ev("fromJSON('{oops')"), /fromJSON\(\): not valid JSON/);
    assert.throws(() => ev("fromJSON('')"), /empty/);
  });

  test('hashFiles and status functions come from the caller', () => {
    const calls: string[][] = [];
    const hashFiles = (...patterns: string[]) => {
      calls.push(patterns);
      return 'f00d';
    };
    assert.equal(evaluate("hashFiles('**/package-lock.json', 'x')", {}, { hashFiles }), 'f00d');
    assert.deepEqual(calls, [['**/package-lock.json', 'x']]);
    assert.throws(() => ev("hashFiles('x')"), /only available in steps/);
    assert.throws(() => ev('success()'), /only available in `if`/);
  });
});

describe('conditions', () => {
  const status = (state: 'success' | 'failure' | 'cancelled'): ExpressionFunctions => ({
    success: () => state === 'success',
    failure: () => state === 'failure',
    cancelled: () => state === 'cancelled',
    always: () => true,
    hashFiles: () => '',
  });

  test('without a status function the condition is success() && (condition)', () => {
    assert.equal(evaluateCondition(undefined, context, status('success')), true);
    assert.equal(evaluateCondition('  ', context, status('failure')), false);
    assert.equal(
      evaluateCondition("github.ref == 'refs/heads/main'", context, status('success')),
      true,
    );
    assert.equal(
      evaluateCondition("github.ref == 'refs/heads/main'", context, status('failure')),
      false,
    );
    assert.equal(evaluateCondition('${{ matrix.node == 20 }}', context, status('success')), true);
    assert.equal(evaluateCondition('env.EMPTY', context, status('success')), false);
  });

  test('a status function replaces the implicit success()', () => {
    assert.equal(evaluateCondition('failure()', context, status('failure')), true);
    assert.equal(evaluateCondition('${{ always() }}', context, status('cancelled')), true);
    assert.equal(
      evaluateCondition("always() && env.NAME == 'valve'", context, status('failure')),
      true,
    );
    assert.equal(evaluateCondition('cancelled()', context, status('success')), false);
    assert.equal(evaluateCondition('!cancelled()', context, status('failure')), true);
  });

  test('a condition partly wrapped in ${{ }} is rejected', () => {
    assert.throws(
      () => evaluateCondition("${{ false }} && 'x'", context, status('success')),
      ExpressionError,
    );
  });
});

describe('templates', () => {
  test('interpolate replaces every ${{ }}; null is empty, objects are JSON', () => {
    assert.equal(interpolate('${{ env.NAME }}-${{ matrix.node }}', context), 'valve-20');
    assert.equal(interpolate('[${{ env.MISSING }}]', context), '[]');
    assert.equal(interpolate('${{ true }} ${{ 1.0 }}', context), 'true 1');
    assert.equal(interpolate('${{ github.event.commits[0] }}', context), '{"id":1}');
    assert.equal(interpolate("${{ format('}}{0}', 'x') }}!", context), '}x!');
    assert.equal(interpolate('no expressions', context), 'no expressions');
  });

  test('evaluate accepts an expression still wrapped in ${{ }}', () => {
    assert.equal(evaluate(' ${{ matrix.node }} ', context), 20);
  });

  test('findExpressions skips }} inside quoted strings and reports an unclosed ${{', () => {
    assert.deepEqual(
      findExpressions("a ${{ 'x}}y' }} b ${{ 1 }}").map((p) => [p.start, p.expression]),
      [
        [2, " 'x}}y' "],
        [18, ' 1 '],
      ],
    );
    assert.throws(
      () => findExpressions('ok ${{ github.sha'),
      (error: unknown) => error instanceof ExpressionError && error.offset === 3,
    );
  });

  test('referencesSecret lists the secrets a text uses, once each', () => {
    assert.deepEqual(
      referencesSecret(
        "${{ secrets.TOKEN }} ${{ secrets['DB-PASS'] }} ${{ secrets.TOKEN || env.X }}",
      ),
      ['TOKEN', 'DB-PASS'],
    );
    assert.deepEqual(referencesSecret('echo $SECRET'), []);
    // Whole files: a comment's broken expression does not hide the others.
    assert.deepEqual(
      referencesSecret("# ${{ secrets.A ==\nrun: ${{ secrets.B }}\n# ${{ secrets['C']"),
      ['A', 'B', 'C'],
    );
  });
});

describe('checkExpression', () => {
  test('lists contexts (lower case) and functions (canonical spelling)', () => {
    assert.deepEqual(
      checkExpression("contains(GitHub.ref, 'x') && startswith(env.A, needs.a.result)"),
      {
        contexts: ['github', 'env', 'needs'],
        functions: ['contains', 'startsWith'],
      },
    );
    assert.deepEqual(contextReferences("needs.build.outputs.x || steps['id'].outcome || matrix"), [
      { context: 'needs', property: 'build', offset: 0 },
      { context: 'steps', property: 'id', offset: 25 },
      { context: 'matrix', offset: 48 },
    ]);
  });

  const errors: [string, number, RegExp][] = [
    ['github.ref ==', 13, /unexpected end of expression/],
    ["github.ref = 'x'", 11, /use == to compare/],
    ['foo.bar', 0, /unknown context `foo`/],
    ['github.ref & b', 11, /unexpected symbol `&`; use &&/],
    ['(1 == 1', 7, /unexpected end/],
    ['1 == 1)', 6, /unexpected symbol `\)`/],
    ['toJsn(github)', 0, /unknown function `toJsn\(\)`; did you mean `toJSON\(\)`/],
    ['secret.TOKEN', 0, /unknown context `secret`; did you mean `secrets`/],
    ["contains('a')", 0, /`contains\(\)` takes 2 arguments, got 1/],
    ["success('x')", 0, /`success\(\)` takes 0 arguments, got 1/],
    ['"double"', 0, /strings use single quotes/],
    ["'unterminated", 0, /unterminated string/],
    ['github.', 7, /unexpected end/],
    ['github.ref.1', 11, /unexpected symbol `1`/],
    ["'a'.length", 3, /unexpected symbol `.length`/],
    ['', 0, /empty expression/],
    ['1 2', 2, /unexpected symbol `2`/],
  ];
  for (const [expression, offset, message] of errors) {
    test(`rejects ${JSON.stringify(expression)} at offset ${offset}`, () => {
      assert.throws(
        () => checkExpression(expression),
        (error: unknown) => {
          assert.ok(error instanceof ExpressionError, String(error));
          assert.match(error.message, message);
          assert.equal(error.offset, offset, error.message);
          return true;
        },
      );
    });
  }

  test('expressions nested too deeply are rejected', () => {
    assert.throws(() => checkExpression(`${'('.repeat(60)}1${')'.repeat(60)}`), /deeper than 50/);
  });
});
