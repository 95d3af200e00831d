import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import { forbidden, notFound } from '../errors.js';
import { parseInput } from '../http/errors.js';
import { SESSION_COOKIE, readCookie, requirePrincipal } from '../http/principal.js';
import { roles, type AuthService } from './service.js';

// Lowercase names: they become parts of git URLs and OCI repository names.
export const slug = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9-]{0,38}$/,
    'expected 1-39 lowercase letters, digits or dashes, starting with a letter or digit',
  );

const signupBody = z.object({
  username: slug,
  password: z.string().min(8, 'expected at least 8 characters').max(200),
  team: slug,
});
const loginBody = z.object({
  username: z.string().min(1),
  password: z.string().min(1),
  tokenName: z.string().min(1).max(100).optional(),
});
const tokenBody = z.object({ name: z.string().min(1).max(100) });
const memberBody = z.object({
  role: z.enum(roles).optional(),
  status: z.literal('active').optional(),
});

function setSessionCookie(reply: FastifyReply, sessionId: string, expiresAt: string) {
  reply.header(
    'Set-Cookie',
    `${SESSION_COOKIE}=${encodeURIComponent(sessionId)}; Path=/; HttpOnly; SameSite=Lax; Expires=${new Date(expiresAt).toUTCString()}`,
  );
}

export function authRoutes(auth: AuthService) {
  return async function (app: FastifyInstance) {
    app.post('/api/signup', async (request, reply) => {
      const body = parseInput(signupBody, request.body);
      const created = await auth.signup(body);
      const session = await auth.createSession(created.userId);
      setSessionCookie(reply, session.sessionId, session.expiresAt);
      return reply.status(201).send({
        user: { username: body.username },
        membership: { team: body.team, role: created.role, status: created.status },
      });
    });

    app.post('/api/login', async (request, reply) => {
      const body = parseInput(loginBody, request.body);
      const principal = await auth.checkPassword(body.username, body.password);
      const session = await auth.createSession(principal.userId);
      setSessionCookie(reply, session.sessionId, session.expiresAt);
      const token = body.tokenName
        ? (await auth.createToken(principal.userId, body.tokenName)).token
        : undefined;
      return { user: { username: principal.username }, token };
    });

    app.post('/api/logout', async (request, reply) => {
      const sessionId = readCookie(request.headers.cookie, SESSION_COOKIE);
      if (sessionId) await auth.deleteSession(sessionId);
      reply.header('Set-Cookie', `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0`);
      return reply.status(204).send();
    });

    app.get('/api/me', async (request) => {
      const principal = await requirePrincipal(auth, request);
      const teams = await auth.memberships(principal.userId);
      return {
        username: principal.username,
        teams: teams.map((t) => ({ team: t.team, role: t.role, status: t.status })),
      };
    });

    app.post('/api/tokens', async (request, reply) => {
      const principal = await requirePrincipal(auth, request);
      const body = parseInput(tokenBody, request.body);
      return reply.status(201).send(await auth.createToken(principal.userId, body.name));
    });

    app.get('/api/tokens', async (request) => {
      const principal = await requirePrincipal(auth, request);
      return auth.listTokens(principal.userId);
    });

    app.delete<{ Params: { id: string } }>('/api/tokens/:id', async (request, reply) => {
      const principal = await requirePrincipal(auth, request);
      await auth.deleteToken(principal.userId, request.params.id);
      return reply.status(204).send();
    });

    app.get<{ Params: { team: string } }>('/api/teams/:team/members', async (request) => {
      const principal = await requirePrincipal(auth, request);
      const team = await auth.teamByName(request.params.team);
      if (!team) throw notFound(`team ${request.params.team}`);
      await auth.requireRole(principal, team.id, 'viewer');
      return auth.teamMembers(team.id);
    });

    app.post<{ Params: { team: string; username: string } }>(
      '/api/teams/:team/members/:username',
      async (request, reply) => {
        const principal = await requirePrincipal(auth, request);
        const team = await auth.teamByName(request.params.team);
        if (!team) throw notFound(`team ${request.params.team}`);
        const role = await auth.requireRole(principal, team.id, 'viewer');
        if (role !== 'admin') throw forbidden('only a team admin can change memberships');
        await auth.setMembership(
          team.id,
          request.params.username,
          parseInput(memberBody, request.body),
        );
        return reply.status(204).send();
      },
    );
  };
}
