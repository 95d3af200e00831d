/**
 * Serves the built web console (dist/web, made by `npm run build:console`): hashed assets
 * under /assets/, and index.html for `/` and for every other browser navigation that is not an
 * API, git or registry path, so the SPA's client-side routes survive a reload. The console's
 * HTML and scripts hold no data; everything it shows comes from the API, which checks sessions.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

export interface ConsoleRoutesOptions {
  /** The Vite build output: index.html and assets/. */
  distDir: string;
}

// Paths that belong to other sub-apps: an unknown one there is a real 404, never the SPA.
const reservedPrefixes = ['/api', '/git', '/v2'];

const NOT_BUILT = 'console not built: run npm run build\n';

// The bundle loads only its own scripts and styles and talks only to its own origin.
const contentSecurityPolicy = [
  "default-src 'self'",
  "img-src 'self' data:",
  "style-src 'self' 'unsafe-inline'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export function consoleRoutes(options: ConsoleRoutesOptions) {
  const distDir = resolve(options.distDir);
  const indexFile = join(distDir, 'index.html');

  return async function (app: FastifyInstance) {
    // Only assets/ is served as files (plus index.html below). Asset names carry a content
    // hash, so they can be cached for good. Files are looked up per request, so a console
    // built after the server started is served without a restart.
    await app.register(fastifyStatic, {
      root: join(distDir, 'assets'),
      prefix: '/assets/',
      decorateReply: false,
      index: false,
      dotfiles: 'deny',
      immutable: true,
      maxAge: '365d',
      suppressWarning: true,
    });

    app.get('/', (_request, reply) => sendIndex(reply));

    app.get('/*', (request, reply) => {
      if (!isConsoleNavigation(request)) return reply.callNotFound();
      return sendIndex(reply);
    });
  };

  async function sendIndex(reply: FastifyReply) {
    let html: Buffer;
    try {
      // Read on every request: it is small, and a rebuild changes the asset names it points to.
      html = await readFile(indexFile);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      return reply.status(503).type('text/plain; charset=utf-8').send(NOT_BUILT);
    }
    return reply
      .type('text/html; charset=utf-8')
      .header('Cache-Control', 'no-cache')
      .header('Content-Security-Policy', contentSecurityPolicy)
      .header('X-Content-Type-Options', 'nosniff')
      .send(html);
  }
}

/** A browser navigating to a console page: not an API, git or registry path, and asks for HTML. */
function isConsoleNavigation(request: FastifyRequest): boolean {
  const path = request.url.split('?', 1)[0] ?? '/';
  if (reservedPrefixes.some((prefix) => path === prefix || path.startsWith(prefix + '/'))) {
    return false;
  }
  return (request.headers.accept ?? '').includes('text/html');
}
