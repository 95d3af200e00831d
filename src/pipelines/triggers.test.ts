import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ValveError } from '../errors.js';
import {
  cronError,
  cronSchedules,
  filterPatternError,
  globMatch,
  matchesFilterList,
  matchesPush,
  resolveDispatchInputs,
  type Triggers,
} from './triggers.js';

describe('filter patterns (GitHub cheat sheet)', () => {
  // [pattern, matches, does not match]
  const branches: [string, string[], string[]][] = [
    ['feature/*', ['feature/my-branch', 'feature/your-branch'], ['feature/a/b', 'feature']],
    [
      'feature/**',
      ['feature/beta-a/my-branch', 'feature/your-branch', 'feature/mona/the/octocat'],
      ['features/x'],
    ],
    ['main', ['main'], ['mainline', 'x/main']],
    ['*', ['main', 'releases'], ['releases/1']],
    ['**', ['all/the/branches', 'every/tag'], []],
    ['*feature', ['mona-feature', 'feature', 'ver-10-feature'], ['feature-x']],
    ['v2*', ['v2', 'v2.0', 'v2.9'], ['v1', 'v2/x']],
    ['v[12].[0-9]+.[0-9]+', ['v1.10.1', 'v2.0.0'], ['v3.0.0', 'v1.x.1', 'v1.0']],
  ];
  const paths: [string, string[], string[]][] = [
    ['*', ['README.md', 'server.rb'], ['docs/a.md']],
    ['*.jsx?', ['page.js', 'page.jsx'], ['page.jsxx', 'a/page.js']],
    ['**', ['all/the/files.md'], []],
    ['*.js', ['app.js', 'index.js'], ['js/index.js']],
    ['**.js', ['index.js', 'js/index.js', 'src/js/app.js'], ['index.ts']],
    ['docs/*', ['docs/README.md', 'docs/file.txt'], ['docs/mona/octocat.txt']],
    ['docs/**', ['docs/README.md', 'docs/mona/octocat.txt'], ['README.md']],
    [
      'docs/**/*.md',
      ['docs/README.md', 'docs/mona/hello-world.md', 'docs/a/markdown/file.md'],
      ['docs/a.txt'],
    ],
    [
      '**/docs/**',
      ['docs/hello.md', 'dir/docs/my-file.txt', 'space/docs/plan/space.doc'],
      ['mydocs/a'],
    ],
    ['**/README.md', ['README.md', 'js/README.md'], ['README.mdx']],
    ['**/*src/**', ['a/src/app.js', 'my-src/code/js/app.js'], ['src.js']],
    ['**/*-post.md', ['my-post.md', 'path/their-post.md'], ['post.md']],
    [
      '**/migrate-*.sql',
      ['migrate-10909.sql', 'db/migrate-v1.0.sql', 'db/sept/migrate-v1.sql'],
      ['migrate.sql'],
    ],
    ['release\\*', ['release*'], ['release1']],
  ];
  for (const [pattern, yes, no] of [...branches, ...paths]) {
    test(pattern, () => {
      for (const value of yes)
        assert.ok(globMatch(pattern, value), `${pattern} should match ${value}`);
      for (const value of no)
        assert.ok(!globMatch(pattern, value), `${pattern} should not match ${value}`);
    });
  }

  test('lists are checked in order: ! excludes what matched before, a later pattern re-includes', () => {
    assert.ok(matchesFilterList(['*.md', '!README.md'], 'hello.md'));
    assert.ok(!matchesFilterList(['*.md', '!README.md'], 'README.md'));
    assert.ok(!matchesFilterList(['*.md', '!README.md'], 'docs/hello.md'));
    assert.ok(matchesFilterList(['*.md', '!README.md', 'README*'], 'README.md'));
    assert.ok(matchesFilterList(['*.md', '!README.md', 'README*'], 'README.doc'));
    assert.ok(!matchesFilterList(['!main'], 'main'));
  });

  test('invalid patterns are explained', () => {
    assert.equal(filterPatternError('release/**'), undefined);
    assert.equal(filterPatternError('!docs/**'), undefined);
    assert.match(filterPatternError('v[0-9')!, /never closed/);
    assert.match(filterPatternError('*+')!, /must follow a character/);
    assert.match(filterPatternError('?x')!, /must follow a character/);
    assert.match(filterPatternError('[a-Z]')!, /range `a-Z`/);
    assert.match(filterPatternError('x\\')!, /escapes nothing/);
  });
});

describe('matchesPush', () => {
  const push = (filters: NonNullable<Triggers['push']>): Triggers => ({ push: filters });
  const branch = (name: string, changedFiles: string[] | null = null) => ({
    ref: `refs/heads/${name}`,
    changedFiles,
  });
  const tag = (name: string) => ({ ref: `refs/tags/${name}`, changedFiles: ['src/a.ts'] });

  test('no filters: every branch and tag', () => {
    assert.ok(matchesPush(push({}), branch('anything')));
    assert.ok(matchesPush(push({}), tag('v1')));
    assert.ok(!matchesPush({ workflowDispatch: { inputs: {} } }, branch('main')));
    assert.ok(!matchesPush(push({}), { ref: 'refs/notes/x', changedFiles: null }));
  });

  test('only branch filters: tags never run; only tag filters: branches never run', () => {
    const branches = push({ branches: ['main', 'releases/**'] });
    assert.ok(matchesPush(branches, branch('main')));
    assert.ok(matchesPush(branches, branch('releases/1.0/fix')));
    assert.ok(!matchesPush(branches, branch('feature')));
    assert.ok(!matchesPush(branches, tag('v1')));
    const tags = push({ tags: ['v2', 'v1.*'] });
    assert.ok(matchesPush(tags, tag('v1.9')));
    assert.ok(!matchesPush(tags, tag('v3')));
    assert.ok(!matchesPush(tags, branch('main')));
    const both = push({ branches: ['main'], tags: ['v*'] });
    assert.ok(matchesPush(both, branch('main')) && matchesPush(both, tag('v1')));
  });

  test('ignore filters exclude, and keep the other kind of ref out', () => {
    const ignore = push({ branchesIgnore: ['mona/octocat', 'releases/**-alpha'] });
    assert.ok(matchesPush(ignore, branch('main')));
    assert.ok(!matchesPush(ignore, branch('mona/octocat')));
    assert.ok(!matchesPush(ignore, branch('releases/beta/3-alpha')));
    assert.ok(!matchesPush(ignore, tag('v1')));
    const tagsIgnore = push({ tagsIgnore: ['v2', 'v1.*'] });
    assert.ok(matchesPush(tagsIgnore, tag('v3')));
    assert.ok(!matchesPush(tagsIgnore, tag('v1.2')));
  });

  test('negated branch patterns', () => {
    const filters = push({ branches: ['releases/**', '!releases/**-alpha'] });
    assert.ok(matchesPush(filters, branch('releases/10')));
    assert.ok(!matchesPush(filters, branch('releases/10-alpha')));
  });

  test('paths: one changed file matching is enough; unknown changes pass', () => {
    const filters = push({ branches: ['main'], paths: ['src/**', '!src/**/*.md'] });
    assert.ok(matchesPush(filters, branch('main', ['README.md', 'src/app.ts'])));
    assert.ok(!matchesPush(filters, branch('main', ['README.md', 'src/docs/notes.md'])));
    assert.ok(!matchesPush(filters, branch('main', [])));
    assert.ok(matchesPush(filters, branch('main', null)));
    assert.ok(!matchesPush(filters, branch('dev', ['src/app.ts'])));
  });

  test('paths-ignore: runs unless every changed file is ignored', () => {
    const filters = push({ pathsIgnore: ['docs/**', '*.md'] });
    assert.ok(!matchesPush(filters, branch('main', ['docs/a.md', 'README.md'])));
    assert.ok(matchesPush(filters, branch('main', ['docs/a.md', 'src/a.ts'])));
    assert.ok(matchesPush(filters, branch('main', null)));
  });

  test('path filters are not evaluated for tags', () => {
    assert.ok(matchesPush(push({ paths: ['docs/**'] }), tag('v1')));
  });
});

test('cronSchedules and cronError: five POSIX fields in UTC, no macros', () => {
  assert.deepEqual(
    cronSchedules({ schedule: [{ cron: '30 5 * * 1,3' }, { cron: '0 0 1 JAN *' }] }),
    ['30 5 * * 1,3', '0 0 1 JAN *'],
  );
  assert.deepEqual(cronSchedules({ push: {} }), []);
  for (const valid of ['30 5 * * 1,3', '*/15 * * * *', '0 0 * JAN-MAR MON-FRI', '0 12 1-7 */2 0'])
    assert.equal(cronError(valid), undefined, valid);
  assert.match(cronError('61 * * * *')!, /61/);
  assert.match(cronError('0 0 * * * *')!, /expected 5 fields/);
  assert.match(cronError('@daily')!, /macros/);
  assert.match(cronError('0 0 L * *')!, /day of month field "L"/);
  assert.match(cronError('0 0 * * MON#2')!, /day of week/);
});

describe('resolveDispatchInputs', () => {
  const on: Triggers = {
    workflowDispatch: {
      inputs: {
        level: {
          type: 'choice',
          options: ['info', 'warning', 'debug'],
          default: 'warning',
          required: true,
        },
        dry_run: { type: 'boolean', required: false },
        replicas: { type: 'number', required: false, default: 2 },
        tag: { type: 'string', required: true },
        environment: { type: 'environment', required: false },
        note: { type: 'string', required: false },
      },
    },
  };

  test('coerces provided values by type and fills defaults', () => {
    assert.deepEqual(resolveDispatchInputs(on, { tag: 'v1', dry_run: 'TRUE', replicas: '3' }), {
      level: 'warning',
      dry_run: true,
      replicas: 3,
      tag: 'v1',
      environment: '',
      note: '',
    });
    assert.deepEqual(
      resolveDispatchInputs(on, { tag: 5, level: 'debug', dry_run: false, replicas: 0, note: '' }),
      { level: 'debug', dry_run: false, replicas: 0, tag: '5', environment: '', note: '' },
    );
  });

  const invalid: [Record<string, unknown>, RegExp][] = [
    [{}, /^inputs\.tag: expected a value: the input is required$/],
    [{ tag: '' }, /^inputs\.tag: expected a value/],
    [
      { tag: 'v1', level: 'trace' },
      /^inputs\.level: expected one of: info, warning, debug; got "trace"$/,
    ],
    [{ tag: 'v1', dry_run: 'yes' }, /^inputs\.dry_run: expected true or false, got "yes"$/],
    [{ tag: 'v1', replicas: 'many' }, /^inputs\.replicas: expected a number, got "many"$/],
    [{ tag: { a: 1 } }, /^inputs\.tag: expected a string/],
    [
      { tag: 'v1', levle: 'info' },
      /^inputs\.levle: not an input of this workflow; expected one of: level, /,
    ],
  ];
  for (const [provided, message] of invalid) {
    test(`rejects ${JSON.stringify(provided)}`, () => {
      assert.throws(
        () => resolveDispatchInputs(on, provided),
        (error: unknown) =>
          error instanceof ValveError &&
          error.code === 'INPUT_INVALID' &&
          message.test(error.message),
      );
    });
  }

  test('a workflow without workflow_dispatch takes no inputs', () => {
    assert.throws(() => resolveDispatchInputs({ push: {} }, {}), /no on\.workflow_dispatch/);
  });
});
