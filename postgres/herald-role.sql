-- Herald's own role, made once when the compose stack's PostgreSQL starts on an empty
-- volume (mounted into /docker-entrypoint-initdb.d; run by the superuser, in the
-- `herald` database). Herald connects as `herald`: not a superuser, no CREATEDB or
-- CREATEROLE, the owner of the `herald` schema and of nothing else.
--
-- Its password comes from the container's HERALD_DB_PASSWORD (psql's \getenv, so the
-- value never sits in this file or in a command line).

\set ON_ERROR_STOP on
\getenv herald_password HERALD_DB_PASSWORD

CREATE ROLE herald LOGIN PASSWORD :'herald_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
GRANT CONNECT, TEMPORARY ON DATABASE :"DBNAME" TO herald;
-- `herald db upgrade` fills this schema; it needs nothing outside it.
CREATE SCHEMA herald AUTHORIZATION herald;
