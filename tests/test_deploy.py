"""deploy/: the compose services run real ``context8`` subcommands with settings the code
reads, the image's entry point is the project's script, the alert rules and the dashboard
query metrics that core/metrics.py defines with labels those metrics carry, and every alert
has its runbook section. Where promtool is available (on PATH, or ``PROMTOOL``) the rules,
their unit tests, the Prometheus config and the dashboard's queries also pass Prometheus's own
parser; each test prints which validation ran.

Last, the compose wiring itself runs: every context8 service as a local process with the
compose file's own command and environment (service names mapped to loopback ports), against
a redis-server started with the compose file's own arguments.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import fnmatch
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import redis
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import core.metrics
from context8 import cli
from context8.procs import Fleet, free_port
from context8.redis_server import PrivateRedis
from context8_mcp import config as mcp_config
from core import acl
from core import settings as config

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
SIMULATOR_OVERRIDE = DEPLOY / "compose.simulator.yaml"
IMAGE = "context8:local"
RUNBOOKS = REPO / "docs" / "runbooks.md"
SOURCE_DIRS = ("core", "context8", "ingest", "processors", "coordination", "projections", "mcp")

# Values for the variables the compose files require; SYMBOLS kept short for the live run.
SECRETS = {
    "CONTEXT8_MCP_TOKEN": secrets.token_hex(16),
    "CONTEXT8_MCP_REDIS_PASSWORD": secrets.token_hex(12),
    "SYMBOLS": "BTCUSDT,ETHUSDT",
}

# --- compose files ------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: object, env: Mapping[str, str]) -> object:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        given = env.get(name)
        if op in (":-", "-"):
            return given if given or (op == "-" and given is not None) else arg
        if op in (":?", "?") and not given:
            raise KeyError(f"compose needs {name}: {arg}")
        return given or ""

    return _VARIABLE.sub(substitute, value)


def merge(base: object, override: object) -> object:
    """Compose's merge of an override file: maps merge, anything else is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    return override


def compose_services(*files: Path, env: Mapping[str, str] = SECRETS) -> dict[str, dict]:
    merged: object = {}
    for path in files:
        merged = merge(merged, yaml.safe_load(path.read_text()))
    compose = interpolate(merged, env)
    assert isinstance(compose, dict)
    return compose["services"]


def context8_services(services: dict[str, dict]) -> dict[str, dict]:
    return {name: s for name, s in services.items() if s.get("image") == IMAGE}


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "write environment as a map"
    return {k: str(v) for k, v in env.items()}


def bind_mounts(service: dict) -> dict[str, str]:
    """``./file:/target[:mode]`` volumes: file -> target."""
    return dict(v.split(":")[:2] for v in service.get("volumes", []) if v.startswith("./"))


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def env_names_read_by_code() -> set[str]:
    """Every environment variable the project reads: the settings' tables, plus each literal
    name (or module constant) read through ``os.environ``/``os.getenv``/``env.get``."""
    names = {*config.NODE_SETTINGS.values(), config.CONFIG_ENV, *mcp_config.ENV_NAMES.values()}
    for folder in SOURCE_DIRS:
        for path in (REPO / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            constants = {
                target.id: node.value.value
                for node in tree.body
                if isinstance(node, ast.Assign | ast.AnnAssign)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
                for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                if isinstance(target, ast.Name)
            }
            for node in ast.walk(tree):
                key = None
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("get", "getenv")
                    and node.args
                    and re.search(r"\benv(iron)?\b|^os$", ast.unparse(node.func.value))
                ):
                    key = node.args[0]
                elif isinstance(node, ast.Subscript) and "environ" in ast.unparse(node.value):
                    key = node.slice
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    names.add(key.value)
                elif isinstance(key, ast.Name) and key.id in constants:
                    names.add(constants[key.id])
    return names


def test_compose_commands_are_context8_subcommands() -> None:
    parser = cli.build_parser()
    services = context8_services(compose_services(COMPOSE, SIMULATOR_OVERRIDE))
    assert {"ingest", "processor", "mcp", "simulator"} <= services.keys()
    for name, service in services.items():
        command = service["command"]
        assert isinstance(command, list), f"{name}: write the command as a list (exec form)"
        try:
            args = parser.parse_args(command)
        except (SystemExit, argparse.ArgumentError) as e:
            pytest.fail(f"{name}: `context8 {' '.join(command)}` is refused by the CLI: {e}")
        assert callable(args.func), name
    assert services["ingest"]["command"] == ["ingest"]
    assert services["processor"]["command"] == ["process"]
    assert flag(services["mcp"]["command"], "--transport") == "http"


def test_compose_environment_is_read_by_the_code_and_loads() -> None:
    read = env_names_read_by_code()
    services = context8_services(compose_services(COMPOSE, SIMULATOR_OVERRIDE))
    for name, service in services.items():
        unknown = environment(service).keys() - read
        assert not unknown, f"{name} sets {sorted(unknown)}, which no code reads"
    for name in ("ingest", "processor"):
        settings = config.load(environment(services[name]))
        assert settings.metrics_host == "0.0.0.0", f"{name}: Prometheus scrapes from outside"
        assert settings.redis_url == "redis://redis:6379/0"
    mcp = services["mcp"]
    command = mcp["command"]
    server = mcp_config.load_config(
        environment(mcp),
        transport=flag(command, "--transport"),
        host=flag(command, "--host"),
        port=int(flag(command, "--port")),
    )
    assert server.token == SECRETS["CONTEXT8_MCP_TOKEN"]
    assert f"{acl.READER}:{SECRETS['CONTEXT8_MCP_REDIS_PASSWORD']}@" in server.redis_url


def test_compose_requires_its_secrets() -> None:
    for name in ("CONTEXT8_MCP_TOKEN", "CONTEXT8_MCP_REDIS_PASSWORD"):
        with pytest.raises(KeyError, match=name):
            compose_services(COMPOSE, env={k: v for k, v in SECRETS.items() if k != name})


def test_compose_wiring_is_consistent() -> None:
    services = compose_services(COMPOSE, SIMULATOR_OVERRIDE)
    # Redis: append-only, and the MCP reader with exactly the rules of core/acl.py
    command = services["redis"]["command"]
    assert command[0] == "redis-server"
    assert flag(command, "--appendonly") == "yes"
    user = command[command.index("--user") + 1 :]
    assert user == [acl.READER, *acl.reader_rules(SECRETS["CONTEXT8_MCP_REDIS_PASSWORD"])]
    assert str(services["redis"]["image"]).startswith("redis:7")
    # the processors scale: no fixed node id, no published port
    processor = services["processor"]
    assert "NT_NODE_ID" not in environment(processor) and "ports" not in processor
    assert processor["deploy"]["replicas"] >= 1
    # the MCP port published is the one it listens on and its healthcheck asks
    mcp = services["mcp"]
    port = flag(mcp["command"], "--port")
    assert mcp["ports"] == [f"{port}:{port}"]
    assert f"127.0.0.1:{port}/health" in " ".join(mcp["healthcheck"]["test"])
    # ingest talks to the simulator where it listens
    sim_port = flag(services["simulator"]["command"], "--port")
    ingest_env = environment(services["ingest"])
    assert ingest_env["NT_BINANCE_HTTP_URL"] == f"http://simulator:{sim_port}"
    assert ingest_env["NT_BINANCE_WS_URL"] == f"ws://simulator:{sim_port}"
    assert flag(services["simulator"]["command"], "--host") == "0.0.0.0"
    # Prometheus: scrapes each node role on its metrics port, rules mounted beside its config
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    for job, service in (("context8-ingest", "ingest"), ("context8-processor", "processor")):
        (sd,) = jobs[job]["dns_sd_configs"]
        assert sd["names"] == [service]
        assert sd["port"] == int(environment(services[service])["NT_METRICS_PORT"])
    mounts = bind_mounts(services["prometheus"])
    config_dir = Path(mounts["./prometheus.yml"]).parent
    for rule_file in prometheus["rule_files"]:
        assert mounts[f"./{rule_file}"] == str(config_dir / rule_file)
        assert (DEPLOY / rule_file).exists()
    assert f"--config.file={mounts['./prometheus.yml']}" in services["prometheus"]["command"]
    # Grafana: the provisioned folder is where the dashboard is mounted, the data source uid
    # the dashboard's default
    grafana = services["grafana"]
    mounts = bind_mounts(grafana)
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "context8.yml").read_text())[
        "providers"
    ]
    assert Path(mounts["./grafana/context8.json"]).parent == Path(provider["options"]["path"])
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"
    dashboard = json.loads((DEPLOY / "grafana" / "context8.json").read_text())
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["current"]["value"] == source["uid"]


# --- the image ----------------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = (line.strip() for line in text.splitlines())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_builds_one_image_with_the_context8_entry_point() -> None:
    instructions = dockerfile_instructions(DEPLOY / "Dockerfile")
    by_kind: dict[str, list[str]] = {}
    for kind, rest in instructions:
        by_kind.setdefault(kind, []).append(rest)
    assert by_kind["FROM"] == ["python:3.11-slim"]
    (entrypoint,) = by_kind["ENTRYPOINT"]
    assert json.loads(entrypoint) == ["context8"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "context8" in scripts
    (cmd,) = by_kind["CMD"]
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(json.loads(cmd))
    assert exited.value.code == 0
    runs = " ; ".join(by_kind["RUN"])
    assert "uv sync --locked --no-dev" in runs
    assert re.search(r"pip install [^;]*\buv\b", runs)
    # every file copied exists, and the ignore file keeps what the wheel build needs
    for rest in by_kind["COPY"]:
        *sources, _dest = rest.split()
        for source in sources:
            assert source == "." or (REPO / source).exists(), source
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = [*wheel["packages"], *wheel.get("force-include", {}), "mcp", "pyproject.toml",
              "uv.lock", "README.md"]  # fmt: skip
    patterns = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in needed:
        assert not any(fnmatch.fnmatch(path, p) for p in patterns), f"{path} is ignored"


def test_dockerfile_dependency_layer_is_locked(tmp_path: Path) -> None:
    """The files copied before the first ``uv sync --locked`` are enough for uv to accept the
    lock (the layer that builds without the sources)."""
    uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` sets UV to itself
    assert uv, "uv not found (UV or PATH): run the tests as the README says, with uv run"
    instructions = dockerfile_instructions(DEPLOY / "Dockerfile")
    first_sync = next(
        i for i, (kind, rest) in enumerate(instructions) if kind == "RUN" and "uv sync" in rest
    )
    for kind, rest in instructions[:first_sync]:
        if kind == "COPY":
            *sources, dest = rest.split()
            for source in sources:
                target = tmp_path / dest / Path(source).name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(REPO / source, target)
    checked = subprocess.run(
        [uv, "lock", "--check", "--offline"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stderr


# --- PromQL: names and labels against core/metrics.py ----------------------------------

_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                 "count_values", "bottomk", "topk", "quantile"}  # fmt: skip
_FUNCTIONS = _AGGREGATIONS | {
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "day_of_month", "day_of_week", "days_in_month", "delta", "deriv", "exp", "floor",
    "histogram_quantile", "holt_winters", "hour", "idelta", "increase", "irate", "label_join",
    "label_replace", "ln", "log2", "log10", "minute", "month", "predict_linear", "rate",
    "resets", "round", "scalar", "sort", "sort_desc", "sqrt", "time", "timestamp", "vector",
    "year", "avg_over_time", "min_over_time", "max_over_time", "sum_over_time",
    "count_over_time", "quantile_over_time", "stddev_over_time", "stdvar_over_time",
    "last_over_time", "present_over_time",
}  # fmt: skip
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_GROUPING_CLAUSE = re.compile(rf"\b({'|'.join(_GROUPING)})\b\s*(?:\(([^)]*)\))?")
_OPERATORS = {"and", "or", "unless", "bool"}
TARGET_LABELS = {"job", "instance"}
"""Labels Prometheus adds to every scraped series."""


def known_metrics() -> dict[str, set[str]]:
    """Series name -> label names, for every metric core/metrics.py registers (with the
    ``_total``/``_bucket``/``_sum``/``_count`` series they expose) and Prometheus's own."""
    metrics: dict[str, set[str]] = {"up": set(), "ALERTS": {"alertname", "alertstate", "severity"}}
    # prometheus_client has no public accessor for a collector's series names or labels
    names_of = REGISTRY._collector_to_names
    for metric in vars(core.metrics).values():
        if isinstance(metric, MetricWrapperBase):
            for name in names_of[metric]:
                labels = set(metric._labelnames)
                metrics[name] = labels | {"le"} if name.endswith("_bucket") else labels
    assert any(name.startswith("nt_") for name in metrics), "core.metrics registered none"
    return metrics


@dataclass(frozen=True)
class Query:
    selectors: list[tuple[str, set[str]]]
    """(metric name, label names matched)."""
    grouping: set[str]
    """Label names in by/without/on/ignoring/group_* clauses."""


def parse_query(expr: str) -> Query:
    """A PromQL expression's selectors and grouping labels; raises ValueError on unbalanced
    brackets, an unknown function, or text that is not a selector, number or operator."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    depth: list[str] = []
    closing = {")": "(", "]": "[", "}": "{"}
    for char in text:
        if char in "([{":
            depth.append(char)
        elif char in closing and (not depth or depth.pop() != closing[char]):
            raise ValueError(f"unbalanced {char!r} in {expr!r}")
    if depth:
        raise ValueError(f"unclosed {depth[-1]!r} in {expr!r}")
    text = re.sub(r"\[[^\]]*\]|\boffset\s+-?\w+", " ", text)  # durations
    grouping: set[str] = set()
    for match in _GROUPING_CLAUSE.finditer(text):
        grouping |= {label.strip() for label in (match.group(2) or "").split(",") if label.strip()}
    text = _GROUPING_CLAUSE.sub(" ", text)
    selectors: list[tuple[str, set[str]]] = []
    pattern = r"([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?\s*(\()?|(\{[^}]*\})|(\S)"
    for token in re.finditer(pattern, text):
        name, matchers, call, bare, other = token.groups()
        if other is not None:
            if not re.match(r"[\d.()+\-*/%^<>=!,]", other):
                raise ValueError(f"unexpected {other!r} in {expr!r}")
        elif bare is not None:
            raise ValueError(f"a selector without a metric name in {expr!r}")
        elif name in _OPERATORS:
            continue
        elif call and not matchers:
            if name not in _FUNCTIONS:
                raise ValueError(f"unknown function {name!r} in {expr!r}")
        else:
            labels = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers or ""))
            selectors.append((name, labels))
    return Query(selectors, grouping)


def check_query(expr: str, metrics: dict[str, set[str]]) -> list[str]:
    """What is wrong with ``expr`` against the known metrics (empty when nothing is)."""
    try:
        query = parse_query(expr)
    except ValueError as e:
        return [str(e)]
    problems = []
    available = set(TARGET_LABELS) | {"le"}
    for name, labels in query.selectors:
        if name not in metrics:
            problems.append(f"{name} is not a metric of core/metrics.py (in {expr!r})")
            continue
        available |= metrics[name]
        unknown = labels - metrics[name] - TARGET_LABELS
        if unknown:
            problems.append(f"{name} has no label {sorted(unknown)} (in {expr!r})")
    if not query.selectors:
        problems.append(f"no metric in {expr!r}")
    if query.grouping - available:
        problems.append(f"grouping by {sorted(query.grouping - available)} in {expr!r}")
    return problems


def test_the_query_check_catches_what_it_claims_to() -> None:
    metrics = known_metrics()
    good = 'sum by (symbol) (rate(nt_reports_published_total{symbol=~"B.*"}[1m])) > 0'
    assert check_query(good, metrics) == []
    assert parse_query(good).selectors == [("nt_reports_published_total", {"symbol"})]
    bad = {
        "nt_no_such_metric > 1": "not a metric",
        'nt_data_age_ms{sym="X"}': "no label",
        "sum by (kind) (nt_data_age_ms)": "grouping",
        "sum(rate(nt_reports_published_total[1m])": "unclosed",
        "rat(nt_reports_published_total[1m])": "unknown function",
        "nt_data_age_ms $ 3": "unexpected",
    }
    for expr, complaint in bad.items():
        problems = check_query(expr, metrics)
        assert problems and complaint in problems[0], (expr, problems)


# --- alert rules --------------------------------------------------------------------------


def promtool(capsys: pytest.CaptureFixture[str], what: str) -> str:
    """Prometheus's own checker. CI (``.ci/run``) fetches it, so there its absence fails; on a
    developer's machine without it the test is skipped, saying so, and the fallback checks
    (the tests beside this one) still run."""
    tool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool not found (PATH or PROMTOOL): .ci/run should have fetched it")
        with capsys.disabled():
            print(f"\n  {what}: promtool not found (PATH or PROMTOOL): only the fallback ran")
        pytest.skip("promtool not found (PATH or PROMTOOL); the fallback checks ran instead")
    return tool


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub gives the headings: lower case, punctuation dropped, spaces to '-'."""
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#{1,6} (.+)$", markdown, re.MULTILINE)
    }


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_alert_rules_names_labels_and_runbooks(capsys: pytest.CaptureFixture[str]) -> None:
    metrics = known_metrics()
    rules = alert_rules()
    anchors = github_anchors(RUNBOOKS.read_text())
    wanted = {"Context8DataStale", "Context8LeaseConflicts", "Context8RebalanceStorm",
              "Context8ConsumerLagGrowing", "Context8DeadLetters", "Context8NodeDown",
              "Context8HeartbeatStale", "Context8RedisErrors"}  # fmt: skip
    assert wanted <= {rule["alert"] for rule in rules}
    problems = []
    for rule in rules:
        name = rule["alert"]
        problems += check_query(rule["expr"], metrics)
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert {"summary", "description", "runbook_url"} <= rule["annotations"].keys(), name
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert page == "docs/runbooks.md" and anchor == name.lower(), name
        assert anchor in anchors, f"docs/runbooks.md has no section {name}"
    assert not problems, "\n".join(problems)
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in prometheus["scrape_configs"]}
    for rule in rules:
        for job in re.findall(r'job=~?"([^"]+)"', rule["expr"]):
            assert any(re.fullmatch(job, known) for known in jobs), (rule["alert"], job)
    with capsys.disabled():
        print(
            f"\n  alerts: {len(rules)} rules' metrics and labels checked against "
            f"core.metrics ({len(metrics)} series names); runbook sections found"
        )


def test_alert_rules_pass_promtool(capsys: pytest.CaptureFixture[str]) -> None:
    tool = promtool(capsys, "alerts")
    runs = [
        [tool, "check", "rules", "alerts.yml"],
        [tool, "test", "rules", "alerts_test.yml"],
        [tool, "check", "config", "prometheus.yml"],
    ]
    for args in runs:
        done = subprocess.run(args, cwd=DEPLOY, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{' '.join(args[1:])}:\n{done.stdout}\n{done.stderr}"
    version = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=10)
    with capsys.disabled():
        print(
            f"\n  alerts: {version.stdout.splitlines()[0]}: check rules, test rules "
            "(deploy/alerts_test.yml) and check config passed"
        )


# --- dashboard ----------------------------------------------------------------------------

GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$symbol": ".*"}


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((DEPLOY / "grafana" / "context8.json").read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            queries.append((panel["title"], expr))
    return queries


def test_dashboard_shows_the_main_figures_from_real_metrics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "context8.json").read_text())
    assert dashboard["schemaVersion"] >= 36
    assert any(v["type"] == "datasource" for v in dashboard["templating"]["list"])
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    metrics = known_metrics()
    queries = dashboard_queries()
    problems = [p for title, expr in queries for p in check_query(expr, metrics)]
    assert not problems, "\n".join(problems)
    shown = {name for _title, expr in queries for name, _ in parse_query(expr).selectors}
    figures = {"nt_data_age_ms", "nt_event_to_report_ms_bucket", "nt_reports_published_total",
               "nt_symbols_assigned", "nt_lease_conflicts_total", "nt_hrw_rebalances_total",
               "nt_consumer_lag", "nt_stream_length", "nt_ingest_events_total",
               "nt_dead_letters_total", "nt_redis_errors_total", "nt_ws_resubscribe_total",
               "nt_calc_latency_ms_sum"}  # fmt: skip
    assert figures <= shown, sorted(figures - shown)
    with capsys.disabled():
        print(f"\n  dashboard: {len(queries)} queries' metrics and labels checked")


def test_dashboard_queries_pass_promtool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tool = promtool(capsys, "dashboard")
    # Prometheus's parser, through recording rules, one per query
    queries = dashboard_queries()
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(queries)
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [tool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with capsys.disabled():
        print(f"\n  dashboard: promtool parsed all {len(rules)} queries")


# --- the compose wiring, run as local processes ---------------------------------------------


@dataclass(frozen=True)
class LocalDeployment:
    fleet: Fleet
    redis_url: str
    mcp_port: int
    metrics_ports: dict[str, int]
    """Node name -> its NT_METRICS_PORT."""


def localize(value: str, ports: Mapping[str, int], compose_ports: Mapping[str, str]) -> str:
    """``redis://...@redis:6379`` -> ``...@127.0.0.1:<port>``: compose service names as
    loopback ports of this machine."""
    for service, port in ports.items():
        host = rf"(?<=[/@]){service}:{compose_ports[service]}\b"
        value = re.sub(host, f"127.0.0.1:{port}", value)
    return value


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    services = compose_services(COMPOSE, SIMULATOR_OVERRIDE)
    ours = context8_services(services)
    compose_ports = {
        "redis": "6379",
        "simulator": flag(ours["simulator"]["command"], "--port"),
        "mcp": flag(ours["mcp"]["command"], "--port"),
    }
    ports = {name: free_port() for name in compose_ports}
    tmp = tmp_path_factory.mktemp("deploy")
    redis_command = services["redis"]["command"]
    server = PrivateRedis(tmp / "redis", port=ports["redis"], extra_args=tuple(redis_command[1:]))
    server.start()
    # this machine's context8 settings must not leak into the services (PATH is the OS's)
    ours_only = env_names_read_by_code() - {"PATH"}
    base_env = {k: v for k, v in os.environ.items() if k not in ours_only}
    metrics_ports: dict[str, int] = {}
    deadline = time.monotonic() + 90
    try:
        with Fleet(tmp / "logs") as fleet:
            replicas = {"processor": int(ours["processor"]["deploy"]["replicas"])}
            for name in ("simulator", "ingest", "processor", "mcp"):
                service = ours[name]
                command = list(service["command"])
                if "--port" in command:
                    command[command.index("--port") + 1] = str(ports[name])
                env = {
                    k: localize(v, ports, compose_ports) for k, v in environment(service).items()
                }
                for replica in range(replicas.get(name, 1)):
                    node = f"{name}-{replica + 1}"
                    if "NT_METRICS_PORT" in env:
                        metrics_ports[node] = free_port()
                        env["NT_METRICS_PORT"] = str(metrics_ports[node])
                    fleet.spawn(node, command, {**base_env, **env})
                if name == "simulator":
                    fleet.wait_http(f"http://127.0.0.1:{ports[name]}/api/v3/ping", deadline)
            fleet.wait_http(f"http://127.0.0.1:{ports['mcp']}/health", deadline)
            yield LocalDeployment(fleet, server.url, ports["mcp"], metrics_ports)
    finally:
        server.stop()


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_compose_mcp_serves_fresh_reports_behind_the_token(deployment: LocalDeployment) -> None:
    url = f"http://127.0.0.1:{deployment.mcp_port}/get_report?symbol=BTCUSDT"
    token = SECRETS["CONTEXT8_MCP_TOKEN"]
    deadline = time.monotonic() + 90
    while True:
        deployment.fleet.check_alive()
        status, body = get(url, token)
        if status == 200 and json.loads(body)["ingestion"]["status"] == "ok":
            break
        assert time.monotonic() < deadline, f"no fresh report in time: {status} {body[:300]!r}"
        time.sleep(0.5)
    report = json.loads(body)
    assert report["symbol"] == "BTCUSDT.BINANCE" and report["data_age_ms"] <= 1000
    assert get(url)[0] == 401
    assert get(url, "not-" + token)[0] == 401
    assert get(f"http://127.0.0.1:{deployment.mcp_port}/health")[0] == 200
    # the MCP server's Redis user is the compose file's reader: it can read, never write
    reader = redis.Redis.from_url(
        deployment.redis_url.replace(
            "redis://", f"redis://{acl.READER}:{SECRETS['CONTEXT8_MCP_REDIS_PASSWORD']}@"
        ),
        socket_timeout=5,
    )
    with contextlib.closing(reader):
        assert reader.get("report:{BTCUSDT.BINANCE}") is not None
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.set("report:{BTCUSDT.BINANCE}", "x")
    admin = redis.Redis.from_url(deployment.redis_url, socket_timeout=5)
    with contextlib.closing(admin):
        assert admin.config_get("appendonly") == {"appendonly": "yes"}


def scrape(port: int, wanted: str, deadline: float, fleet: Fleet) -> str:
    """The node's /metrics once it shows ``wanted``."""
    while True:
        fleet.check_alive()
        with contextlib.suppress(OSError):
            status, body = get(f"http://127.0.0.1:{port}/metrics")
            if status == 200 and wanted in body.decode():
                return body.decode()
        assert time.monotonic() < deadline, f"port {port}: no {wanted} on /metrics in time"
        time.sleep(0.5)


def listens_on_every_interface(port: int) -> bool:
    return any(
        c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.laddr.ip in ("0.0.0.0", "::")
        for c in psutil.net_connections(kind="tcp")
    )


def test_compose_processors_are_scrapeable(deployment: LocalDeployment) -> None:
    deadline = time.monotonic() + 90
    processors = {n: p for n, p in deployment.metrics_ports.items() if n.startswith("processor")}
    assert len(processors) >= 2
    published = 0
    for port in processors.values():
        text = scrape(port, "nt_node_heartbeat", deadline, deployment.fleet)
        assert listens_on_every_interface(port), f"metrics on {port} are loopback only"
        published += text.count("nt_reports_published_total{")
    assert published >= len(SECRETS["SYMBOLS"].split(","))


def test_compose_ingest_is_scrapeable(deployment: LocalDeployment) -> None:
    port = deployment.metrics_ports["ingest-1"]
    scrape(port, "nt_ingest_events_total{", time.monotonic() + 20, deployment.fleet)
    assert listens_on_every_interface(port), f"metrics on {port} are loopback only"
