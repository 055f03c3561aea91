/** Opens the database through MikroORM (SQLite in WAL mode, or PostgreSQL), creating and migrating the schema. */
import { MikroORM, type EntitySchema, type Options } from "@mikro-orm/core";
import type { AbstractSqlConnection } from "@mikro-orm/knex";
import { writeSideEntities } from "./entities.js";

/** Which database and how. */
export interface DatabaseOptions {
  /** `sqlite:<path>` or a `postgres://` URL. */
  url: string;
  /** More entity schemas (read models) to create beside the write side. */
  entities?: EntitySchema<any>[];
  /** SQLite `synchronous` pragma: FULL also survives power loss, NORMAL survives a process crash. */
  sqliteSynchronous?: "FULL" | "NORMAL";
}

/**
 * Full-text tables are SQLite virtual tables made by hand and named `*_fts`; they and their FTS5 shadow
 * tables are hidden from MikroORM, whose schema reader fails on their untyped columns (and which must
 * never alter them). Every opener of the database needs this, so it is not an option.
 */
export const HAND_MADE_TABLES: RegExp[] = [/_fts(_(data|idx|content|docsize|config))?$/];

/** An open database: the ORM, its raw connection, and its dialect. */
export interface Database {
  readonly orm: MikroORM;
  readonly connection: AbstractSqlConnection;
  readonly dialect: "sqlite" | "postgresql";
  close(): Promise<void>;
}

/** Opens the database and brings its schema up to date (MikroORM's safe schema update: nothing is dropped). */
export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  let orm: MikroORM;
  let dialect: Database["dialect"];
  const entities = [...writeSideEntities(opts.url.startsWith("sqlite:") ? "sqlite" : "postgresql"), ...(opts.entities ?? [])];
  const common: Partial<Options> = { entities, schemaGenerator: { skipTables: HAND_MADE_TABLES }, discovery: { warnWhenNoEntities: false }, allowGlobalContext: true, debug: false };
  if (opts.url.startsWith("sqlite:")) {
    const { SqliteDriver } = await import("@mikro-orm/sqlite");
    dialect = "sqlite";
    orm = await MikroORM.init({ ...common, driver: SqliteDriver, dbName: opts.url.slice("sqlite:".length) } as Options);
    const conn = orm.em.getConnection() as AbstractSqlConnection;
    await conn.execute("pragma journal_mode = WAL");
    await conn.execute(`pragma synchronous = ${opts.sqliteSynchronous ?? "FULL"}`);
    await conn.execute("pragma busy_timeout = 5000");
  } else if (/^postgres(ql)?:\/\//.test(opts.url)) {
    const { PostgreSqlDriver } = await import("@mikro-orm/postgresql");
    dialect = "postgresql";
    orm = await MikroORM.init({ ...common, driver: PostgreSqlDriver, clientUrl: opts.url } as Options);
  } else {
    throw new Error(`NERVE_DB must be sqlite:<path> or a postgres:// URL, got ${opts.url}`);
  }
  await orm.schema.updateSchema({ safe: true });
  const connection = orm.em.getConnection() as AbstractSqlConnection;
  return { orm, connection, dialect, close: () => orm.close(true) };
}
