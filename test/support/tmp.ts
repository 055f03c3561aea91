import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A fresh SQLite file path in its own temp dir; cleanup removes the dir. */
export async function tempSqlitePath(): Promise<{ path: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "nerve-sqlite-"));
  return {
    path: join(dir, "nerve.sqlite"),
    // The whole dir goes, so SQLite's -wal/-shm side files are removed too.
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
