import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { AuthService, Principal } from '../auth/index.js';
import { forbidden, notFound } from '../errors.js';
import { parseInput } from '../http/errors.js';
import { requirePrincipal } from '../http/principal.js';
import type { Registry } from './registry.js';

export interface RegistryAdminRoutesOptions {
  registry: Registry;
  auth: AuthService;
  /**
   * Usernames of the server's admins (`VALVE_ADMINS`). Valve's roles are per team; collecting
   * garbage and granting storage concern every team, so they need an admin of the server.
   */
  admins: readonly string[];
}

const gcBody = z.object({ dryRun: z.boolean().optional() }).strict();
const quotaBody = z
  .object({ bytes: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).nullable() })
  .strict();

type TeamParams = { Params: { team: string } };

/**
 * The registry's administration over the JSON API: garbage collection (`POST
 * /api/registry/gc`) and team quotas (`GET|PUT /api/teams/:team/registry-quota`). A team's
 * members may read its usage; only server admins collect garbage and set quotas.
 */
export function registryAdminRoutes(options: RegistryAdminRoutesOptions) {
  const { registry, auth } = options;
  const admins = new Set(options.admins);
  const isAdmin = (principal: Principal) => admins.has(principal.username);

  async function requireAdmin(request: FastifyRequest, what: string): Promise<void> {
    const principal = await requirePrincipal(auth, request);
    if (!isAdmin(principal)) {
      throw forbidden(`only a server admin (listed in VALVE_ADMINS) may ${what}`);
    }
  }

  async function findTeam(team: string) {
    const found = await auth.teamByName(team);
    if (!found) throw notFound(`team ${team}`);
    return found;
  }

  return async function registryAdminPlugin(app: FastifyInstance): Promise<void> {
    app.post('/api/registry/gc', async (request) => {
      const body = parseInput(gcBody, request.body);
      await requireAdmin(request, 'collect registry garbage');
      return registry.collectGarbage({ dryRun: body.dryRun ?? false });
    });

    app.get<TeamParams>('/api/teams/:team/registry-quota', async (request) => {
      const principal = await requirePrincipal(auth, request);
      const team = await findTeam(request.params.team);
      if (!isAdmin(principal)) await auth.requireRole(principal, team.id, 'viewer');
      return registry.teamUsage(team.name);
    });

    app.put<TeamParams>('/api/teams/:team/registry-quota', async (request) => {
      const body = parseInput(quotaBody, request.body);
      await requireAdmin(request, 'set registry quotas');
      const team = await findTeam(request.params.team);
      return registry.setTeamQuota(team.name, body.bytes);
    });
  };
}
