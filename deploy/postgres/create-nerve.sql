-- Nerve — the PostgreSQL role and database of a deployment, with least privilege.
--
-- Run once as an administrator (a superuser, or a managed service's admin role), with psql >= 15:
--
--   NERVE_DB_PASSWORD='…' psql "postgres://admin@db-host/postgres" -v ON_ERROR_STOP=1 -f create-nerve.sql
--
-- The compose file runs it from /docker-entrypoint-initdb.d on the first start of its database.
-- Running it again is safe: it creates what is missing and re-asserts privileges and settings
-- (and the password, so it also rotates one). Other names: -v nerve_role=… -v nerve_db=….
--
-- The password is read from the environment (\getenv), not the command line, so it shows in no
-- process list. It does travel in the text of CREATE/ALTER ROLE: keep log_statement at 'none' or
-- 'mod' while this runs (PostgreSQL stores it as a SCRAM hash; password_encryption's default).
--
-- What Nerve needs: to connect to ONE database and create, alter and use its own tables there
-- (it creates and migrates its schema at start-up: snapshots, event log, outbox, idempotency keys,
-- timers, leases, membership, read models), and the trusted extension pg_trgm for search. Nothing
-- else: no superuser, no CREATEDB, no CREATEROLE, no replication, no other database. Owning its
-- database gives exactly that.

\set ON_ERROR_STOP on

\if :{?nerve_role}
\else
  \set nerve_role nerve
\endif
\if :{?nerve_db}
\else
  \set nerve_db nerve
\endif
\if :{?nerve_password}
\else
  \getenv nerve_password NERVE_DB_PASSWORD
\endif
\if :{?nerve_password}
\else
  -- A role without a password either cannot log in over TCP or is open to anyone: stop instead.
  do $$ begin raise exception 'set NERVE_DB_PASSWORD (or -v nerve_password=…) to the nerve role''s password'; end $$;
\endif

-- The role: a plain login, nothing more. ALTER after the conditional CREATE so that a re-run also
-- takes back any privilege someone granted the role by hand since.
select format('create role %I login', :'nerve_role')
 where not exists (select from pg_roles where rolname = :'nerve_role') \gexec
select format('alter role %I with login nosuperuser nocreatedb nocreaterole noreplication nobypassrls inherit password %L',
              :'nerve_role', :'nerve_password') \gexec

-- Session defaults of the role. Nerve sets idle_in_transaction_session_timeout itself on every
-- connection (2 s, as a startup option); the role default covers what does not pass startup
-- options through — PgBouncer drops them when told to ignore them — and operators' psql sessions
-- as this role: a session frozen inside a transaction holds the lease rows its fence check read
-- `for share`, and a takeover of those partitions waits until the session ends.
-- synchronous_commit: a command is answered after its commit; with `off` a database crash could
-- lose commands already answered, and the events of some of them would already be in JetStream.
-- Pinned here so that a server-wide `off` (a common tuning) does not reach Nerve.
select format('alter role %I set idle_in_transaction_session_timeout = %L', :'nerve_role', '2s') \gexec
select format('alter role %I set synchronous_commit = %L', :'nerve_role', 'on') \gexec

-- The database, owned by the role: the owner may create schemas and tables in it and no one else
-- need be granted anything. template0 with UTF8: aggregate ids, names and texts are Unicode.
select format('create database %I owner %I encoding %L template template0', :'nerve_db', :'nerve_role', 'UTF8')
 where not exists (select from pg_database where datname = :'nerve_db') \gexec
select format('alter database %I owner to %I', :'nerve_db', :'nerve_role') \gexec

-- Other roles may not even connect (PUBLIC has CONNECT and TEMPORARY on every new database).
-- Dashboards that read the leases get a role of their own and `grant connect` plus `select` on
-- nerve_leases and nerve_instances (deploy/RUNBOOK.md, "What to watch").
select format('revoke all on database %I from public', :'nerve_db') \gexec
select format('grant connect, temporary on database %I to %I', :'nerve_db', :'nerve_role') \gexec

-- Before PostgreSQL 15 the schema `public` belonged to the bootstrap superuser and every role could
-- create in it. From 15 on it belongs to pg_database_owner (here: the nerve role) and PUBLIC may
-- only use it, which is what we want; on older servers make it so.
\connect :"nerve_db"
select current_setting('server_version_num')::int < 150000 as nerve_old_public_schema \gset
\if :nerve_old_public_schema
  select format('alter schema public owner to %I', :'nerve_role') \gexec
  revoke create on schema public from public;
\endif
