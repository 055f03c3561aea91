/** A private PostgreSQL database per test file, on the machine's server; absent PostgreSQL makes the tests skip. */
import { randomBytes } from "node:crypto";
import type { EntitySchema } from "@mikro-orm/core";
import { openDatabase, type Database } from "../../src/persistence/index.js";
import { tempSqlitePath } from "./tmp.js";
import { tcpProxy, type TcpProxy } from "./tcp-proxy.js";

/** The server's admin URL (trust auth on this machine; NERVE_TEST_PG overrides it). */
export const PG_ADMIN_URL = process.env.NERVE_TEST_PG ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** Runs `sql` as the admin user; throws what the server or the connection said. */
export async function pgAdmin(sql: string): Promise<void> {
  const db = await openDatabase({ url: PG_ADMIN_URL, entities: [] });
  try {
    await db.execute(sql, [], "run");
  } finally {
    await db.close();
  }
}

/** Whether a PostgreSQL server answers at {@link PG_ADMIN_URL}. */
export const postgresAvailable = (): Promise<boolean> => pgAdmin("select 1").then(
  () => true,
  () => false,
);

/** A fresh database: its URL, and `drop` to remove it. */
export interface TempPostgres {
  url: string;
  /** Drops the database; throws when it cannot (a database left behind is worth a failed teardown). */
  drop(): Promise<void>;
}

/** Creates an empty database with a random name (dropped with `drop`). */
export async function tempPostgres(): Promise<TempPostgres> {
  const name = `nerve_test_${randomBytes(6).toString("hex")}`;
  await pgAdmin(`create database ${name}`).catch((err: unknown) => {
    throw new Error(`could not create database ${name} at ${PG_ADMIN_URL}`, { cause: err });
  });
  return {
    url: PG_ADMIN_URL.replace(/\/[^/]*$/, `/${name}`),
    drop: () =>
      pgAdmin(`drop database if exists ${name} with (force)`).catch((err: unknown) => {
        throw new Error(`could not drop database ${name} at ${PG_ADMIN_URL}`, { cause: err });
      }),
  };
}

/** A fresh database reached through a TCP proxy (outages a test switches on and off): `url` goes through `proxy`. */
export async function proxiedPostgres(): Promise<{ pg: TempPostgres; proxy: TcpProxy; url: string }> {
  const pg = await tempPostgres();
  const url = new URL(pg.url);
  const proxy = await tcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
  url.host = `127.0.0.1:${proxy.port}`;
  return { pg, proxy, url: url.toString() };
}

/**
 * A PostgreSQL StartupMessage without its `options` parameter (the `-c name=value` settings), as PgBouncer
 * in transaction mode sends it on with `ignore_startup_parameters = options`; any other message as it is.
 */
export function withoutStartupOptions(message: Buffer): Buffer {
  if (message.length < 8 || message.readInt32BE(4) !== 196608) return message;
  const fields = message.subarray(8).toString("utf8").split("\0");
  const kept: string[] = [];
  for (let i = 0; i + 1 < fields.length && fields[i] !== ""; i += 2) if (fields[i] !== "options") kept.push(fields[i]!, fields[i + 1]!);
  const body = Buffer.from(`${kept.join("\0")}\0\0`, "utf8");
  const out = Buffer.alloc(8 + body.length);
  out.writeInt32BE(out.length, 0);
  out.writeInt32BE(196608, 4);
  body.copy(out, 8);
  return out;
}

/**
 * SQLite and PostgreSQL for `describe.each`: `[name, whether it runs here, open]`. `open()` opens a fresh
 * database with `entities` (a temporary SQLite file; a temporary PostgreSQL database, run only where
 * `pgAvailable`) and pushes its closing and removal onto `cleanups`, which the file runs in reverse after
 * each test.
 */
export function bothDatabases(cleanups: (() => Promise<void>)[], pgAvailable: boolean, entities?: EntitySchema<any>[]) {
  return [
    ["SQLite", true, async (): Promise<Database> => {
      const tmp = await tempSqlitePath();
      const db = await openDatabase({ url: `sqlite:${tmp.path}`, entities });
      cleanups.push(tmp.cleanup, () => db.close());
      return db;
    }],
    ["PostgreSQL", pgAvailable, async (): Promise<Database> => {
      const pg = await tempPostgres();
      cleanups.push(() => pg.drop());
      const db = await openDatabase({ url: pg.url, entities });
      cleanups.push(() => db.close());
      return db;
    }],
  ] as const;
}
