import { rm } from 'node:fs/promises';
import type { Kysely } from 'kysely';
import { z } from 'zod';
import { slug, type AuthService, type Principal, type Role } from '../auth/index.js';
import { APP_SPEC_FILE, parseAppSpec, type DeployService } from '../deploy/index.js';
import { ValveError, notFound } from '../errors.js';
import type { GitService } from '../git/index.js';
import { newId } from '../ids.js';
import { now } from '../store/index.js';
import type { AppTables } from './migrations.js';
import { renderTemplate } from './templates.js';

export type AppRecord = AppTables['apps'];

export const createAppInput = z.object({
  team: slug,
  name: slug,
  template: z.string().min(1),
});

export const updateAppInput = z.strictObject({ imagePublic: z.boolean().optional() });

export const sourceRepoPath = (team: string, app: string) => `${team}/${app}.git`;

/** Apps: a source repo, a deploy repo and an image repository, owned by one team. */
export class AppService {
  constructor(
    private readonly db: Kysely<AppTables>,
    private readonly auth: AuthService,
    private readonly git: GitService,
    private readonly deploy: DeployService,
  ) {}

  async create(principal: Principal, input: z.infer<typeof createAppInput>): Promise<AppRecord> {
    const team = await this.auth.teamByName(input.team);
    if (!team) throw notFound(`team ${input.team}`);
    await this.auth.requireRole(principal, team.id, 'developer');
    if (await this.find(input.team, input.name)) {
      throw new ValveError('APP_EXISTS', `app ${input.team}/${input.name} already exists`);
    }
    const files = renderTemplate(input.template, { app: input.name, team: input.team });
    const spec = parseAppSpec(String(files[APP_SPEC_FILE]?.content ?? ''), APP_SPEC_FILE);
    const author = { name: principal.username, email: `${principal.username}@valve` };
    try {
      await this.git.createRepo(sourceRepoPath(input.team, input.name));
      await this.git.commit(
        sourceRepoPath(input.team, input.name),
        {
          branch: 'main',
          changes: files,
          message: `create ${input.name} from template ${input.template}`,
          author,
        },
        principal.username,
      );
      await this.deploy.createEnvironments(
        input.team,
        input.name,
        Object.keys(spec.environments),
        principal.username,
      );
      const record: AppRecord = {
        id: newId('app'),
        team_id: team.id,
        team: input.team,
        name: input.name,
        template: input.template,
        default_branch: 'main',
        created_by: principal.username,
        created_at: now(),
        image_public: 0,
      };
      await this.db.insertInto('apps').values(record).execute();
      return record;
    } catch (error) {
      // Leave nothing half-made behind: the name stays free to try again.
      await rm(this.git.pathOf(sourceRepoPath(input.team, input.name)), {
        recursive: true,
        force: true,
      });
      await rm(this.git.pathOf(`${input.team}/${input.name}.deploy.git`), {
        recursive: true,
        force: true,
      });
      throw error;
    }
  }

  all(): Promise<AppRecord[]> {
    return this.db.selectFrom('apps').selectAll().orderBy('team').orderBy('name').execute();
  }

  find(team: string, name: string): Promise<AppRecord | undefined> {
    return this.db
      .selectFrom('apps')
      .selectAll()
      .where('team', '=', team)
      .where('name', '=', name)
      .executeTakeFirst();
  }

  /** The app if the principal may see it with at least `minimum` role; 404 otherwise (names do not leak). */
  async access(
    principal: Principal,
    team: string,
    name: string,
    minimum: Role = 'viewer',
  ): Promise<AppRecord> {
    const app = await this.find(team, name);
    if (!app) throw notFound(`app ${team}/${name}`);
    await this.auth.requireRole(principal, app.team_id, minimum).catch((error: unknown) => {
      if (error instanceof ValveError && error.code === 'NOT_FOUND')
        throw notFound(`app ${team}/${name}`);
      throw error;
    });
    return app;
  }

  /** Changes an app's settings; team admins only. */
  async update(
    principal: Principal,
    team: string,
    name: string,
    change: z.infer<typeof updateAppInput>,
  ): Promise<AppRecord> {
    const app = await this.access(principal, team, name, 'admin');
    if (change.imagePublic === undefined) return app;
    const imagePublic = change.imagePublic ? 1 : 0;
    await this.db
      .updateTable('apps')
      .set({ image_public: imagePublic })
      .where('id', '=', app.id)
      .execute();
    return { ...app, image_public: imagePublic };
  }

  async listFor(principal: Principal): Promise<AppRecord[]> {
    const teams = (await this.auth.memberships(principal.userId)).filter(
      (m) => m.status === 'active',
    );
    if (teams.length === 0) return [];
    return this.db
      .selectFrom('apps')
      .selectAll()
      .where(
        'team_id',
        'in',
        teams.map((t) => t.teamId),
      )
      .orderBy('team')
      .orderBy('name')
      .execute();
  }

  /** The app whose source repo lives at `repoPath` (e.g. "team/app.git"), if any. */
  async bySourceRepo(repoPath: string): Promise<AppRecord | undefined> {
    const match = /^([^/]+)\/([^/]+)\.git$/.exec(repoPath);
    if (!match || match[2]!.endsWith('.deploy')) return undefined;
    return this.find(match[1]!, match[2]!);
  }

  /**
   * Git access: the source repo and the deploy repo of an app, for active team members;
   * writes need the developer role. Unknown and foreign repos look the same (404).
   */
  async authorizeGit(
    principal: Principal | null,
    team: string,
    repo: string,
    access: 'read' | 'write',
  ): Promise<string> {
    if (!principal) throw new ValveError('AUTH_REQUIRED');
    const name = repo.endsWith('.deploy') ? repo.slice(0, -'.deploy'.length) : repo;
    await this.access(principal, team, name, access === 'write' ? 'developer' : 'viewer');
    return `${team}/${repo}.git`;
  }

  /**
   * Registry access for repository `team/app`: pull for members, push for developers; pull for
   * anyone, signed in or not, when the app's image is public.
   */
  async authorizeImage(principal: Principal | null, repository: string, action: 'pull' | 'push') {
    const [team = '', name = '', ...rest] = repository.split('/');
    if (action === 'pull' && rest.length === 0 && (await this.find(team, name))?.image_public) {
      return 'ok' as const;
    }
    if (!principal) return 'unauthenticated' as const;
    if (rest.length) return 'denied' as const;
    try {
      await this.access(principal, team, name, action === 'push' ? 'developer' : 'viewer');
      return 'ok' as const;
    } catch {
      return 'denied' as const;
    }
  }
}
