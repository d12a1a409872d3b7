"""A bad pool option of `FrameQuery` or `AsyncFrameQuery` fails at
construction, naming the option, before any connection is tried."""

from __future__ import annotations

from typing import Any

import pytest

from framemeta import AsyncFrameQuery, ConfigurationError, FrameQuery


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"max_size": 0}, "max_size: must be an integer >= 1"),
        ({"min_size": -1}, "min_size: must be an integer >= 0"),
        ({"max_size": 2.0}, "max_size"),
        ({"min_size": 3, "max_size": 2}, "min_size (3) is larger than max_size (2)"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": -5}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"timeout": "30"}, "timeout"),
        ({"prepare_threshold": "x"}, "prepare_threshold"),
        ({"prepare_threshold": -1}, "prepare_threshold"),
        ({"prepare_threshold": 1.5}, "prepare_threshold"),
    ],
)
@pytest.mark.parametrize("kind", [FrameQuery, AsyncFrameQuery])
def test_a_bad_option_fails_at_construction(
    kind: type[Any], options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError) as error:
        kind("host=nowhere.invalid dbname=x", **options)

    assert str(error.value).startswith(named)
