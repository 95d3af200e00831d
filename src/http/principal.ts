import type { FastifyRequest } from 'fastify';
import type { AuthService, Principal } from '../auth/service.js';
import { ValveError } from '../errors.js';
import { isJwtShaped } from '../registry/index.js';

export const SESSION_COOKIE = 'valve_session';

const cache = new WeakMap<FastifyRequest, Promise<Principal | null>>();

/**
 * Who is asking: a console session cookie, `Authorization: Bearer <token>`, or
 * `Authorization: Basic user:token` (what git, podman and skopeo send). A Bearer registry token
 * (a JWT from the registry's token endpoint, checked by the registry routes alone) is no API
 * credential: it makes nobody here.
 */
export function principalOf(auth: AuthService, request: FastifyRequest): Promise<Principal | null> {
  let found = cache.get(request);
  if (!found) {
    found = resolvePrincipal(auth, request);
    cache.set(request, found);
  }
  return found;
}

export async function requirePrincipal(
  auth: AuthService,
  request: FastifyRequest,
): Promise<Principal> {
  const principal = await principalOf(auth, request);
  if (!principal) throw new ValveError('AUTH_REQUIRED');
  return principal;
}

async function resolvePrincipal(
  auth: AuthService,
  request: FastifyRequest,
): Promise<Principal | null> {
  const header = request.headers.authorization;
  if (header) {
    const [scheme, value = ''] = header.split(' ', 2);
    if (scheme?.toLowerCase() === 'bearer') {
      if (isJwtShaped(value.trim())) return null;
      const principal = await auth.principalFromToken(value.trim());
      if (!principal) throw new ValveError('AUTH_BAD_CREDENTIALS');
      return principal;
    }
    if (scheme?.toLowerCase() === 'basic') {
      const decoded = Buffer.from(value.trim(), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      const username = decoded.slice(0, colon);
      const secret = decoded.slice(colon + 1);
      const principal = colon > 0 ? await auth.principalFromToken(secret, username) : null;
      if (!principal) throw new ValveError('AUTH_BAD_CREDENTIALS');
      return principal;
    }
  }
  const cookie = readCookie(request.headers.cookie, SESSION_COOKIE);
  return cookie ? auth.principalFromSession(cookie) : null;
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name)
      return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return undefined;
}
