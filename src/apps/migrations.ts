import type { NamedMigrations } from '../store/index.js';

export interface AppTables {
  apps: {
    id: string;
    team_id: string;
    team: string;
    name: string;
    template: string;
    default_branch: string;
    created_by: string;
    created_at: string;
    /** 1 when anyone, signed in or not, may pull the app's image repository. */
    image_public: number;
  };
}

export const appMigrations: NamedMigrations = {
  '2026112305_apps_init': {
    async up(db) {
      await db.schema
        .createTable('apps')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('team_id', 'text', (c) => c.notNull())
        .addColumn('team', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('template', 'text', (c) => c.notNull())
        .addColumn('default_branch', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addUniqueConstraint('apps_team_name', ['team', 'name'])
        .execute();
    },
  },
  '2026112340_apps_image_public': {
    async up(db) {
      await db.schema
        .alterTable('apps')
        .addColumn('image_public', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
    },
  },
};
