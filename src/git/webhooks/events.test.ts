import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ValveError } from '../../errors.js';
import { parsePushEvent, type PushHook } from './events.js';

const fixture = (name: string): Record<string, unknown> =>
  JSON.parse(readFileSync(new URL(`./testdata/${name}.json`, import.meta.url), 'utf8'));

const invalid = (pattern: RegExp) => (error: unknown) => {
  assert.ok(error instanceof ValveError, String(error));
  assert.equal(error.code, 'INPUT_INVALID');
  assert.match(error.message, pattern);
  return true;
};

test('a GitHub push', () => {
  const hook = parsePushEvent('github', { 'x-github-event': 'push' }, fixture('github-push'));
  assert.deepEqual(hook, {
    provider: 'github',
    event: 'push',
    ref: 'refs/heads/main',
    before: '6113728f27ae82c7b1a177c8d03f9e96e0adf246',
    after: '0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c',
    repoUrl: 'https://github.com/acme/shop.git',
    pusher: 'alice',
    deleted: false,
    commits: [
      {
        id: '0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c',
        message: 'Update README.md',
        added: [],
        modified: ['README.md'],
        removed: [],
      },
    ],
  } satisfies PushHook);
});

test('a GitHub branch deletion is a push with deleted set', () => {
  const hook = parsePushEvent('github', { 'X-GitHub-Event': 'push' }, fixture('github-delete'));
  assert.ok('event' in hook);
  assert.equal(hook.deleted, true);
  assert.equal(hook.after, '0'.repeat(40));
  assert.deepEqual(hook.commits, []);
});

test('GitHub pings and other events are ignored with a reason', () => {
  const ping = parsePushEvent('github', { 'x-github-event': 'ping' }, fixture('github-ping'));
  assert.ok('ignored' in ping);
  assert.match(ping.ignored, /^ping: /);
  const issues = parsePushEvent('github', { 'x-github-event': 'issues' }, {});
  assert.ok('ignored' in issues);
  assert.match(issues.ignored, /^issues: only push events/);
});

test('a GitLab push', () => {
  const hook = parsePushEvent('gitlab', { 'x-gitlab-event': 'Push Hook' }, fixture('gitlab-push'));
  assert.ok('event' in hook);
  assert.equal(hook.provider, 'gitlab');
  assert.equal(hook.ref, 'refs/heads/main');
  assert.equal(hook.after, 'da1560886d4f094c3e6c9ef40349f7d38b5d27d7');
  assert.equal(hook.repoUrl, 'https://gitlab.example.com/mike/diaspora.git');
  assert.equal(hook.pusher, 'jsmith');
  assert.equal(hook.deleted, false);
  assert.deepEqual(
    hook.commits.map((commit) => [commit.id.slice(0, 7), commit.added, commit.removed]),
    [
      ['b6568db', ['CHANGELOG'], []],
      ['da15608', [], ['docs/old.md']],
    ],
  );
});

test('a GitLab tag push is a push to refs/tags', () => {
  const hook = parsePushEvent(
    'gitlab',
    { 'x-gitlab-event': 'Tag Push Hook' },
    fixture('gitlab-tag-push'),
  );
  assert.ok('event' in hook);
  assert.equal(hook.ref, 'refs/tags/v1.0.0');
  assert.equal(hook.before, '0'.repeat(40));
  assert.equal(hook.deleted, false);
});

test('other GitLab events, system hooks included, are ignored', () => {
  for (const event of ['Merge Request Hook', 'System Hook', 'Pipeline Hook']) {
    const result = parsePushEvent('gitlab', { 'x-gitlab-event': event }, {});
    assert.ok('ignored' in result, event);
  }
});

test('a Gitea push, read from X-Gitea-Event', () => {
  const hook = parsePushEvent(
    'gitea',
    // Gitea also sends GitHub's and Gogs' headers; X-Gitea-Event is the one read.
    { 'x-gitea-event': 'push', 'x-github-event': 'push', 'x-gogs-event': 'push' },
    fixture('gitea-push'),
  );
  assert.ok('event' in hook);
  assert.equal(hook.provider, 'gitea');
  assert.equal(hook.ref, 'refs/heads/develop');
  assert.equal(hook.repoUrl, 'https://gitea.example.com/gitea/webhooks.git');
  assert.equal(hook.pusher, 'gitea');
  assert.deepEqual(hook.commits[0]?.added, ['hooks.md']);
  assert.equal(hook.commits[0]?.message, 'Webhooks Yay!\n');
});

test('an older Gitea payload without file lists gives empty lists', () => {
  const payload = fixture('gitea-push');
  const commits = payload.commits as Record<string, unknown>[];
  payload.commits = commits.map(({ added: _a, removed: _r, modified: _m, ...rest }) => rest);
  const hook = parsePushEvent('gitea', { 'x-gitea-event': 'push' }, payload);
  assert.ok('event' in hook);
  assert.deepEqual(hook.commits[0], {
    id: 'bffeb74224043ba2feb48d137756c8a9331c449a',
    message: 'Webhooks Yay!\n',
    added: [],
    modified: [],
    removed: [],
  });
});

test('a missing event header is invalid input naming the header', () => {
  assert.throws(
    () => parsePushEvent('gitlab', {}, fixture('gitlab-push')),
    invalid(/^X-Gitlab-Event: expected a header/),
  );
  assert.throws(
    () => parsePushEvent('gitea', { 'x-github-event': 'push' }, fixture('gitea-push')),
    invalid(/^X-Gitea-Event: /),
  );
});

test('a push payload without what Valve needs names each field', () => {
  const payload = fixture('github-push');
  delete (payload.repository as Record<string, unknown>).clone_url;
  payload.after = 'HEAD';
  (payload.commits as Record<string, unknown>[])[0]!.modified = 'README.md';
  assert.throws(
    () => parsePushEvent('github', { 'x-github-event': 'push' }, payload),
    invalid(
      /^after: expected a 40- or 64-digit hex object id; repository\.clone_url: expected an http\(s\) clone URL; commits\.0\.modified: expected array, received string$/,
    ),
  );
});

test('an SSH clone URL is not accepted as the repository URL', () => {
  const payload = fixture('gitlab-push');
  (payload.project as Record<string, unknown>).git_http_url = 'git@gitlab.example.com:a/b.git';
  assert.throws(
    () => parsePushEvent('gitlab', { 'x-gitlab-event': 'Push Hook' }, payload),
    invalid(/^project\.git_http_url: expected an http\(s\) clone URL$/),
  );
});

test('a body that is not an object is invalid', () => {
  assert.throws(
    () => parsePushEvent('gitea', { 'x-gitea-event': 'push' }, 'ref=refs/heads/main'),
    invalid(/^\(body\): expected object, received string$/),
  );
});
