#!/usr/bin/env bash
# Checks what deploy/ ships, as far as a machine without Docker or a Kubernetes cluster can:
#
#   bash deploy/validate.sh            nats-server -t on every NATS config (the cluster's three
#                                      nodes and the Kubernetes ConfigMap's), ConfigMap copies
#                                      equal to their sources, YAML parses, files the compose
#                                      file mounts exist, `kubectl kustomize` builds (if kubectl)
#   bash deploy/validate.sh --schemas  also: Kubernetes objects against the API schemas
#                                      (npm kubernetes-models), the Dockerfile (npm
#                                      dockerfile-utils), and, with COMPOSE_SCHEMA=<compose-spec.json>,
#                                      the compose file (packages go to a temporary directory)
#   bash deploy/validate.sh --live     also: a three-node cluster from deploy/nats/cluster on
#                                      loopback (deploy/nats/cluster/smoke.ts), and
#                                      deploy/postgres/create-nerve.sql on the PostgreSQL at
#                                      NERVE_TEST_PG (default postgres://postgres@127.0.0.1:5432/postgres)
#                                      under throwaway names, dropped afterwards
#
# Run from anywhere; needs the repository's node_modules (npm ci) and nats-server (PATH,
# /usr/sbin, or NATS_SERVER).
set -euo pipefail
cd "$(dirname "$0")/.."

schemas=false live=false
for a in "$@"; do
  case "$a" in
    --schemas) schemas=true ;;
    --live) live=true ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done

NATS_SERVER=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAILED: $*"; failed=1; }

# The configs read passwords (and, on Kubernetes, the pod name) from the environment; -t needs them set.
export NATS_NERVE_PASSWORD=x NATS_CLIENT_PASSWORD=x NATS_ANALYTICS_PASSWORD=x NATS_SYS_PASSWORD=x POD_NAME=nats-0

step "nats-server -t: deploy/nats/cluster/n1..n3.conf ($("$NATS_SERVER" --version))"
# Route hostnames (nats-1…) need not resolve for -t: it parses and checks, it does not connect.
for n in n1 n2 n3; do
  "$NATS_SERVER" -t -c "deploy/nats/cluster/$n.conf" || fail "$n.conf"
done

step "Kubernetes ConfigMap nats-config: copies equal their sources; nats-server -t"
node --input-type=module - "$tmp/k8s" <<'EOF' || fail "nats-config ConfigMap"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
const YAML = createRequire(process.cwd() + "/")("yaml");
const out = process.argv[2];
const cm = YAML.parseAllDocuments(readFileSync("deploy/k8s/nats.yaml", "utf8")).map((d) => d.toJS()).find((o) => o.kind === "ConfigMap");
const sources = { "accounts.conf": "deploy/nats/cluster/accounts.conf", "partition-mapping.conf": "deploy/nats/partition-mapping.conf" };
let drift = false;
for (const [key, src] of Object.entries(sources)) {
  if (cm.data[key] !== readFileSync(src, "utf8")) { console.log(`ConfigMap key ${key} differs from ${src}: copy it again`); drift = true; }
  else console.log(`${key} = ${src}`);
}
// The same layout as the pod's volume (items: paths), so the relative include is checked too.
mkdirSync(`${out}/cluster`, { recursive: true });
writeFileSync(`${out}/cluster/nats.conf`, cm.data["nats.conf"]);
writeFileSync(`${out}/cluster/accounts.conf`, cm.data["accounts.conf"]);
writeFileSync(`${out}/partition-mapping.conf`, cm.data["partition-mapping.conf"]);
process.exit(drift ? 1 : 0);
EOF
"$NATS_SERVER" -t -c "$tmp/k8s/cluster/nats.conf" || fail "ConfigMap nats.conf"

step "YAML parses: compose (with merge keys) and every Kubernetes document"
node --input-type=module - <<'EOF' || fail "YAML"
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { resolve } from "node:path";
const YAML = createRequire(process.cwd() + "/")("yaml");
let bad = false;
const compose = "deploy/compose/docker-compose.yml";
const doc = YAML.parseDocument(readFileSync(compose, "utf8"), { merge: true });
if (doc.errors.length) { console.log(compose, doc.errors.map(String)); bad = true; }
else {
  const c = doc.toJS({ maxAliasCount: 100 });
  console.log(`${compose}: services ${Object.keys(c.services).join(", ")}`);
  // Bind mounts and the build are relative to the compose file: they must exist in the repository.
  const base = "deploy/compose";
  for (const [name, s] of Object.entries(c.services)) {
    for (const v of s.volumes ?? []) {
      const src = String(v).split(":")[0];
      if (src.startsWith(".") && !existsSync(resolve(base, src))) { console.log(`${name}: mounts ${src}, which does not exist`); bad = true; }
    }
    if (s.build && !existsSync(resolve(base, s.build.context, s.build.dockerfile))) { console.log(`${name}: no ${s.build.dockerfile}`); bad = true; }
  }
  const ids = Object.values(c.services).map((s) => s.environment?.NERVE_INSTANCE_ID).filter(Boolean);
  if (new Set(ids).size !== ids.length) { console.log(`NERVE_INSTANCE_ID not unique: ${ids}`); bad = true; }
}
for (const f of ["deploy/k8s/kustomization.yaml", "deploy/k8s/nats.yaml", "deploy/k8s/nerve.yaml", "deploy/k8s/secrets.example.yaml"]) {
  const docs = YAML.parseAllDocuments(readFileSync(f, "utf8"));
  for (const d of docs) if (d.errors.length) { console.log(f, d.errors.map(String)); bad = true; }
  console.log(`${f}: ${docs.map((d) => { const o = d.toJS(); return o.kind + (o.metadata?.name ? "/" + o.metadata.name : ""); }).join(", ")}`);
}
process.exit(bad ? 1 : 0);
EOF

if command -v kubectl >/dev/null; then
  step "kubectl kustomize deploy/k8s"
  if kubectl kustomize deploy/k8s >"$tmp/kustomized.yaml"; then
    echo "builds: $(grep -c '^kind:' "$tmp/kustomized.yaml") objects"
  else
    fail "kustomize"
  fi
fi

if $schemas; then
  step "schemas (npm packages in a temporary directory)"
  (cd "$tmp" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent kubernetes-models@5 dockerfile-utils@0.16 ajv@8 yaml@2 >/dev/null) || fail "npm install of the checkers"
  root=$PWD
  cat >"$tmp/check.mjs" <<'EOF'
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import YAML from "yaml";
const require = createRequire(import.meta.url);
const root = process.argv[2];
let bad = false;
// Kubernetes: types, required fields and enums of the API's OpenAPI schema (unknown fields are not flagged).
for (const f of ["nats.yaml", "nerve.yaml", "secrets.example.yaml"]) {
  for (const d of YAML.parseAllDocuments(readFileSync(`${root}/deploy/k8s/${f}`, "utf8"))) {
    const o = d.toJS();
    const [g, v] = o.apiVersion.includes("/") ? o.apiVersion.split("/") : [null, o.apiVersion];
    const mod = await import(`kubernetes-models/${g ? g + "/" : ""}${v}/${o.kind}`);
    try { new mod[o.kind](o).validate(); console.log(`${f}: ${o.kind}/${o.metadata.name} valid`); }
    catch (e) { console.log(`${f}: ${o.kind}/${o.metadata.name}: ${e.message}`); bad = true; }
  }
}
const { validate } = require("dockerfile-utils");
const problems = validate(readFileSync(`${root}/deploy/compose/Dockerfile`, "utf8"));
for (const p of problems) console.log(`Dockerfile:${p.range.start.line + 1}: ${p.message}`);
if (problems.some((p) => p.severity === 1)) bad = true; else console.log("Dockerfile: no errors");
if (process.env.COMPOSE_SCHEMA) {
  const Ajv = require("ajv");
  const schema = JSON.parse(readFileSync(process.env.COMPOSE_SCHEMA, "utf8"));
  delete schema.$schema;
  const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false });
  const c = YAML.parseDocument(readFileSync(`${root}/deploy/compose/docker-compose.yml`, "utf8"), { merge: true }).toJS({ maxAliasCount: 100 });
  if (ajv.validate(schema, c)) console.log("docker-compose.yml: valid against COMPOSE_SCHEMA");
  else { console.log(ajv.errors); bad = true; }
} else console.log("docker-compose.yml: schema check skipped (set COMPOSE_SCHEMA to the compose-spec's schema/compose-spec.json)");
process.exit(bad ? 1 : 0);
EOF
  node "$tmp/check.mjs" "$root" || fail "schemas"
fi

if $live; then
  step "live: three nats-servers from deploy/nats/cluster (deploy/nats/cluster/smoke.ts)"
  node --import tsx deploy/nats/cluster/smoke.ts || fail "cluster smoke"

  step "live: deploy/postgres/create-nerve.sql under throwaway names"
  admin=${NERVE_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}
  name="nerve_validate_$$"
  if psql "$admin" -Atqc "select 1" >/dev/null 2>&1; then
    base=${admin%/*}
    cleanup_pg() { psql "$admin" -qc "drop database if exists $name" -c "drop role if exists ${name}_other" -c "drop role if exists $name" >/dev/null 2>&1 || true; }
    pw="pw-$RANDOM$RANDOM"
    for run in 1 2; do # twice: a re-run must succeed too
      NERVE_DB_PASSWORD=$pw psql "$admin" -q -v ON_ERROR_STOP=1 -v "nerve_role=$name" -v "nerve_db=$name" -f deploy/postgres/create-nerve.sql >/dev/null || fail "create-nerve.sql run $run"
    done
    attrs=$(psql "$admin" -Atc "select rolsuper or rolcreatedb or rolcreaterole or rolreplication or rolbypassrls, rolcanlogin from pg_roles where rolname = '$name'")
    [ "$attrs" = "f|t" ] && echo "role: login, nothing more" || fail "role attributes: $attrs"
    settings=$(psql "$admin" -Atc "select array_to_string(setconfig, ',') from pg_db_role_setting s join pg_roles r on r.oid = s.setrole where rolname = '$name'")
    [ "$settings" = "idle_in_transaction_session_timeout=2s,synchronous_commit=on" ] && echo "role defaults: $settings" || fail "role defaults: $settings"
    psql "$admin" -qc "create role ${name}_other login" >/dev/null
    if psql "${base/\/\/*@/\/\/${name}_other@}/$name" -Atc "select 1" >/dev/null 2>&1; then fail "another role could connect"; else echo "another role is refused CONNECT"; fi
    # Nerve's own schema creation as that role.
    url="${base/\/\/*@/\/\/$name:$pw@}/$name"
    cat >"$tmp/open.mts" <<EOF
import { openDatabase } from "$PWD/src/persistence/database.ts";
import { clusterEntities } from "$PWD/src/cluster/entities.ts";
const db = await openDatabase({ url: process.env.URL!, entities: clusterEntities });
const rows = await db.execute<{ tablename: string }[]>("select tablename from pg_tables where schemaname = 'public' and tableowner = current_user order by 1");
console.log("Nerve created, as the role:", rows.map((r) => r.tablename).join(" "));
await db.close();
EOF
    URL=$url node --import tsx "$tmp/open.mts" || fail "openDatabase as the nerve role"
    if env -u NERVE_DB_PASSWORD psql "$admin" -q -v ON_ERROR_STOP=1 -v "nerve_role=${name}x" -v "nerve_db=${name}x" -f deploy/postgres/create-nerve.sql >/dev/null 2>&1; then
      fail "create-nerve.sql ran without a password"
    else
      echo "without NERVE_DB_PASSWORD it stops"
    fi
    cleanup_pg
  else
    echo "skipped: no PostgreSQL answers at $admin"
  fi
fi

echo
if [ "$failed" = 0 ]; then echo "deploy/validate.sh: all checks passed"; else echo "deploy/validate.sh: some checks FAILED"; exit 1; fi
