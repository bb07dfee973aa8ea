-- Runs once, when the postgres image initialises an empty data directory
-- (mounted at /docker-entrypoint-initdb.d by docker-compose.yml).
--
-- One database and one login role per domain service; each role owns its own
-- database and cannot connect to any other, so no service can read another's
-- tables. The gateway keeps no database. Passwords are development defaults:
-- a real deployment uses managed PostgreSQL and secrets of its own.

\set ON_ERROR_STOP on

CREATE ROLE plans         LOGIN PASSWORD 'plans';
CREATE ROLE procurement   LOGIN PASSWORD 'procurement';
CREATE ROLE standards     LOGIN PASSWORD 'standards';
CREATE ROLE notifications LOGIN PASSWORD 'notifications';

CREATE DATABASE plans         OWNER plans;
CREATE DATABASE procurement   OWNER procurement;
CREATE DATABASE standards     OWNER standards;
CREATE DATABASE notifications OWNER notifications;

-- By default every role may connect to every database; only the owner may here.
REVOKE ALL ON DATABASE plans         FROM PUBLIC;
REVOKE ALL ON DATABASE procurement   FROM PUBLIC;
REVOKE ALL ON DATABASE standards     FROM PUBLIC;
REVOKE ALL ON DATABASE notifications FROM PUBLIC;
