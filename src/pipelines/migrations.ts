import type { NamedMigrations } from '../store/index.js';

export interface PipelineTables extends EngineTables {
  runs: {
    id: string;
    app_id: string;
    team: string;
    app: string;
    number: number;
    workflow: string;
    status: string;
    commit_sha: string;
    ref: string;
    commit_message: string;
    actor: string;
    trigger: string;
    error: string | null;
    /** Set by the second migration. */
    rerun_of: number | null;
    inputs: string;
    summary: string | null;
    concurrency_group: string | null;
    created_at: string;
    started_at: string | null;
    finished_at: string | null;
  };
  run_steps: {
    run_id: string;
    job_id: string;
    job_name: string;
    step_index: number;
    name: string;
    /** `run` (a script) or the built-in step used, e.g. `valve/deploy@v1`. */
    kind: string;
    status: string;
    exit_code: number | null;
    started_at: string | null;
    finished_at: string | null;
  };
}

export interface EngineTables {
  run_jobs: {
    run_id: string;
    job_key: string;
    job_id: string;
    name: string;
    /** JSON of the matrix values, or null. */
    matrix: string | null;
    /** JSON array of the job keys it needs. */
    needs: string;
    runs_on: string;
    status: string;
    position: number;
    environment: string | null;
    outputs: string;
    started_at: string | null;
    finished_at: string | null;
  };
  approvals: {
    run_id: string;
    job_key: string;
    environment: string;
    team: string;
    status: string;
    requested_at: string;
    expires_at: string;
    decided_by: string | null;
    decided_at: string | null;
    comment: string | null;
  };
  secrets: {
    id: string;
    team: string;
    /** '' for a team secret. */
    app: string;
    name: string;
    sealed: string;
    updated_at: string;
    updated_by: string;
  };
  schedules: { app_id: string; workflow: string; cron: string; last_fired_at: string };
  external_repos: {
    app_id: string;
    provider: string;
    url: string;
    username: string | null;
    sealed_secret: string;
    sealed_password: string | null;
  };
}

export const pipelineMigrations: NamedMigrations = {
  '2026112320_pipelines_init': {
    async up(db) {
      await db.schema
        .createTable('runs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('app_id', 'text', (c) => c.notNull())
        .addColumn('team', 'text', (c) => c.notNull())
        .addColumn('app', 'text', (c) => c.notNull())
        .addColumn('number', 'integer', (c) => c.notNull())
        .addColumn('workflow', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('commit_sha', 'text', (c) => c.notNull())
        .addColumn('ref', 'text', (c) => c.notNull())
        .addColumn('commit_message', 'text', (c) => c.notNull())
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('trigger', 'text', (c) => c.notNull())
        .addColumn('error', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('started_at', 'text')
        .addColumn('finished_at', 'text')
        .addUniqueConstraint('runs_app_number', ['app_id', 'number'])
        .execute();
      await db.schema.createIndex('runs_by_status').on('runs').column('status').execute();
      await db.schema
        .createTable('run_steps')
        .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id'))
        .addColumn('job_id', 'text', (c) => c.notNull())
        .addColumn('job_name', 'text', (c) => c.notNull())
        .addColumn('step_index', 'integer', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('exit_code', 'integer')
        .addColumn('started_at', 'text')
        .addColumn('finished_at', 'text')
        .addPrimaryKeyConstraint('run_steps_pk', ['run_id', 'job_id', 'step_index'])
        .execute();
    },
  },
  '2026112330_pipelines_engine': {
    async up(db) {
      await db.schema.alterTable('runs').addColumn('rerun_of', 'integer').execute();
      await db.schema
        .alterTable('runs')
        .addColumn('inputs', 'text', (c) => c.notNull().defaultTo('{}'))
        .execute();
      await db.schema.alterTable('runs').addColumn('summary', 'text').execute();
      await db.schema.alterTable('runs').addColumn('concurrency_group', 'text').execute();
      await db.schema
        .createTable('run_jobs')
        .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id'))
        .addColumn('job_key', 'text', (c) => c.notNull())
        .addColumn('job_id', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('matrix', 'text')
        .addColumn('needs', 'text', (c) => c.notNull())
        .addColumn('runs_on', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('position', 'integer', (c) => c.notNull())
        .addColumn('environment', 'text')
        .addColumn('outputs', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('started_at', 'text')
        .addColumn('finished_at', 'text')
        .addPrimaryKeyConstraint('run_jobs_pk', ['run_id', 'job_key'])
        .execute();
      await db.schema
        .createTable('approvals')
        .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id'))
        .addColumn('job_key', 'text', (c) => c.notNull())
        .addColumn('environment', 'text', (c) => c.notNull())
        .addColumn('team', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('requested_at', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .addColumn('decided_by', 'text')
        .addColumn('decided_at', 'text')
        .addColumn('comment', 'text')
        .addPrimaryKeyConstraint('approvals_pk', ['run_id', 'job_key'])
        .execute();
      await db.schema
        .createTable('secrets')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('team', 'text', (c) => c.notNull())
        .addColumn('app', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('sealed', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addColumn('updated_by', 'text', (c) => c.notNull())
        .addUniqueConstraint('secrets_scope_name', ['team', 'app', 'name'])
        .execute();
      await db.schema
        .createTable('schedules')
        .addColumn('app_id', 'text', (c) => c.notNull())
        .addColumn('workflow', 'text', (c) => c.notNull())
        .addColumn('cron', 'text', (c) => c.notNull())
        .addColumn('last_fired_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('schedules_pk', ['app_id', 'workflow', 'cron'])
        .execute();
      await db.schema
        .createTable('external_repos')
        .addColumn('app_id', 'text', (c) => c.primaryKey())
        .addColumn('provider', 'text', (c) => c.notNull())
        .addColumn('url', 'text', (c) => c.notNull())
        .addColumn('username', 'text')
        .addColumn('sealed_secret', 'text', (c) => c.notNull())
        .addColumn('sealed_password', 'text')
        .execute();
    },
  },
};
