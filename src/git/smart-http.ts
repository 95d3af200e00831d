/**
 * Git over smart HTTP: Valve authenticates and authorizes the request, then hands it to the real
 * `git http-backend` as a CGI program and streams its answer back. After a push, the refs that
 * changed are published as `git.refUpdated` events.
 */
import { spawn } from 'node:child_process';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Principal } from '../auth/index.js';
import { ValveError } from '../errors.js';
import type { GitService } from './service.js';

export type GitAccess = 'read' | 'write';

export interface GitRoutesOptions {
  git: GitService;
  principalOf(request: FastifyRequest): Promise<Principal | null>;
  /** Throws a ValveError unless the principal may access the repo; returns its path under the git root. */
  authorize(
    principal: Principal | null,
    team: string,
    repo: string,
    access: GitAccess,
  ): Promise<string>;
}

const pathPattern = /^\/git\/([a-z0-9-]+)\/([a-z0-9-]+(?:\.deploy)?)\.git(\/.*)$/;

export function gitRoutes(options: GitRoutesOptions) {
  return async function (app: FastifyInstance) {
    // Request bodies (packfiles, possibly gzip-encoded) go to git untouched.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', (_request, _payload, done) => done(null));

    const handler = async (request: FastifyRequest, reply: FastifyReply) => {
      const url = new URL(request.url, 'http://localhost');
      const match = pathPattern.exec(url.pathname);
      if (!match) throw new ValveError('NOT_FOUND', 'no such repository');
      const [, team = '', repo = '', rest = ''] = match;
      const access: GitAccess =
        url.searchParams.get('service') === 'git-receive-pack' || rest === '/git-receive-pack'
          ? 'write'
          : 'read';
      let principal: Principal | null;
      try {
        principal = await options.principalOf(request);
      } catch (error) {
        // Wrong credentials: answer 401 so git asks again instead of failing obscurely.
        if (error instanceof ValveError && error.status === 401) principal = null;
        else throw error;
      }
      const repoPath = await options.authorize(principal, team, repo, access);
      const pushing = rest === '/git-receive-pack' && request.method === 'POST';
      const run = () =>
        runBackend(
          options.git.root,
          repoPath,
          rest,
          url.search.slice(1),
          request,
          reply,
          principal,
        );
      if (!pushing) return run();
      await options.git.withPushLock(repoPath, principal?.username ?? 'anonymous', run);
    };
    app.get('/git/*', handler);
    app.post('/git/*', handler);
  };
}

function runBackend(
  root: string,
  repoPath: string,
  rest: string,
  query: string,
  request: FastifyRequest,
  reply: FastifyReply,
  principal: Principal | null,
): Promise<void> {
  reply.hijack();
  const raw = reply.raw;
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      PATH_INFO: `/${repoPath}${rest}`,
      REQUEST_METHOD: request.method,
      QUERY_STRING: query,
      CONTENT_TYPE: request.headers['content-type'] ?? '',
      REMOTE_ADDR: request.ip,
      REMOTE_USER: principal?.username ?? '',
      GIT_PROTOCOL: String(request.headers['git-protocol'] ?? ''),
      HTTP_CONTENT_ENCODING: String(request.headers['content-encoding'] ?? ''),
    };
    if (request.headers['content-length']) env.CONTENT_LENGTH = request.headers['content-length'];
    const child = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let headerBuffer: Buffer | null = Buffer.alloc(0);
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on('data', (chunk: Buffer) => {
      if (headerBuffer === null) {
        raw.write(chunk);
        return;
      }
      headerBuffer = Buffer.concat([headerBuffer, chunk]);
      const end = findHeaderEnd(headerBuffer);
      if (!end) return;
      const head = headerBuffer.subarray(0, end.index).toString();
      const body = headerBuffer.subarray(end.index + end.length);
      headerBuffer = null;
      let status = 200;
      for (const line of head.split(/\r?\n/)) {
        const colon = line.indexOf(':');
        if (colon < 0) continue;
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 500;
        else raw.setHeader(name, value);
      }
      raw.writeHead(status);
      if (body.length) raw.write(body);
    });
    child.on('close', (code) => {
      if (headerBuffer !== null) {
        if (!raw.headersSent) raw.writeHead(500, { 'content-type': 'text/plain' });
        raw.write(`git http-backend failed (${code}): ${stderr}`);
      }
      raw.end();
      resolve();
    });
    child.on('error', () => {
      if (!raw.headersSent) raw.writeHead(500);
      raw.end();
      resolve();
    });
    request.raw.pipe(child.stdin);
    child.stdin.on('error', () => undefined);
  });
}

function findHeaderEnd(buffer: Buffer): { index: number; length: number } | null {
  const crlf = buffer.indexOf('\r\n\r\n');
  const lf = buffer.indexOf('\n\n');
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return { index: crlf, length: 4 };
  if (lf >= 0) return { index: lf, length: 2 };
  return null;
}
