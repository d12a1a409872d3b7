"""Splitting a no-transaction migration into statements."""

from __future__ import annotations

from framemeta.schema import split_statements


def test_splits_at_top_level_semicolons_only() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE a (note text DEFAULT 'x;y');
    /* block; comment */
    CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$
    BEGIN RETURN 1; END;
    $body$;
    SELECT "odd;name" FROM a;
    -- trailing comment only
    """

    statements = split_statements(script)

    assert len(statements) == 3
    assert statements[0].endswith("DEFAULT 'x;y');")
    assert "RETURN 1; END;" in statements[1]
    assert statements[2].startswith('SELECT "odd;name"')


def test_last_statement_may_lack_a_semicolon() -> None:
    assert split_statements("SELECT 1; SELECT 2") == ["SELECT 1;", "SELECT 2"]
