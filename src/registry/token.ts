/**
 * The Docker registry token flow (distribution's spec/auth/token.md, jwt.md, scope.md): a 401
 * from `/v2/` says `Bearer realm=<token endpoint>,service=<service>,scope=<what was needed>`;
 * the client asks the token endpoint for those scopes (with Basic credentials, or none) and
 * gets a short-lived JWT granting only the actions the caller really has; it then retries with
 * `Authorization: Bearer <jwt>`. Tokens are signed with HMAC-SHA256 under a key only this
 * server knows, so the registry routes check them without asking the database.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { SignJWT, jwtVerify } from 'jose';
import { z } from 'zod';
import { ValveError } from '../errors.js';
import { validateRepositoryName } from './names.js';
import type {
  AccessDecision,
  ChallengeScope,
  RegistryAction,
  RegistryRoutesOptions,
} from './routes.js';

/** The `service` of the challenge and the `aud` of every token. */
export const REGISTRY_SERVICE = 'valve-registry';
export const REGISTRY_TOKEN_PATH = '/auth/registry/token';
const ISSUER = 'valve';
const DEFAULT_TTL_SECONDS = 300;
const KEY_FILE = 'registry-token.key';

/** One entry of a token's `access` claim, in the spec's shape. */
export interface ResourceAccess {
  type: string;
  name: string;
  actions: string[];
}

export interface RegistryTokenClaims {
  /** The username; null for an anonymous caller. */
  subject: string | null;
  access: ResourceAccess[];
  expiresAt: Date;
}

export interface IssuedToken {
  token: string;
  expiresIn: number;
  issuedAt: Date;
}

const accessClaim = z.array(
  z.object({ type: z.string(), name: z.string(), actions: z.array(z.string()) }),
);
const resourceType = /^[a-z0-9]+(?:\([a-z0-9]+\))?$/;

/**
 * `scope` query values as the spec's grammar has them: each value holds one or more
 * space-separated `type:name:action[,action]*`. The name may itself hold colons (a host with a
 * port), so the type ends at the first colon and the actions start after the last. Malformed
 * scopes are dropped: they are granted nothing, like unknown ones.
 */
export function parseScopes(values: readonly string[]): ResourceAccess[] {
  const merged = new Map<string, ResourceAccess>();
  for (const scope of values.flatMap((value) => value.split(' ')).filter(Boolean)) {
    const first = scope.indexOf(':');
    const last = scope.lastIndexOf(':');
    if (first <= 0 || last === first) continue;
    const type = scope.slice(0, first);
    const name = scope.slice(first + 1, last);
    if (!resourceType.test(type) || !name) continue;
    const actions = scope
      .slice(last + 1)
      .split(',')
      .filter(Boolean);
    const key = `${type}\0${name}`;
    const entry = merged.get(key) ?? { type, name, actions: [] };
    for (const action of actions) if (!entry.actions.includes(action)) entry.actions.push(action);
    merged.set(key, entry);
  }
  return [...merged.values()];
}

/**
 * The part of `requested` the caller may have. `can` answers for one repository action, by
 * the same rule the registry routes apply. `repository:<name>:*` needs both pull and push;
 * `registry:catalog:*` any signed-in caller. Everything else is granted nothing, which the
 * spec says is not an error; entries left with no actions are dropped.
 */
export async function grantAccess(
  requested: readonly ResourceAccess[],
  caller: {
    signedIn: boolean;
    can: (repo: string, action: RegistryAction) => Promise<boolean>;
  },
): Promise<ResourceAccess[]> {
  const granted: ResourceAccess[] = [];
  for (const { type, name, actions } of requested) {
    const allowed: string[] = [];
    if (type === 'registry' && name === 'catalog') {
      if (caller.signedIn && actions.includes('*')) allowed.push('*');
    } else if (type === 'repository' && isRepositoryName(name)) {
      const decided = new Map<RegistryAction, boolean>();
      const can = async (action: RegistryAction) => {
        if (!decided.has(action)) decided.set(action, await caller.can(name, action));
        return decided.get(action)!;
      };
      for (const action of actions) {
        const ok =
          action === 'pull' || action === 'push'
            ? await can(action)
            : action === '*' && (await can('pull')) && (await can('push'));
        if (ok) allowed.push(action);
      }
    }
    if (allowed.length > 0) granted.push({ type, name, actions: allowed });
  }
  return granted;
}

/** Does `access` allow `action` on repository `repo`? (`*` allows every action.) */
export function covers(
  access: readonly ResourceAccess[],
  repo: string,
  action: RegistryAction,
): boolean {
  return access.some(
    (entry) =>
      entry.type === 'repository' &&
      entry.name === repo &&
      (entry.actions.includes(action) || entry.actions.includes('*')),
  );
}

/**
 * The `Authorization: Bearer` value when it is shaped like a JWT (three dot-separated parts).
 * Valve's own API tokens (`vlv_` + base64url) never hold a dot, so the two cannot be mixed up.
 */
export function bearerRegistryToken(request: FastifyRequest): string | undefined {
  const [scheme, value = ''] = (request.headers.authorization ?? '').split(' ', 2);
  if (scheme?.toLowerCase() !== 'bearer') return undefined;
  const token = value.trim();
  return isJwtShaped(token) ? token : undefined;
}

/**
 * A registry token given as the Basic password (`<any name>:<jwt>`): all that podman and
 * skopeo can hand the token endpoint, so how a token this server minted for them (a deploy
 * target's pull) reaches it.
 */
export function basicRegistryToken(request: FastifyRequest): string | undefined {
  const [scheme, value = ''] = (request.headers.authorization ?? '').split(' ', 2);
  if (scheme?.toLowerCase() !== 'basic') return undefined;
  const decoded = Buffer.from(value.trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const secret = colon >= 0 ? decoded.slice(colon + 1) : '';
  return isJwtShaped(secret) ? secret : undefined;
}

export function isJwtShaped(token: string): boolean {
  return /^[\w-]+\.[\w-]+\.[\w-]+$/.test(token);
}

function isRepositoryName(name: string): boolean {
  try {
    validateRepositoryName(name);
    return true;
  } catch {
    return false;
  }
}

/** Issues and verifies registry tokens with one HMAC key. */
export class RegistryTokens {
  constructor(
    private readonly key: Uint8Array,
    readonly service = REGISTRY_SERVICE,
    readonly ttlSeconds = DEFAULT_TTL_SECONDS,
  ) {
    if (key.length < 32) throw new Error('registry token key: expected at least 32 bytes');
  }

  /**
   * The key lives in `<dataDir>/registry-token.key` (base64, mode 600), made on first start
   * like the secrets key beside it. A key of its own: deleting it only signs everyone out of
   * the registry for a few minutes, where losing `secret.key` would lose every stored secret.
   */
  static load(dataDir: string): RegistryTokens {
    const file = join(dataDir, KEY_FILE);
    if (!existsSync(file)) {
      writeFileSync(file, randomBytes(32).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
    }
    const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
    if (key.length !== 32) throw new Error(`${file}: expected 32 bytes, base64-encoded`);
    return new RegistryTokens(key);
  }

  /** A token for `access`, valid `ttlSeconds` from `now`, or until `notAfter` when sooner. */
  async issue(
    subject: string | null,
    access: ResourceAccess[],
    now = new Date(),
    notAfter?: Date,
  ): Promise<IssuedToken> {
    const issuedAt = new Date(Math.floor(now.getTime() / 1000) * 1000);
    const seconds = issuedAt.getTime() / 1000;
    const expiresIn = Math.max(
      0,
      Math.min(
        this.ttlSeconds,
        notAfter ? Math.floor(notAfter.getTime() / 1000) - seconds : this.ttlSeconds,
      ),
    );
    const jwt = new SignJWT({ access })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuer(ISSUER)
      .setAudience(this.service)
      .setIssuedAt(seconds)
      .setNotBefore(seconds)
      .setExpirationTime(seconds + expiresIn)
      .setJti(randomBytes(16).toString('base64url'));
    if (subject !== null) jwt.setSubject(subject);
    return { token: await jwt.sign(this.key), expiresIn, issuedAt };
  }

  /** The claims of a token this server signed for this service and that is in date; else null. */
  async verify(token: string, now = new Date()): Promise<RegistryTokenClaims | null> {
    try {
      const { payload } = await jwtVerify(token, this.key, {
        algorithms: ['HS256'],
        issuer: ISSUER,
        audience: this.service,
        currentDate: now,
        requiredClaims: ['exp', 'iat'],
      });
      const access = accessClaim.safeParse(payload.access);
      if (!access.success) return null;
      return {
        subject: payload.sub ?? null,
        access: access.data,
        expiresAt: new Date(payload.exp! * 1000),
      };
    } catch {
      return null;
    }
  }

  /**
   * The `WWW-Authenticate` value of a 401: the realm is absolute (clients fetch it as is), built
   * from the address the client used; the scope names what the refused request needed.
   */
  challenge(baseUrl: string, scope?: ChallengeScope): string {
    const parts = [
      `realm="${baseUrl}${REGISTRY_TOKEN_PATH}"`,
      `service="${this.service}"`,
      ...(scope
        ? [`scope="repository:${scope.repo}:${scope.action === 'push' ? 'pull,push' : 'pull'}"`]
        : []),
    ];
    return `Bearer ${parts.join(',')}`;
  }
}

type RegistryAccess = Pick<RegistryRoutesOptions, 'authorize' | 'authenticated'>;

/**
 * Registry access that also takes registry tokens: a JWT-shaped Bearer is checked here (it
 * must be valid and cover the repository and action; otherwise the client is sent back to the
 * token endpoint with a 401), anything else goes to `fallback` (Basic or Bearer API tokens).
 * A token is trusted for its short life: a membership removed meanwhile takes effect when
 * it expires.
 */
export function acceptRegistryTokens(
  tokens: RegistryTokens,
  fallback: RegistryAccess,
): RegistryAccess {
  return {
    async authenticated(request) {
      const token = bearerRegistryToken(request);
      if (token === undefined) return fallback.authenticated(request);
      return (await tokens.verify(token)) !== null;
    },
    async authorize(request, repo, action): Promise<AccessDecision> {
      const token = bearerRegistryToken(request);
      if (token === undefined) return fallback.authorize(request, repo, action);
      const claims = await tokens.verify(token);
      return claims && covers(claims.access, repo, action) ? 'ok' : 'unauthenticated';
    },
  };
}

export interface RegistryTokenRoutesOptions {
  tokens: RegistryTokens;
  /** The caller's username, null when anonymous; throws a 401 ValveError on bad credentials. */
  subject(request: FastifyRequest): Promise<string | null>;
  /** The registry routes' own rule, asked for the token request's caller. */
  authorize: RegistryRoutesOptions['authorize'];
}

/**
 * `GET /auth/registry/token?service=&scope=...`: answers `{token, access_token, expires_in,
 * issued_at}`. Anonymous callers get a token too (pull of public repositories); bad
 * credentials get 401, as the spec asks. A registry token given as the Basic password is
 * traded for one holding at most what it covers, expiring no later.
 */
export function registryTokenRoutes(options: RegistryTokenRoutesOptions) {
  const { tokens } = options;
  return async function registryTokenPlugin(app: FastifyInstance): Promise<void> {
    app.get(REGISTRY_TOKEN_PATH, async (request, reply) => {
      const query = new URL(request.url, 'http://token.invalid').searchParams;
      const service = query.get('service');
      if (service !== null && service !== tokens.service) {
        throw new ValveError(
          'INPUT_INVALID',
          `unknown service "${service}"; this server issues tokens for "${tokens.service}"`,
        );
      }
      let subject: string | null;
      let can: (repo: string, action: RegistryAction) => Promise<boolean>;
      let notAfter: Date | undefined;
      const presented = basicRegistryToken(request);
      // A password may look like a JWT too: what this server did not sign is tried as one.
      const claims = presented === undefined ? null : await tokens.verify(presented);
      if (claims) {
        subject = claims.subject;
        can = async (repo, action) => covers(claims.access, repo, action);
        notAfter = claims.expiresAt;
      } else {
        subject = await options.subject(request);
        can = async (repo, action) => (await options.authorize(request, repo, action)) === 'ok';
      }
      const access = await grantAccess(parseScopes(query.getAll('scope')), {
        signedIn: subject !== null,
        can,
      });
      const issued = await tokens.issue(subject, access, new Date(), notAfter);
      request.log.info({ subject, access }, 'registry token issued');
      return reply.header('Cache-Control', 'no-store').send({
        token: issued.token,
        access_token: issued.token,
        expires_in: issued.expiresIn,
        issued_at: issued.issuedAt.toISOString(),
      });
    });
  };
}
