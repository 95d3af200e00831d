import assert from 'node:assert/strict';
import { test } from 'node:test';
import { expandMatrix, MatrixError, resolveMatrix } from './matrix.js';

// The examples are those of GitHub's documentation for jobs.<job_id>.strategy.matrix.

test('variables give their product, the first varying slowest', () => {
  assert.deepEqual(
    expandMatrix({ version: [10, 12, 14], os: ['ubuntu-latest', 'windows-latest'] }),
    [
      { version: 10, os: 'ubuntu-latest' },
      { version: 10, os: 'windows-latest' },
      { version: 12, os: 'ubuntu-latest' },
      { version: 12, os: 'windows-latest' },
      { version: 14, os: 'ubuntu-latest' },
      { version: 14, os: 'windows-latest' },
    ],
  );
});

test('include: merged where no original value is overwritten, else a new combination', () => {
  const combinations = expandMatrix({
    fruit: ['apple', 'pear'],
    animal: ['cat', 'dog'],
    include: [
      { color: 'green' },
      { color: 'pink', animal: 'cat' },
      { fruit: 'apple', shape: 'circle' },
      { fruit: 'banana' },
      { fruit: 'banana', animal: 'cat' },
    ],
  });
  assert.deepEqual(combinations, [
    { fruit: 'apple', animal: 'cat', color: 'pink', shape: 'circle' },
    { fruit: 'apple', animal: 'dog', color: 'green', shape: 'circle' },
    { fruit: 'pear', animal: 'cat', color: 'pink' },
    { fruit: 'pear', animal: 'dog', color: 'green' },
    { fruit: 'banana' },
    { fruit: 'banana', animal: 'cat' },
  ]);
});

test('include expands one combination with an extra variable', () => {
  const combinations = expandMatrix({
    os: ['windows-latest', 'ubuntu-latest'],
    node: [12, 14, 16],
    include: [{ os: 'windows-latest', node: 16, npm: 6 }],
  });
  assert.equal(combinations.length, 6);
  assert.deepEqual(
    combinations.filter((c) => 'npm' in c),
    [{ os: 'windows-latest', node: 16, npm: 6 }],
  );
});

test('include adds a combination that contradicts every original one', () => {
  const combinations = expandMatrix({
    os: ['macos-latest', 'windows-latest', 'ubuntu-latest'],
    version: [12, 14, 16],
    include: [{ os: 'windows-latest', version: 17 }],
  });
  assert.equal(combinations.length, 10);
  assert.deepEqual(combinations.at(-1), { os: 'windows-latest', version: 17 });
});

test('a matrix of only include runs one job per entry', () => {
  assert.deepEqual(
    expandMatrix({
      include: [
        { site: 'production', datacenter: 'site-a' },
        { site: 'staging', datacenter: 'site-b' },
      ],
    }),
    [
      { site: 'production', datacenter: 'site-a' },
      { site: 'staging', datacenter: 'site-b' },
    ],
  );
});

test('exclude removes partial matches; include is applied afterwards and can add them back', () => {
  const spec = {
    os: ['macos-latest', 'windows-latest'],
    version: [12, 14, 16],
    environment: ['staging', 'production'],
    exclude: [
      { os: 'macos-latest', version: 12, environment: 'production' },
      { os: 'windows-latest', version: 16 },
    ],
  };
  const combinations = expandMatrix(spec);
  assert.equal(combinations.length, 9);
  assert.ok(!combinations.some((c) => c.os === 'windows-latest' && c.version === 16));
  const readded = expandMatrix({
    ...spec,
    include: [{ os: 'windows-latest', version: 16, environment: 'staging' }],
  });
  assert.equal(readded.length, 10);
});

test('perl example: five versions on ubuntu, two more on macos', () => {
  const combinations = expandMatrix({
    os: ['ubuntu-latest'],
    perl: ['5.16', '5.20', '5.26', '5.30', 'latest'],
    include: [
      { os: 'macos-latest', perl: '5.26' },
      { os: 'macos-latest', perl: 'latest' },
    ],
  });
  assert.equal(combinations.length, 7);
});

test('values may be objects; include and exclude compare them deeply', () => {
  const combinations = expandMatrix({
    target: [
      { os: 'linux', arch: 'x64' },
      { os: 'linux', arch: 'arm64' },
    ],
    exclude: [{ target: { os: 'linux', arch: 'arm64' } }],
    include: [{ target: { os: 'linux', arch: 'x64' }, docker: true }],
  });
  assert.deepEqual(combinations, [{ target: { os: 'linux', arch: 'x64' }, docker: true }]);
});

test('no matrix is one job with an empty matrix', () => {
  assert.deepEqual(expandMatrix({}), [{}]);
});

test('invalid matrices throw MatrixError naming the place', () => {
  const cases: [Record<string, unknown>, RegExp, (string | number)[]][] = [
    [{ node: [] }, /at least one value/, ['node']],
    [{ node: 'x' }, /a list of values/, ['node']],
    [
      { node: [1], exclude: [{ nod: 1 }] },
      /`nod`, which is not a matrix variable/,
      ['exclude', 0, 'nod'],
    ],
    [{ node: [1], exclude: [{ node: 1 }] }, /removes every combination/, []],
    [{ node: [1], include: ['x'] }, /expected an object/, ['include', 0]],
    [{ a: range(16), b: range(17) }, /more than 256 combinations/, []],
    [{ a: range(256), include: [{ a: 'extra' }] }, /more than 256 combinations/, []],
  ];
  for (const [spec, message, path] of cases) {
    assert.throws(
      () => expandMatrix(spec),
      (error: unknown) => {
        assert.ok(error instanceof MatrixError, String(error));
        assert.match(error.message, message);
        assert.deepEqual(error.path, path);
        return true;
      },
    );
  }
  assert.equal(expandMatrix({ a: range(16), b: range(16) }).length, 256);
});

test('resolveMatrix evaluates a whole-matrix expression or the values of variables', () => {
  const context = {
    needs: { plan: { outputs: { versions: '[18, 20]', matrix: '{"os": ["a"]}' } } },
  };
  assert.deepEqual(resolveMatrix('${{ fromJSON(needs.plan.outputs.matrix) }}', context), {
    os: ['a'],
  });
  assert.deepEqual(
    expandMatrix(
      resolveMatrix(
        { node: '${{ fromJSON(needs.plan.outputs.versions) }}', os: ['linux'] },
        context,
      ),
    ),
    [
      { node: 18, os: 'linux' },
      { node: 20, os: 'linux' },
    ],
  );
  assert.throws(() => resolveMatrix("${{ 'text' }}", context), MatrixError);
});

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
