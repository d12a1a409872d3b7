-- framemeta 0001: the TimescaleDB extension, the three roles, and the
-- framemeta_config table that records the edition for later migrations.
--
-- Roles are cluster-wide NOLOGIN groups; grant them to login roles:
--   framemeta_owner   owns every framemeta object; runs migrations and maintenance
--   framemeta_writer  may only INSERT (and COPY) frames
--   framemeta_reader  may only SELECT
-- Creating them needs CREATEROLE; when a DBA has created them already, it does not.

CREATE EXTENSION IF NOT EXISTS timescaledb;

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['framemeta_owner', 'framemeta_writer', 'framemeta_reader'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
        END IF;
    END LOOP;
END
$$;

GRANT USAGE, CREATE ON SCHEMA public TO framemeta_owner;
GRANT USAGE ON SCHEMA public TO framemeta_writer, framemeta_reader;

-- Settings every framemeta tool reads. 'edition' is TimescaleDB's license
-- ('apache' or 'timescale'): later migrations branch on framemeta_edition().
CREATE TABLE framemeta_config (
    key        text        PRIMARY KEY,
    value      text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE framemeta_config OWNER TO framemeta_owner;
GRANT SELECT ON framemeta_config TO framemeta_writer, framemeta_reader;

INSERT INTO framemeta_config (key, value)
VALUES ('edition', coalesce(current_setting('timescaledb.license', true), 'apache'));

CREATE FUNCTION framemeta_edition() RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, public
    AS $$ SELECT value FROM public.framemeta_config WHERE key = 'edition' $$;
ALTER FUNCTION framemeta_edition() OWNER TO framemeta_owner;
