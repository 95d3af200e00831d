import type { NamedMigrations } from '../store/index.js';

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
};
