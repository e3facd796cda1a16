"""HAProxy time values read as seconds, for the checks that compare timeouts."""

from __future__ import annotations

import pytest
from conftest import load_plugin

haproxy_time = load_plugin("roles/haproxy/filter_plugins/haproxy_time.py")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("620s", 620.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), ("1d", 86400.0),
     ("2000", 2.0), (1500, 1.5), ("250us", 0.00025)],
)  # fmt: skip
def test_haproxy_time_as_seconds(value: str | int, seconds: float) -> None:
    assert haproxy_time.haproxy_seconds(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["30parsecs", "", "1.5s", "-3s"])
def test_a_value_haproxy_would_refuse_is_refused_by_name(value: str) -> None:
    with pytest.raises(ValueError, match="expected an HAProxy time"):
        haproxy_time.haproxy_seconds(value)
