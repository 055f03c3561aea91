import { describe, expect, it } from "vitest";
import { availableParallelism } from "node:os";
import { DEV_JWT_SECRET, loadConfig, loadConnectionConfig, sqliteWriterFor, unknownNerveVariables } from "../../src/config/index.js";
import { natsServers } from "../../src/config/nats-url.js";

describe("loadConfig", () => {
  it("applies the contract's defaults", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ NATS_URL: "nats://127.0.0.1:4222", NERVE_DB: "sqlite:./data/nerve.sqlite", NERVE_HTTP_PORT: 8080, LOG_LEVEL: "info", NERVE_GATEWAY_SOCKETS_PER_USER: 16 });
    expect(loadConfig({ NERVE_GATEWAY_SOCKETS_PER_USER: "4" }).NERVE_GATEWAY_SOCKETS_PER_USER).toBe(4);
    expect(c.NERVE_GATEWAY_MAX_SOCKETS).toBe(0);
    expect(loadConfig({ NERVE_GATEWAY_MAX_SOCKETS: "5000" }).NERVE_GATEWAY_MAX_SOCKETS).toBe(5000);
    expect(c.jwtSecret).toBe(DEV_JWT_SECRET);
    expect(c.jwtSecretIsDevelopment).toBe(true);
  });

  it("accepts a postgres URL and several NATS URLs", () => {
    const c = loadConfig({ NERVE_DB: "postgres://u@localhost/db", NATS_URL: "nats://a:4222,nats://b:4222" });
    expect(c.NERVE_DB).toBe("postgres://u@localhost/db");
    expect(c.NATS_URL).toContain(",");
  });

  it("refuses, naming the variable, what stopped the start later with a message naming none", () => {
    for (const url of ["not a url", "nats://127.0.0.1:99999", "http://nats:4222", "nats://a:4222,nats://b:0", ",", " "]) {
      expect(() => loadConfig({ NATS_URL: url }), url).toThrow(/NATS_URL: must (be a comma-separated list of NATS servers|name at least one)/);
    }
    // nats.js reads no credentials from the URL: it connected without them, or threw "Invalid URL".
    for (const url of ["nats://user:pw@nats:4222", "u:p@127.0.0.1:4222", "nats://a:4222,tls://token@b:4443"]) {
      expect(() => loadConfig({ NATS_URL: url }), url).toThrow(/NATS_URL: carries credentials[\s\S]*set NATS_USER and NATS_PASSWORD \(or NATS_CREDS\)/);
    }
    for (const db of ["postgres://%zz/db", "postgres://localhost", "postgres://localhost/", "postgres://h/%zz"]) {
      expect(() => loadConfig({ NERVE_DB: db }), db).toThrow(/NERVE_DB: must be a postgres:\/\/ URL naming its database/);
    }
    // SQLite's in-memory database answered commands and lost them at the next start; a blank path failed later, naming no variable.
    for (const db of ["sqlite::memory:", "sqlite: ", "sqlite:file:x?mode=memory"]) {
      expect(() => loadConfig({ NERVE_DB: db }), db).toThrow(/NERVE_DB: sqlite:<path> must name a file: an in-memory database/);
    }
    expect(() => loadConfig({ NERVE_JWT_SECRET: " ".repeat(16) })).toThrow(/NERVE_JWT_SECRET: must hold at least 16 characters other than white space/);
    for (const v of [" ", "issuer ", " aud"]) {
      expect(() => loadConfig({ NERVE_JWT_ISSUER: v, NERVE_JWT_AUDIENCE: v })).toThrow(/NERVE_JWT_ISSUER: must not be blank[\s\S]*NERVE_JWT_AUDIENCE: must not be blank/);
    }
    expect(() => loadConfig({ NATS_USER: "nerve" })).toThrow(/NATS_PASSWORD: must be set with NATS_USER/);
    expect(() => loadConfig({ NATS_PASSWORD: "pw" })).toThrow(/NATS_USER: must be set with NATS_PASSWORD/);
    expect(() => loadConnectionConfig({ NATS_USER: "nerve" })).toThrow(/NATS_PASSWORD: must be set with NATS_USER/);
  });

  it("takes every form of NATS_URL nats.js takes", () => {
    for (const url of ["127.0.0.1:4222", "localhost", "nats-1", "tls://a.b:4443", "nats://[::1]:4222", "nats://::1", " nats-1:4222 , nats-2:4222 ", "NATS://h:4222/", "nats://h:4222/x/y", "nats://a:4222,", "a,,b"]) {
      expect(loadConfig({ NATS_URL: url }).NATS_URL, url).toBe(url);
    }
    expect(natsServers("nats://a:4223, b ,[::1]:5,,::1")).toEqual([{ host: "a", port: 4223 }, { host: "b", port: 4222 }, { host: "::1", port: 5 }, { host: "::1", port: 4222 }]);
    expect(loadConfig({ NERVE_DB: "postgresql://u:p%40ss@h:5432/nerve?sslmode=require", NERVE_JWT_SECRET: "correct horse battery staple", NERVE_JWT_ISSUER: "https://idp.example.com/" }).NERVE_DB).toContain("nerve");
  });

  it("requires NERVE_JWT_SECRET in production", () => {
    expect(() => loadConfig({ NODE_ENV: "production" })).toThrow(/NERVE_JWT_SECRET: is required when NODE_ENV=production/);
    expect(loadConfig({ NODE_ENV: "production", NERVE_JWT_SECRET: "a-long-enough-secret" }).jwtSecretIsDevelopment).toBe(false);
  });

  it("refuses in production a secret anyone can read: the development one, or a template's placeholder", () => {
    for (const secret of [DEV_JWT_SECRET, "change-me-to-32-random-bytes", "CHANGE-ME-TO-32-RANDOM-BYTES", "compose-development-secret-change-me", "please_changeme_now_0123"]) {
      expect(() => loadConfig({ NODE_ENV: "production", NERVE_JWT_SECRET: secret }), secret).toThrow(/NERVE_JWT_SECRET: is a published placeholder or the development secret/);
    }
    // Outside production a placeholder is only a development setup.
    expect(loadConfig({ NERVE_JWT_SECRET: "change-me-to-32-random-bytes" }).jwtSecret).toBe("change-me-to-32-random-bytes");
  });

  it("names NERVE_* variables it does not know, with the setting each is closest to", () => {
    expect(unknownNerveVariables({ NERVE_STREAM_REPLICA: "3", NERVE_ROLE: "gateway", NERVE_DB: "sqlite:x", NERVE_SHUTDOWN_MSS: "1", NERVE_SOMETHING_ELSE_ENTIRELY: "1", PATH: "/bin" })).toEqual([
      { name: "NERVE_ROLE", didYouMean: "NERVE_ROLES" },
      { name: "NERVE_SHUTDOWN_MSS", didYouMean: "NERVE_SHUTDOWN_MS" },
      { name: "NERVE_SOMETHING_ELSE_ENTIRELY", didYouMean: undefined },
      { name: "NERVE_STREAM_REPLICA", didYouMean: "NERVE_STREAM_REPLICAS" },
    ]);
    expect(unknownNerveVariables({ NERVE_DB: "sqlite:x", NERVE_ROLES: "commands" })).toEqual([]);
  });

  it("accepts a JWKS instead of the secret in production, and turns HS256 off then", () => {
    const c = loadConfig({ NODE_ENV: "production", NERVE_JWT_JWKS: "https://idp.example/.well-known/jwks.json", NERVE_JWT_ISSUER: "https://idp.example/", NERVE_JWT_AUDIENCE: "nerve" });
    expect(c).toMatchObject({ jwtSecret: undefined, jwtSecretIsDevelopment: false, NERVE_JWT_ISSUER: "https://idp.example/", NERVE_JWT_AUDIENCE: "nerve" });
    // Beside a secret, both kinds of token are checked.
    expect(loadConfig({ NODE_ENV: "production", NERVE_JWT_JWKS: "/etc/nerve/jwks.json", NERVE_JWT_SECRET: "a-long-enough-secret" }).jwtSecret).toBe("a-long-enough-secret");
    // In development the page's sign-in still needs the development secret.
    expect(loadConfig({ NERVE_JWT_JWKS: "/etc/nerve/jwks.json", NERVE_DEV_TOKENS: "true" })).toMatchObject({ jwtSecret: DEV_JWT_SECRET, jwtSecretIsDevelopment: true });
  });

  it("takes a JWKS file path or an https:// URL, and plain http:// only on loopback", () => {
    for (const ok of ["./jwks.json", "/etc/nerve/jwks.json", "https://idp.example/jwks", "http://127.0.0.1:9000/jwks", "http://localhost/jwks", "http://[::1]:8000/jwks"]) {
      expect(loadConfig({ NERVE_JWT_JWKS: ok }).NERVE_JWT_JWKS).toBe(ok);
    }
    expect(() => loadConfig({ NERVE_JWT_JWKS: "http://idp.example/jwks" })).toThrow(/NERVE_JWT_JWKS: must use https:\/\/ \(plain http:\/\/ is accepted only on a loopback address\)/);
    expect(() => loadConfig({ NERVE_JWT_JWKS: "http://127.0.0.1.nip.io/jwks" })).toThrow(/NERVE_JWT_JWKS: must use https/);
    expect(() => loadConfig({ NERVE_JWT_JWKS: "file:///etc/jwks.json" })).toThrow(/NERVE_JWT_JWKS: must be a JWKS file path or an https:\/\/ URL, not file:\/\//);
  });

  it("refuses a whole-number setting that is set but empty or not a whole number, and a delay past Node's timers", () => {
    expect(() => loadConfig({ NERVE_HTTP_PORT: "" })).toThrow(/NERVE_HTTP_PORT: must be a whole number \(it is set but empty\)/);
    expect(() => loadConfig({ NERVE_CONSUMER_LAG_LIMIT: "  " })).toThrow(/NERVE_CONSUMER_LAG_LIMIT: must be a whole number \(it is set but empty\)/);
    expect(() => loadConfig({ NERVE_MAILBOX_SIZE: "12.5" })).toThrow(/NERVE_MAILBOX_SIZE: must be a whole number, not "12.5"/);
    expect(() => loadConfig({ NERVE_RELAY_WINDOW: "0x10" })).toThrow(/NERVE_RELAY_WINDOW: must be a whole number/);
    expect(() => loadConfig({ NERVE_SHUTDOWN_MS: "3000000000" })).toThrow(/NERVE_SHUTDOWN_MS/);
    expect(() => loadConfig({ NERVE_ACTOR_IDLE_MS: "4294967296" })).toThrow(/NERVE_ACTOR_IDLE_MS/);
    expect(() => loadConfig({ NERVE_HTTP_PORT: "65536" })).toThrow(/NERVE_HTTP_PORT/);
    expect(() => loadConfig({ NERVE_GATEWAY_SOCKETS_PER_USER: "0" })).toThrow(/NERVE_GATEWAY_SOCKETS_PER_USER/);
    // Set and whole, with spaces around: taken.
    expect(loadConfig({ NERVE_HTTP_PORT: " 0 ", NERVE_CONSUMER_LAG_LIMIT: "0", NERVE_SHUTDOWN_MS: "2000000000" })).toMatchObject({ NERVE_HTTP_PORT: 0, NERVE_CONSUMER_LAG_LIMIT: 0, NERVE_SHUTDOWN_MS: 2_000_000_000 });
  });

  it("keeps projections' inbox rows 7 days by default; 0 or off keeps them all; anything else is refused", () => {
    expect(loadConfig({}).NERVE_INBOX_RETENTION_DAYS).toBe(7);
    expect(loadConfig({ NERVE_INBOX_RETENTION_DAYS: "30" }).NERVE_INBOX_RETENTION_DAYS).toBe(30);
    for (const off of ["0", "off", " OFF "]) expect(loadConfig({ NERVE_INBOX_RETENTION_DAYS: off }).NERVE_INBOX_RETENTION_DAYS, off).toBe(0);
    for (const bad of ["", "1.5", "-1", "7d", "never"]) expect(() => loadConfig({ NERVE_INBOX_RETENTION_DAYS: bad }), bad).toThrow(/NERVE_INBOX_RETENTION_DAYS/);
  });

  it("runs SQLite's commits inline on two cores or fewer and in the write worker on more, unless told where", () => {
    expect([1, 2, 3, 4, 64].map(sqliteWriterFor)).toEqual(["inline", "inline", "worker", "worker", "worker"]);
    expect(loadConfig({}).NERVE_SQLITE_WRITER).toBe(availableParallelism() <= 2 ? "inline" : "worker");
    expect(loadConfig({ NERVE_SQLITE_WRITER: "auto" }).NERVE_SQLITE_WRITER).toBe(sqliteWriterFor(availableParallelism()));
    for (const w of ["worker", "inline", "main"] as const) expect(loadConfig({ NERVE_SQLITE_WRITER: w }).NERVE_SQLITE_WRITER).toBe(w);
    expect(() => loadConfig({ NERVE_SQLITE_WRITER: "thread" })).toThrow(/NERVE_SQLITE_WRITER/);
  });

  it("names every bad variable at once", () => {
    expect(() => loadConfig({ NERVE_DB: "mysql://x", NERVE_HTTP_PORT: "abc", LOG_LEVEL: "loud" })).toThrow(/NERVE_DB[\s\S]*NERVE_HTTP_PORT[\s\S]*LOG_LEVEL/);
  });
});
