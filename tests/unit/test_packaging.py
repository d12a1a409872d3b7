"""The package finds its migrations whether installed or run from a checkout."""

from __future__ import annotations

from pathlib import Path

import framemeta
from framemeta.schema import load_migrations, migrations_dir


def test_migrations_are_found_and_numbered() -> None:
    migrations = load_migrations()

    assert [m.version for m in migrations][:2] == [1, 2]
    assert all(m.checksum and m.sql for m in migrations)


def test_installed_package_carries_its_own_migrations() -> None:
    package = Path(framemeta.__file__).parent
    if "site-packages" not in package.parts:
        # A source checkout (editable install) reads the top-level folder.
        assert migrations_dir() == package.parent / "migrations"
        return
    assert migrations_dir() == package / "migrations"
    assert sorted(p.name for p in migrations_dir().glob("*.sql"))
