-- Production database and roles for one ICEP service, run once per service by an
-- administrator of the managed PostgreSQL (a role with CREATEDB and CREATEROLE):
--
--   psql "$ADMIN_URL" -v service=plans \
--        -v migrator_password="$MIGRATOR_PASSWORD" -v app_password="$APP_PASSWORD" \
--        -f deploy/postgres/roles.sql
--
-- Two login roles per service (docs/operations/kubernetes.md):
--   <service>_migrator  owns the database and its schema: the migrations Job
--                       (`icep migrate <service>`) runs as it, the only role with DDL rights;
--   <service>           the application role the service runs as: it may connect,
--                       read and write rows (SELECT, INSERT, UPDATE, DELETE, sequences),
--                       and nothing else: no CREATE, ALTER, DROP or TRUNCATE.
-- Tables the migrator creates later are granted to the application role by default
-- privileges, so no grant has to follow a migration. docker-compose.yml keeps one
-- role per service that migrates on start (init.sql), for development only.

\set ON_ERROR_STOP on
\set migrator :service _migrator

CREATE ROLE :"migrator" LOGIN PASSWORD :'migrator_password';
CREATE ROLE :"service" LOGIN PASSWORD :'app_password';
-- Creating a database owned by another role (and setting that role's default
-- privileges) needs membership in it; the administrator keeps it.
GRANT :"migrator" TO CURRENT_USER;

CREATE DATABASE :"service" OWNER :"migrator";
-- By default every role may connect to every database and create temporary
-- tables; here only the owner and the application role may connect.
REVOKE ALL ON DATABASE :"service" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"service" TO :"service";

\connect :"service"
\set ON_ERROR_STOP on
-- Only the migrator creates objects (PostgreSQL before 15 let every role create
-- in the public schema).
ALTER SCHEMA public OWNER TO :"migrator";
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"service";
-- Rows only, on every table and sequence the migrator creates, now or later.
ALTER DEFAULT PRIVILEGES FOR ROLE :"migrator" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"service";
ALTER DEFAULT PRIVILEGES FOR ROLE :"migrator" IN SCHEMA public
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO :"service";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"service";
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO :"service";
