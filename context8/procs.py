"""Running the roles as real processes on loopback: the demo, the benchmarks and the
end-to-end tests all start the pipeline the same way, through ``start_pipeline``."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

__all__ = ["Child", "Fleet", "Pipeline", "free_port", "start_pipeline", "stop_process"]


def free_port(below: int = 65536) -> int:
    """A free loopback port under ``below``."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < below:
            return port


def stop_process(process: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``; reaped either way."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout_s)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    restarts: int = 0

    def tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@dataclass
class Fleet:
    """Child processes of ``context8`` roles, logging to files, stopped newest first."""

    log_dir: Path
    children: list[Child] = field(default_factory=list)

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        child = Child(name, self._start(name, args, env), self.log_dir / f"{name}.log", args, env)
        self.children.append(child)
        return child

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("ab") as log_file:
            return subprocess.Popen(
                [sys.executable, "-m", "context8", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # Ctrl-C reaches the parent only; it stops the children in order.
                start_new_session=True,
            )

    def revive(self) -> list[tuple[Child, int]]:
        """Start again every child that exited, with its arguments and environment: the
        children restarted, each with the exit code it died with."""
        revived = []
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                child.process = self._start(child.name, child.args, child.env)
                child.restarts += 1
                revived.append((child, code))
        return revived

    def check_alive(self) -> None:
        for child in self.children:
            if child.process.poll() is not None:
                raise RuntimeError(
                    f"{child.name} exited with {child.process.returncode}; "
                    f"last lines of {child.log_path}:\n{child.tail()}"
                )

    def wait_http(self, url: str, deadline: float) -> None:
        """Until ``url`` answers 200 (a child dying or the deadline passing raise)."""
        while True:
            self.check_alive()
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer in time")
            time.sleep(0.1)

    def stop(self, timeout_s: float = 15.0) -> None:
        for child in reversed(self.children):
            stop_process(child.process, timeout_s)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class Pipeline:
    simulator_url: str
    mcp_url: str | None
    """The MCP endpoint (``.../mcp``), when an MCP server was started."""


def start_pipeline(
    fleet: Fleet,
    *,
    redis_url: str,
    symbols: tuple[str, ...],
    node_id: str,
    simulator_args: tuple[str, ...] = (),
    mcp_port: int | None = None,
    extra_env: dict[str, str] | None = None,
    ready_timeout_s: float = 90.0,
) -> Pipeline:
    """Simulator, ingest, processor (and the MCP server over HTTP when ``mcp_port`` is
    given), each its own process, wired through ``redis_url``."""
    deadline = time.monotonic() + ready_timeout_s
    sim_port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "SYMBOLS": ",".join(symbols),
        "NT_BINANCE_HTTP_URL": f"http://127.0.0.1:{sim_port}",
        "NT_BINANCE_WS_URL": f"ws://127.0.0.1:{sim_port}",
        **(extra_env or {}),
    }
    fleet.spawn("simulator", ["simulate", "--port", str(sim_port), *simulator_args], env)
    fleet.wait_http(f"http://127.0.0.1:{sim_port}/api/v3/ping", deadline)
    for role, command in (("ingest", "ingest"), ("processor", "process")):
        role_env = {**env, "NT_NODE_ID": f"{node_id}-{role}", "NT_METRICS_PORT": str(free_port())}
        fleet.spawn(role, [command], role_env)
    mcp_url = None
    if mcp_port is not None:
        fleet.spawn("mcp", ["mcp", "--transport", "http", "--port", str(mcp_port)], env)
        fleet.wait_http(f"http://127.0.0.1:{mcp_port}/health", deadline)
        mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
    return Pipeline(simulator_url=f"http://127.0.0.1:{sim_port}", mcp_url=mcp_url)
