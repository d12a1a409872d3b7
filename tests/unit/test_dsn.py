"""Connection strings: resolution order and password redaction."""

from __future__ import annotations

import pytest

from framemeta import ConfigurationError
from framemeta._dsn import describe, redact, resolve


@pytest.mark.parametrize(
    "dsn",
    [
        "host=db user=u password=hunter2 dbname=x",
        "host=db password='hunter2 with spaces' dbname=x",
        "postgresql://u:hunter2@db:5432/x",
        "postgresql://u:hunter2@db/x?sslmode=require",
        "postgresql://db/x?password=hunter2",
        "host=db sslpassword=hunter2",
    ],
)
def test_redact_hides_every_password(dsn: str) -> None:
    shown = redact(dsn)

    assert "hunter2" not in shown
    assert "****" in shown


def test_redact_leaves_passwordless_dsn_alone() -> None:
    assert redact("host=db dbname=x") == "host=db dbname=x"


def test_resolve_prefers_the_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAMEMETA_DSN", "host=from-env")

    assert resolve("host=given") == "host=given"
    assert resolve(None) == "host=from-env"


def test_resolve_falls_back_to_libpq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRAMEMETA_DSN", raising=False)

    assert resolve(None) == ""


def test_unparseable_dsn_fails_without_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve("host=db password=hunter2 garbage")

    assert "hunter2" not in str(info.value)
    assert str(info.value).startswith("dsn:")


def test_describe_names_user_host_port_database() -> None:
    assert describe("host=db port=6432 user=u dbname=x password=p") == "u@db:6432/x"
