/** No SQL of the service is run through MikroORM's `connection.execute`, which formats values into the SQL text (issue #10). */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith(".ts") ? [path] : [];
  });
}

describe("SQL values are bound by the driver", () => {
  it("no source file runs SQL through MikroORM's connection.execute (Database.execute binds)", () => {
    const offenders: string[] = [];
    for (const file of sources("src")) {
      readFileSync(file, "utf8")
        .split("\n")
        .forEach((line, i) => {
          const code = line.replace(/\/\/.*$/, "");
          if (/^\s*\*/.test(code)) return; // doc comments may name it
          if (/\b(conn|connection|em)\s*\.\s*execute\s*\(/.test(code) || /getConnection\(\)\s*\.\s*execute\s*\(/.test(code)) offenders.push(`${file}:${i + 1}: ${line.trim()}`);
        });
    }
    expect(offenders).toEqual([]);
  });
});
