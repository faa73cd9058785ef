import pytest

from context8.cli import main
from context8.config import ConfigError, load


def test_defaults_and_symbol_normalization():
    settings = load({"SYMBOLS": " btcusdt, ETHUSDT.BINANCE,btcusdt "})
    assert settings.symbols == ("BTCUSDT.BINANCE", "ETHUSDT.BINANCE")
    assert settings.report_period_ms == 250 and settings.min_publish_ms == 50
    assert settings.node_id  # host-pid when not given


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"NT_REPORT_PERIOD_MS": "soon"}, "NT_REPORT_PERIOD_MS"),
        ({"NT_LEASE_TTL_MS": "10"}, "NT_LEASE_TTL_MS"),
        ({"NT_HRW_STICKY_PCT": "2"}, "NT_HRW_STICKY_PCT"),
        ({"SYMBOLS": "BTC/USDT"}, "SYMBOLS"),
        ({"SYMBOLS": " , "}, "SYMBOLS"),
        ({"NT_SNAPSHOT_EVERY_SEC": "3000"}, "NT_SNAPSHOT_EVERY_SEC"),
    ],
)
def test_bad_settings_name_the_variable(env, named):
    with pytest.raises(ConfigError, match=named):
        load(env)


def test_bad_config_fails_the_command_with_the_variable_named(capsys, monkeypatch):
    monkeypatch.setenv("NT_MIN_PUBLISH_MS", "-1")
    assert main(["process"]) == 2
    assert "NT_MIN_PUBLISH_MS" in capsys.readouterr().err
