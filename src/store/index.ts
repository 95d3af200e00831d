/**
 * store: the database every subsystem keeps its tables in (SQLite in WAL mode by default).
 * Each subsystem owns its tables and ships its own migrations; the store only runs them,
 * in order of their names, each inside a transaction, and remembers which ran.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import {
  Kysely,
  SqliteDialect,
  sql,
  type Migration,
  type MigrationProvider,
  Migrator,
} from 'kysely';

// The store hands out an untyped handle; each subsystem narrows it to its own table types.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyDb = Kysely<any>;

export interface Store {
  db: AnyDb;
  close(): Promise<void>;
}

/** A migration named `<yyyymmddnn>_<subsystem>_<what>`, so names sort in creation order. */
export type NamedMigrations = Record<string, Migration>;

export async function openStore(file: string, migrations: NamedMigrations[]): Promise<Store> {
  mkdirSync(dirname(file), { recursive: true });
  const sqlite = new Database(file);
  sqlite.pragma('journal_mode = WAL');
  // FULL: a write is on disk before it is acknowledged (principle 2: nothing lost).
  sqlite.pragma('synchronous = FULL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  const db: AnyDb = new Kysely({ dialect: new SqliteDialect({ database: sqlite }) });

  const all: NamedMigrations = Object.assign({}, ...migrations);
  const provider: MigrationProvider = { getMigrations: async () => all };
  const { error, results } = await new Migrator({ db, provider }).migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    await db.destroy();
    throw new Error(`store: migration ${failed} failed: ${String(error)}`);
  }
  return { db, close: () => db.destroy() };
}

export const now = () => new Date().toISOString();
export { sql };
