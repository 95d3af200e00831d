import { createHash, randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { ValveError, forbidden, notFound } from '../errors.js';
import { newId } from '../ids.js';
import { now } from '../store/index.js';
import type { AuthTables } from './migrations.js';
import { hashPassword, verifyPassword } from './passwords.js';

/** Roles inside a team, weakest first. `admin` manages members; `developer` pushes and deploys. */
export const roles = ['viewer', 'developer', 'admin'] as const;
export type Role = (typeof roles)[number];

export interface Principal {
  userId: string;
  username: string;
  via: 'session' | 'token';
}

export interface TeamMembership {
  teamId: string;
  team: string;
  role: Role;
  status: 'active' | 'pending';
}

const SESSION_DAYS = 14;
const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

/** How precisely `api_tokens.last_used_at` is kept (see principalFromToken). */
const TOKEN_USE_RESOLUTION_MS = 60_000;

export class AuthService {
  /** When each token's use was last written, so busy clients do not write on every request. */
  private readonly tokenUseRecorded = new Map<string, number>();

  constructor(private readonly db: Kysely<AuthTables>) {}

  /**
   * Creates a user. The team is created (user becomes its admin) when it does not exist;
   * joining an existing team leaves the membership pending until a team admin approves it.
   */
  async signup(input: { username: string; password: string; team: string }) {
    const taken = await this.db
      .selectFrom('users')
      .select('id')
      .where('username', '=', input.username)
      .executeTakeFirst();
    if (taken) throw new ValveError('AUTH_USERNAME_TAKEN', `username "${input.username}" is taken`);
    const passwordHash = await hashPassword(input.password);
    return this.db.transaction().execute(async (tx) => {
      const userId = newId('usr');
      await tx
        .insertInto('users')
        .values({
          id: userId,
          username: input.username,
          password_hash: passwordHash,
          created_at: now(),
        })
        .execute();
      const existing = await tx
        .selectFrom('teams')
        .select('id')
        .where('name', '=', input.team)
        .executeTakeFirst();
      const teamId = existing?.id ?? newId('team');
      if (!existing) {
        await tx
          .insertInto('teams')
          .values({ id: teamId, name: input.team, created_at: now() })
          .execute();
      }
      const membership = {
        team_id: teamId,
        user_id: userId,
        role: existing ? 'developer' : 'admin',
        status: existing ? 'pending' : 'active',
        created_at: now(),
      };
      await tx.insertInto('memberships').values(membership).execute();
      return { userId, teamId, role: membership.role as Role, status: membership.status };
    });
  }

  async checkPassword(username: string, password: string): Promise<Principal> {
    const user = await this.db
      .selectFrom('users')
      .selectAll()
      .where('username', '=', username)
      .executeTakeFirst();
    // Hash even for unknown users so response time does not reveal which usernames exist.
    const ok = await verifyPassword(password, user?.password_hash ?? (await dummyHash()));
    if (!user || !ok) throw new ValveError('AUTH_BAD_CREDENTIALS');
    return { userId: user.id, username: user.username, via: 'session' };
  }

  async createSession(userId: string): Promise<{ sessionId: string; expiresAt: string }> {
    const sessionId = randomBytes(32).toString('base64url');
    const expiresAt = new Date(Date.now() + SESSION_DAYS * 86_400_000).toISOString();
    await this.db
      .insertInto('sessions')
      .values({
        id_hash: sha256(sessionId),
        user_id: userId,
        created_at: now(),
        expires_at: expiresAt,
      })
      .execute();
    return { sessionId, expiresAt };
  }

  async deleteSession(sessionId: string): Promise<void> {
    await this.db.deleteFrom('sessions').where('id_hash', '=', sha256(sessionId)).execute();
  }

  async principalFromSession(sessionId: string): Promise<Principal | null> {
    const row = await this.db
      .selectFrom('sessions')
      .innerJoin('users', 'users.id', 'sessions.user_id')
      .select(['users.id', 'users.username', 'sessions.expires_at'])
      .where('sessions.id_hash', '=', sha256(sessionId))
      .executeTakeFirst();
    if (!row || row.expires_at < now()) return null;
    return { userId: row.id, username: row.username, via: 'session' };
  }

  /** API tokens are shown once; only their hash is stored. */
  async createToken(userId: string, name: string): Promise<{ id: string; token: string }> {
    const token = `vlv_${randomBytes(24).toString('base64url')}`;
    const id = newId('tok');
    await this.db
      .insertInto('api_tokens')
      .values({
        id,
        user_id: userId,
        name,
        token_hash: sha256(token),
        created_at: now(),
        last_used_at: null,
      })
      .execute();
    return { id, token };
  }

  async listTokens(userId: string) {
    return this.db
      .selectFrom('api_tokens')
      .select(['id', 'name', 'created_at', 'last_used_at'])
      .where('user_id', '=', userId)
      .orderBy('created_at')
      .execute();
  }

  async deleteToken(userId: string, tokenId: string): Promise<void> {
    const result = await this.db
      .deleteFrom('api_tokens')
      .where('id', '=', tokenId)
      .where('user_id', '=', userId)
      .executeTakeFirst();
    if (Number(result.numDeletedRows) === 0) throw notFound(`token ${tokenId}`);
  }

  async principalFromToken(token: string, username?: string): Promise<Principal | null> {
    const row = await this.db
      .selectFrom('api_tokens')
      .innerJoin('users', 'users.id', 'api_tokens.user_id')
      .select(['users.id', 'users.username', 'api_tokens.id as token_id'])
      .where('api_tokens.token_hash', '=', sha256(token))
      .executeTakeFirst();
    if (!row) return null;
    // With Basic auth the username must match the token's owner, as on GitHub and GitLab.
    if (username !== undefined && username !== row.username) return null;
    // At most one write a minute per token: with `synchronous = FULL` every write is an fsync,
    // and git or a registry client sends the token with every request.
    const last = this.tokenUseRecorded.get(row.token_id) ?? 0;
    if (Date.now() - last >= TOKEN_USE_RESOLUTION_MS) {
      this.tokenUseRecorded.set(row.token_id, Date.now());
      await this.db
        .updateTable('api_tokens')
        .set({ last_used_at: now() })
        .where('id', '=', row.token_id)
        .execute();
    }
    return { userId: row.id, username: row.username, via: 'token' };
  }

  async memberships(userId: string): Promise<TeamMembership[]> {
    const rows = await this.db
      .selectFrom('memberships')
      .innerJoin('teams', 'teams.id', 'memberships.team_id')
      .select(['teams.id', 'teams.name', 'memberships.role', 'memberships.status'])
      .where('memberships.user_id', '=', userId)
      .orderBy('teams.name')
      .execute();
    return rows.map((r) => ({
      teamId: r.id,
      team: r.name,
      role: r.role as Role,
      status: r.status as TeamMembership['status'],
    }));
  }

  async teamByName(name: string): Promise<{ id: string; name: string } | undefined> {
    return this.db
      .selectFrom('teams')
      .select(['id', 'name'])
      .where('name', '=', name)
      .executeTakeFirst();
  }

  /** Whether the user is an active member of the team named `team` (false when there is none). */
  async isMember(principal: Principal, team: string): Promise<boolean> {
    const found = await this.teamByName(team);
    return found ? (await this.roleIn(principal.userId, found.id)) !== null : false;
  }

  /** The user's active role in the team, or null when the user is not an active member. */
  async roleIn(userId: string, teamId: string): Promise<Role | null> {
    const row = await this.db
      .selectFrom('memberships')
      .select(['role', 'status'])
      .where('user_id', '=', userId)
      .where('team_id', '=', teamId)
      .executeTakeFirst();
    return row && row.status === 'active' ? (row.role as Role) : null;
  }

  /** Throws unless the user is an active member of the team with at least `minimum` role. */
  async requireRole(principal: Principal, teamId: string, minimum: Role): Promise<Role> {
    const role = await this.roleIn(principal.userId, teamId);
    if (role === null) throw notFound('team');
    if (roles.indexOf(role) < roles.indexOf(minimum)) {
      throw forbidden(`this needs the ${minimum} role in the team; you are ${role}`);
    }
    return role;
  }

  async teamMembers(teamId: string) {
    return this.db
      .selectFrom('memberships')
      .innerJoin('users', 'users.id', 'memberships.user_id')
      .select([
        'users.username',
        'memberships.role',
        'memberships.status',
        'memberships.created_at',
      ])
      .where('memberships.team_id', '=', teamId)
      .orderBy('users.username')
      .execute();
  }

  async setMembership(
    teamId: string,
    username: string,
    change: { role?: Role; status?: 'active' },
  ) {
    const user = await this.db
      .selectFrom('users')
      .select('id')
      .where('username', '=', username)
      .executeTakeFirst();
    if (!user) throw notFound(`user ${username}`);
    const result = await this.db
      .updateTable('memberships')
      .set(change)
      .where('team_id', '=', teamId)
      .where('user_id', '=', user.id)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) throw notFound(`membership of ${username}`);
  }
}

let dummy: Promise<string> | undefined;
const dummyHash = () => (dummy ??= hashPassword(randomBytes(16).toString('hex')));
