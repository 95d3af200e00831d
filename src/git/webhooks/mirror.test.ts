import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ValveError } from '../../errors.js';
import { commitFiles, initBareRepo, resolveRef, runGit } from '../plumbing.js';
import { mirrorCommit } from './mirror.js';

const dir = mkdtempSync(join(tmpdir(), 'valve-mirror-'));
const author = { name: 'alice', email: 'alice@example.com' };
const credentials = { username: 'valve-bot', password: 'hunter2-not-in-any-file' };
const basic = Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64');

/**
 * A smart-HTTP git server: the real `git http-backend` as CGI behind Basic auth, serving the
 * repositories under `dir/served`. Requests for a repository named `hang.git` are held open
 * until the test ends, to abort a fetch mid-flight.
 */
const served = join(dir, 'served');
const seenAuthorizations: string[] = [];
const held: ServerResponse[] = [];
let onHeld: (() => void) | null = null;
const server = createServer((request, response) => {
  seenAuthorizations.push(request.headers.authorization ?? '');
  if (request.headers.authorization !== `Basic ${basic}`) {
    response.writeHead(401, { 'www-authenticate': 'Basic realm="test"' }).end();
    return;
  }
  if (request.url?.startsWith('/hang.git/')) {
    held.push(response);
    onHeld?.();
    return;
  }
  serveGit(request, response);
});
let serverUrl = '';

before(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  serverUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  for (const response of held) response.destroy();
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

function serveGit(request: IncomingMessage, response: ServerResponse): void {
  const url = new URL(request.url ?? '/', 'http://localhost');
  const child = spawn('git', ['http-backend'], {
    env: {
      PATH: process.env.PATH,
      GIT_PROJECT_ROOT: served,
      GIT_HTTP_EXPORT_ALL: '1',
      PATH_INFO: url.pathname,
      QUERY_STRING: url.search.slice(1),
      REQUEST_METHOD: request.method ?? 'GET',
      CONTENT_TYPE: request.headers['content-type'] ?? '',
      GIT_PROTOCOL: String(request.headers['git-protocol'] ?? ''),
      HTTP_CONTENT_ENCODING: String(request.headers['content-encoding'] ?? ''),
    },
  });
  const chunks: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  child.on('close', () => {
    const output = Buffer.concat(chunks);
    const end = output.indexOf('\r\n\r\n');
    const head = output.subarray(0, end).toString();
    let status = 200;
    const headers: Record<string, string> = {};
    for (const line of head.split('\r\n')) {
      const [name = '', ...rest] = line.split(':');
      if (name.toLowerCase() === 'status') status = Number.parseInt(rest.join(':'), 10);
      else if (name) headers[name] = rest.join(':').trim();
    }
    response.writeHead(status, headers).end(output.subarray(end + 4));
  });
  request.pipe(child.stdin);
}

async function upstreamRepo(name: string): Promise<string> {
  const gitDir = join(served, `${name}.git`);
  await initBareRepo(gitDir);
  return gitDir;
}

const commitOn = (gitDir: string, branch: string, content: string, parent?: string | null) =>
  commitFiles(gitDir, {
    branch,
    changes: { 'app.txt': { content } },
    message: content,
    author,
    ...(parent !== undefined ? { expectedParent: parent } : {}),
  });

async function valveRepo(name: string): Promise<string> {
  const gitDir = join(dir, 'valve', `${name}.git`);
  await initBareRepo(gitDir);
  return gitDir;
}

function filesUnder(path: string): string[] {
  return readdirSync(path).flatMap((entry) => {
    const full = join(path, entry);
    return statSync(full).isDirectory() ? filesUnder(full) : [full];
  });
}

const isValveError = (code: string, pattern?: RegExp) => (error: unknown) => {
  assert.ok(error instanceof ValveError, String(error));
  assert.equal(error.code, code, error.message);
  if (pattern) assert.match(error.message, pattern);
  return true;
};

test('mirrors the pushed commit over smart HTTP with credentials kept off disk', async () => {
  const upstream = await upstreamRepo('shop');
  const first = await commitOn(upstream, 'main', 'v1');
  const gitDir = await valveRepo('shop');
  seenAuthorizations.length = 0;

  await mirrorCommit({
    gitDir,
    url: `${serverUrl}/shop.git`,
    ref: 'refs/heads/main',
    commit: first,
    credentials,
  });

  assert.equal(await resolveRef(gitDir, 'refs/heads/main'), first);
  assert.ok(seenAuthorizations.includes(`Basic ${basic}`));
  for (const file of filesUnder(gitDir)) {
    const content = readFileSync(file);
    assert.equal(content.includes(credentials.password), false, `password found in ${file}`);
    assert.equal(content.includes(basic), false, `auth header found in ${file}`);
  }
  // Nothing but the branch: no FETCH_HEAD, no remote-tracking or temporary refs.
  const refs = (await runGit(gitDir, ['for-each-ref', '--format=%(refname)'])).stdout.toString();
  assert.deepEqual(refs.trim().split('\n'), ['refs/heads/main']);
});

test('sets the branch to the named commit even when the remote has moved on', async () => {
  const upstream = await upstreamRepo('moved');
  const pushed = await commitOn(upstream, 'main', 'pushed');
  const later = await commitOn(upstream, 'main', 'later');
  const gitDir = await valveRepo('moved');

  await mirrorCommit({
    gitDir,
    url: `${serverUrl}/moved.git`,
    ref: 'refs/heads/main',
    commit: pushed,
    credentials,
  });

  assert.equal(await resolveRef(gitDir, 'refs/heads/main'), pushed);
  assert.notEqual(pushed, later);
});

test('fetches a commit by id when the branch was force-pushed away from it', async () => {
  const upstream = await upstreamRepo('forced');
  const root = await commitOn(upstream, 'main', 'root');
  const pushed = await commitOn(upstream, 'main', 'pushed');
  // Force-push: main goes back to root plus a different commit; `pushed` is now unreachable.
  await runGit(upstream, ['update-ref', 'refs/heads/main', root]);
  await commitOn(upstream, 'main', 'rewritten');
  const gitDir = await valveRepo('forced');

  await mirrorCommit({
    gitDir,
    url: `${serverUrl}/forced.git`,
    ref: 'refs/heads/main',
    commit: pushed,
    credentials,
  });

  assert.equal(await resolveRef(gitDir, 'refs/heads/main'), pushed);
});

test('a commit the remote does not have is refused and the branch is left alone', async () => {
  const upstream = await upstreamRepo('wrong');
  await commitOn(upstream, 'main', 'real');
  const gitDir = await valveRepo('wrong');
  const before = await commitOn(gitDir, 'main', 'already here');
  const missing = 'e'.repeat(40);

  await assert.rejects(
    mirrorCommit({
      gitDir,
      url: `${serverUrl}/wrong.git`,
      ref: 'refs/heads/main',
      commit: missing,
      credentials,
    }),
    isValveError('NOT_FOUND', new RegExp(`commit ${missing} was not found`)),
  );
  assert.equal(await resolveRef(gitDir, 'refs/heads/main'), before);
});

test('wrong credentials fail without prompting and without echoing the password', async () => {
  const upstream = await upstreamRepo('private');
  const commit = await commitOn(upstream, 'main', 'secret');
  const gitDir = await valveRepo('private');
  const wrong = { username: 'valve-bot', password: 'not-the-password-42' };

  await assert.rejects(
    mirrorCommit({
      gitDir,
      url: `${serverUrl}/private.git`,
      ref: 'refs/heads/main',
      commit,
      credentials: wrong,
    }),
    (error: unknown) => {
      isValveError('GIT_FAILED')(error);
      const message = (error as Error).message;
      assert.equal(message.includes(wrong.password), false, message);
      assert.match(message, /private\.git/);
      return true;
    },
  );
  assert.equal(await resolveRef(gitDir, 'refs/heads/main'), null);
});

test('mirrors an annotated tag over file:// when file URLs are allowed', async () => {
  const upstream = await upstreamRepo('tagged');
  const commit = await commitOn(upstream, 'main', 'release');
  await runGit(upstream, ['tag', '-a', '-m', 'v1', 'v1', commit], {
    env: { GIT_COMMITTER_NAME: 'alice', GIT_COMMITTER_EMAIL: 'alice@example.com' },
  });
  const tagObject = (await runGit(upstream, ['rev-parse', 'refs/tags/v1'])).stdout
    .toString()
    .trim();
  const gitDir = await valveRepo('tagged');
  const url = `file://${upstream}`;

  await assert.rejects(
    mirrorCommit({ gitDir, url, ref: 'refs/tags/v1', commit: tagObject }),
    isValveError('INPUT_INVALID', /got a file URL/),
  );
  await mirrorCommit({ gitDir, url, ref: 'refs/tags/v1', commit: tagObject, allowFileUrls: true });

  const mirrored = (await runGit(gitDir, ['rev-parse', 'refs/tags/v1'])).stdout.toString().trim();
  assert.equal(mirrored, tagObject);
  assert.equal(await resolveRef(gitDir, 'refs/tags/v1'), commit);
});

test('a branch cannot be pointed at a tag object', async () => {
  const upstream = await upstreamRepo('notcommit');
  const commit = await commitOn(upstream, 'main', 'x');
  await runGit(upstream, ['tag', '-a', '-m', 'v2', 'v2', commit], {
    env: { GIT_COMMITTER_NAME: 'alice', GIT_COMMITTER_EMAIL: 'alice@example.com' },
  });
  const tagObject = (await runGit(upstream, ['rev-parse', 'refs/tags/v2'])).stdout
    .toString()
    .trim();
  const gitDir = await valveRepo('notcommit');
  await runGit(gitDir, ['fetch', '--quiet', `file://${upstream}`, 'refs/tags/v2']);

  await assert.rejects(
    mirrorCommit({
      gitDir,
      url: `file://${upstream}`,
      ref: 'refs/heads/main',
      commit: tagObject,
      allowFileUrls: true,
    }),
    isValveError('INPUT_INVALID', /is a tag, not a commit/),
  );
  assert.equal(await resolveRef(gitDir, 'refs/heads/main'), null);
});

test('with expectedOld, a branch that moved meanwhile is not overwritten', async () => {
  const upstream = await upstreamRepo('cas');
  const one = await commitOn(upstream, 'main', 'one');
  const two = await commitOn(upstream, 'main', 'two');
  const gitDir = await valveRepo('cas');
  const url = `${serverUrl}/cas.git`;

  await mirrorCommit({
    gitDir,
    url,
    ref: 'refs/heads/main',
    commit: one,
    credentials,
    expectedOld: null,
  });
  await assert.rejects(
    mirrorCommit({
      gitDir,
      url,
      ref: 'refs/heads/main',
      commit: two,
      credentials,
      expectedOld: null,
    }),
    isValveError('CONFLICT'),
  );
  assert.equal(await resolveRef(gitDir, 'refs/heads/main'), one);
  await mirrorCommit({
    gitDir,
    url,
    ref: 'refs/heads/main',
    commit: two,
    credentials,
    expectedOld: one,
  });
  assert.equal(await resolveRef(gitDir, 'refs/heads/main'), two);
});

test('bad input is refused before git runs', async () => {
  const gitDir = await valveRepo('input');
  const commit = 'a'.repeat(40);
  const cases: [Parameters<typeof mirrorCommit>[0], RegExp][] = [
    [
      { gitDir, url: 'https://bot:token@example.com/r.git', ref: 'refs/heads/main', commit },
      /credentials/,
    ],
    [{ gitDir, url: 'ext::sh -c touch% /tmp/pwned', ref: 'refs/heads/main', commit }, /url:/],
    [{ gitDir, url: 'git@example.com:r.git', ref: 'refs/heads/main', commit }, /url:/],
    [{ gitDir, url: 'https://example.com/r.git', ref: 'refs/heads/a..b', commit }, /ref:/],
    [{ gitDir, url: 'https://example.com/r.git', ref: 'refs/notes/x', commit }, /ref:/],
    [
      { gitDir, url: 'https://example.com/r.git', ref: 'refs/heads/main', commit: 'HEAD' },
      /commit:/,
    ],
  ];
  for (const [options, message] of cases) {
    await assert.rejects(mirrorCommit(options), isValveError('INPUT_INVALID', message));
  }
});

test('aborting the signal stops a fetch in flight', async () => {
  const gitDir = await valveRepo('abort');
  const controller = new AbortController();
  onHeld = () => controller.abort();
  try {
    await assert.rejects(
      mirrorCommit({
        gitDir,
        url: `${serverUrl}/hang.git`,
        ref: 'refs/heads/main',
        commit: 'b'.repeat(40),
        credentials,
        signal: controller.signal,
      }),
      { name: 'AbortError' },
    );
  } finally {
    onHeld = null;
  }
  assert.equal(await resolveRef(gitDir, 'refs/heads/main'), null);
});
