/** A private PostgreSQL database per test file, on the machine's server; absent PostgreSQL makes the tests skip. */
import { randomBytes } from "node:crypto";
import { openDatabase } from "../../src/persistence/index.js";

/** The server's admin URL (trust auth on this machine; NERVE_TEST_PG overrides it). */
export const PG_ADMIN_URL = process.env.NERVE_TEST_PG ?? "postgres://postgres@127.0.0.1:5432/postgres";

async function admin(sql: string): Promise<boolean> {
  try {
    const db = await openDatabase({ url: PG_ADMIN_URL, entities: [] });
    try {
      await db.execute(sql, [], "run");
    } finally {
      await db.close();
    }
    return true;
  } catch {
    return false;
  }
}

/** Whether a PostgreSQL server answers at {@link PG_ADMIN_URL}. */
export const postgresAvailable = (): Promise<boolean> => admin("select 1");

/** A fresh database: its URL, and `drop` to remove it. */
export interface TempPostgres {
  url: string;
  drop(): Promise<void>;
}

/** Creates an empty database with a random name (dropped with `drop`). */
export async function tempPostgres(): Promise<TempPostgres> {
  const name = `nerve_test_${randomBytes(6).toString("hex")}`;
  if (!(await admin(`create database ${name}`))) throw new Error(`could not create database ${name} at ${PG_ADMIN_URL}`);
  return { url: PG_ADMIN_URL.replace(/\/[^/]*$/, `/${name}`), drop: async () => void (await admin(`drop database if exists ${name} with (force)`)) };
}
