"""Analytics parameters from the environment: every field as NT_<FIELD>, validated, errors
naming the variable; each one documented in docs/analytics.md."""

import dataclasses
from pathlib import Path

import pytest

from core.settings import ConfigError
from processors.analytics.fold import AnalyticsParams, analytics_params
from processors.analytics.params import env_name

DOCS = Path(__file__).resolve().parents[1] / "docs" / "analytics.md"


def test_defaults_without_variables():
    assert analytics_params({}) == AnalyticsParams()


def test_every_field_is_settable():
    environ = {}
    expected = {}
    for field in dataclasses.fields(AnalyticsParams):
        default = field.default
        # a valid value different from the default, keeping every ordering rule true
        value = default + 1 if isinstance(default, int) else round(default * 0.99, 6)
        environ[env_name(field.name)] = f" {value} "
        expected[field.name] = value
    expected["flow_window_s"] = 100  # two flash-flow windows must fit in the flow window
    environ["NT_FLOW_WINDOW_S"] = "100"
    assert dataclasses.asdict(analytics_params(environ)) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"NT_DEPTH_LEVELS": "0"}, "NT_DEPTH_LEVELS: Expected `int` >= 1"),
        ({"NT_WALL_FACTOR": "big"}, "NT_WALL_FACTOR: Expected `float`"),
        ({"NT_PROFILE_VALUE_AREA": "1.5"}, "NT_PROFILE_VALUE_AREA: Expected `float` <= 1.0"),
        (
            {"NT_SPOOF_CANCEL_RATE": "0.95"},
            "NT_SPOOF_CANCEL_RATE must not exceed NT_SPOOF_MEDIUM_RATE",
        ),
        ({"NT_FLASH_FLOW_WINDOW_S": "20"}, "NT_FLASH_FLOW_WINDOW_S: two of its windows must fit"),
        ({"NT_SPREAD_GOOD_BPS": "60"}, "NT_SPREAD_GOOD_BPS must not exceed NT_SPREAD_BAD_BPS"),
    ],
)
def test_bad_values_name_the_variable(environ, message):
    with pytest.raises(ConfigError, match=message):
        analytics_params(environ)


def test_every_parameter_is_documented_with_its_default():
    text = DOCS.read_text()
    for field in dataclasses.fields(AnalyticsParams):
        name = f"| `{env_name(field.name)}` |"
        row = next((line for line in text.splitlines() if line.startswith(name)), "")
        assert row, f"{env_name(field.name)} is not in docs/analytics.md"
        default = f"{field.default:,}" if isinstance(field.default, int) else f"{field.default:g}"
        assert f"| {default} |" in row, f"{env_name(field.name)}: default {default} not documented"
