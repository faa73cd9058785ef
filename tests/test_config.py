import argparse
from pathlib import Path

import pytest

from context8.cli import build_parser, main
from core.settings import CONFIG_ENV, ConfigError, check_file, is_set, load


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


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "context8.toml"
    path.write_text(text)
    return path


def test_config_file_under_the_environment_under_flags(tmp_path):
    path = _config(
        tmp_path,
        'SYMBOLS = ["btcusdt", "ETHUSDT.BINANCE"]\n'
        "NT_MIN_PUBLISH_MS = 10\n"
        "NT_HRW_STICKY_PCT = 0.05\n"
        'NT_NODE_ID = "from-file"\n'
        'REDIS_URL = "redis://127.0.0.1:1/0"\n',
    )
    env = {CONFIG_ENV: str(path), "NT_MIN_PUBLISH_MS": "20", "REDIS_URL": "redis://env:2/0"}
    settings = load(env, redis_url="redis://flag:3/0")
    assert settings.symbols == ("BTCUSDT.BINANCE", "ETHUSDT.BINANCE")  # file, normalized
    assert settings.min_publish_ms == 20  # the environment over the file
    assert settings.redis_url == "redis://flag:3/0"  # a flag over both
    assert (settings.hrw_sticky_pct, settings.node_id) == (0.05, "from-file")
    assert settings.report_period_ms == 250  # default where neither says
    for variable in ("SYMBOLS", "NT_MIN_PUBLISH_MS", "NT_HRW_STICKY_PCT", "NT_NODE_ID"):
        assert is_set(variable, env)
    assert not is_set("NT_REPORT_PERIOD_MS", env)
    assert not is_set("SYMBOLS", {})


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("NT_MIN_PUBLISH_MS = -1\n", "NT_MIN_PUBLISH_MS in {path}: "),
        ('NT_REPORT_PERIOD_MS = "soon"\n', "NT_REPORT_PERIOD_MS in {path}: "),
        ('SYMBOLS = ["BTC/USDT"]\n', "SYMBOLS in {path}: "),
        ("SYMBOLS = [1, 2]\n", "SYMBOLS in {path}: "),
        ("SYMBOLS = []\n", "SYMBOLS in {path}: "),
        ("NT_SNAPSHOT_EVERY_SEC = 3000\n", "NT_SNAPSHOT_EVERY_SEC in {path}: "),
        ("NT_MIN_PUBLISH_MS = \n", "{path}: not valid TOML"),
    ],
)
def test_bad_config_file_names_the_setting_and_the_file(tmp_path, text, named):
    path = _config(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load({CONFIG_ENV: str(path)})
    assert named.format(path=path) in str(error.value)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('symbols = ["BTCUSDT"]\n', "symbols in {path}: no such setting"),
        ("[NT]\nMIN_PUBLISH_MS = 5\n", "NT in {path}: no such setting"),
        # a kind's setting misspelled is not a kind's setting
        (
            "NT_MIN_PUBLISH_MSS = 5\n",
            "NT_MIN_PUBLISH_MSS in {path}: no such setting (did you mean NT_MIN_PUBLISH_MS?)",
        ),
        (
            "NT_HEAVY_LEVEL = 5\n",
            "NT_HEAVY_LEVEL in {path}: no such setting (did you mean NT_HEAVY_LEVELS?)",
        ),
    ],
)
def test_a_key_no_role_or_kind_reads_fails_every_command(
    tmp_path, capsys, monkeypatch, text, named
):
    monkeypatch.setenv(CONFIG_ENV, "")  # recorded, so what main sets is undone after
    path = _config(tmp_path, text)
    with pytest.raises(ConfigError, match="no such setting"):
        check_file(["NT_MIN_PUBLISH_MS", "NT_HEAVY_LEVELS"], {CONFIG_ENV: str(path)})
    assert main(["--config", str(path), "schema", "--check"]) == 2
    assert named.format(path=path) in capsys.readouterr().err


def test_every_variable_from_the_file_is_taken_by_its_role_or_kind(tmp_path, monkeypatch):
    """A kind's setting, a start position and an MCP setting are all known to the check,
    and reach the kind through the one loader."""
    from processors.analytics.kind import kind as analytics

    monkeypatch.setenv(CONFIG_ENV, "")
    path = _config(tmp_path, "NT_HEAVY_LEVELS = 7\nNT_CANDLES_START = \"live\"\n"
                   'CONTEXT8_MCP_PORT = 9999\nNT_DEPTH_LEVELS = 5\n')  # fmt: skip
    assert main(["--config", str(path), "schema", "--check"]) == 0
    built = analytics(load({}), {CONFIG_ENV: str(path)})
    assert built.variables and "NT_HEAVY_LEVELS" in built.variables


def test_a_variable_set_but_empty_is_an_error_not_the_default():
    with pytest.raises(ConfigError, match="SYMBOLS is set but empty"):
        load({"SYMBOLS": ""})
    with pytest.raises(ConfigError, match="NT_MIN_PUBLISH_MS is set but empty"):
        load({"NT_MIN_PUBLISH_MS": " "})


def test_a_missing_config_file_is_named(tmp_path):
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=f"{CONFIG_ENV}: cannot read .*{missing}"):
        load({CONFIG_ENV: str(missing)})


def test_bad_config_file_fails_every_command_at_start(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, "")  # recorded, so what main sets is undone after
    path = _config(tmp_path, "NT_LEASE_TTL_MS = 10\n")
    assert main(["--config", str(path), "schema", "--check"]) == 2
    assert f"NT_LEASE_TTL_MS in {path}" in capsys.readouterr().err


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    [subcommands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert "status" in subcommands.choices
    for name in [None, *subcommands.choices]:
        with pytest.raises(SystemExit) as exited:
            main([name, "--help"] if name else ["--help"])
        assert exited.value.code == 0
        assert f"usage: context8 {name or ''}".strip() in capsys.readouterr().out
