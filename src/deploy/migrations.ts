import { sql, type NamedMigrations } from '../store/index.js';

export interface DeployTables {
  deploy_environments: {
    app_key: string;
    name: string;
    /** Deploy-repo commit last applied to the target. */
    applied_commit: string | null;
    applied_image: string | null;
    /** Hash of the workload last applied, to tell a real change from a re-read. */
    applied_hash: string | null;
    source_commit: string | null;
    deployed_at: string | null;
    /** Last reconcile error (with file and line) or progress note. */
    message: string | null;
    created_at: string;
    /** Synced | OutOfSync | Unknown, as the last reconcile found it. */
    sync_status: string;
    /** Deploy-repo commit that last changed the environment's folder (the desired revision). */
    desired_commit: string | null;
    /** Newest deploy-repo commit the environment was found Synced at (waitForSync). */
    synced_head: string | null;
    /** Target the workload was last applied to (`local`, or a team's registered target). */
    target: string | null;
    /** JSON: the manifests as last applied, the baseline of the diff for local and podman. */
    applied_resources: string | null;
    /** JSON: the sync policy last read (automated, selfHeal, prune). */
    sync_policy: string | null;
    /** Hash of a desired state whose sync failed: not retried automatically, only by a new commit or a manual sync. */
    failed_hash: string | null;
    /** JSON string[]: drift last recorded, so one drift is recorded once. */
    drift: string | null;
  };
  deploy_syncs: {
    id: string;
    app_key: string;
    environment: string;
    commit: string;
    status: string;
    message: string | null;
    started_at: string;
    finished_at: string | null;
    source_commit: string | null;
    image: string | null;
    /** auto | manual | deploy | promote | rollback | self-heal | prune */
    trigger: string | null;
    /** Who: a username, or `valve` for the reconciler itself. */
    actor: string | null;
  };
  deploy_targets: {
    team: string;
    name: string;
    kind: string;
    /** JSON; secrets in it (a Kubernetes token) are sealed with the secret cipher. */
    config: string;
    created_by: string;
    created_at: string;
  };
  deploy_approvals: {
    id: string;
    app_key: string;
    /** deploy | promote | rollback */
    kind: string;
    environment: string;
    /** The change waiting: image, source commit, from environment, rollback commit (JSON). */
    request: string;
    summary: string;
    team: string;
    status: string;
    requested_by: string;
    requested_at: string;
    expires_at: string;
    decided_by: string | null;
    decided_at: string | null;
    comment: string | null;
    /** The deploy-repo commit made once approved. */
    commit: string | null;
  };
}

export const deployMigrations: NamedMigrations = {
  '2026112310_deploy_init': {
    async up(db) {
      await db.schema
        .createTable('deploy_environments')
        .addColumn('app_key', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('applied_commit', 'text')
        .addColumn('applied_image', 'text')
        .addColumn('applied_hash', 'text')
        .addColumn('source_commit', 'text')
        .addColumn('deployed_at', 'text')
        .addColumn('message', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('deploy_environments_pk', ['app_key', 'name'])
        .execute();
      await db.schema
        .createTable('deploy_syncs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('app_key', 'text', (c) => c.notNull())
        .addColumn('environment', 'text', (c) => c.notNull())
        .addColumn('commit', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('message', 'text')
        .addColumn('started_at', 'text', (c) => c.notNull())
        .addColumn('finished_at', 'text')
        .execute();
      await db.schema
        .createIndex('deploy_syncs_by_env')
        .on('deploy_syncs')
        .columns(['app_key', 'environment', 'started_at'])
        .execute();
    },
  },
  '2026112350_deploy_reconciler': {
    async up(db) {
      const columns: [string, 'text'][] = [
        ['desired_commit', 'text'],
        ['synced_head', 'text'],
        ['target', 'text'],
        ['applied_resources', 'text'],
        ['sync_policy', 'text'],
        ['failed_hash', 'text'],
        ['drift', 'text'],
      ];
      await db.schema
        .alterTable('deploy_environments')
        .addColumn('sync_status', 'text', (c) => c.notNull().defaultTo('Unknown'))
        .execute();
      for (const [name, type] of columns)
        await db.schema.alterTable('deploy_environments').addColumn(name, type).execute();
      for (const name of ['source_commit', 'image', 'trigger', 'actor'])
        await db.schema.alterTable('deploy_syncs').addColumn(name, 'text').execute();
      await db.schema
        .createIndex('deploy_syncs_by_commit')
        .on('deploy_syncs')
        .columns(['app_key', 'environment', 'commit'])
        .execute();
      await db.schema
        .createTable('deploy_targets')
        .addColumn('team', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('config', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('deploy_targets_pk', ['team', 'name'])
        .execute();
      await db.schema
        .createTable('deploy_approvals')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('app_key', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('environment', 'text', (c) => c.notNull())
        .addColumn('request', 'text', (c) => c.notNull())
        .addColumn('summary', 'text', (c) => c.notNull())
        .addColumn('team', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('requested_by', 'text', (c) => c.notNull())
        .addColumn('requested_at', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .addColumn('decided_by', 'text')
        .addColumn('decided_at', 'text')
        .addColumn('comment', 'text')
        .addColumn('commit', 'text')
        .execute();
      await db.schema
        .createIndex('deploy_approvals_by_app')
        .on('deploy_approvals')
        .columns(['app_key', 'requested_at'])
        .execute();
    },
  },
  '2026112401_deploy_one_pending_approval': {
    async up(db) {
      // Only the newest pending request of an environment stays pending, as requests do now.
      await sql`
        update deploy_approvals set status = 'superseded', decided_at = ${new Date().toISOString()}
        where status = 'pending' and exists (
          select 1 from deploy_approvals newer
          where newer.app_key = deploy_approvals.app_key
            and newer.environment = deploy_approvals.environment
            and newer.status = 'pending'
            and (newer.requested_at > deploy_approvals.requested_at
              or (newer.requested_at = deploy_approvals.requested_at
                and newer.id > deploy_approvals.id)))`.execute(db);
      await sql`
        create unique index deploy_approvals_one_pending
        on deploy_approvals (app_key, environment) where status = 'pending'`.execute(db);
    },
  },
};
