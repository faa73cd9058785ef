"""The Lua scripts of ``lua/``, each read once and registered as a redis-py ``Script``
(EVALSHA, reloaded transparently after NOSCRIPT, e.g. when Redis restarted)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

__all__ = ["LUA_DIR", "ScriptName", "register", "source"]

# lua/ sits beside the packages, both in the source tree and in an installed wheel.
LUA_DIR = Path(__file__).resolve().parents[1] / "lua"

ScriptName = Literal[
    "lease_acquire",
    "lease_renew",
    "lease_release",
    "lease_withdraw",
    "fenced_append",
    "fenced_write",
    "index_update",
]


@functools.cache
def source(name: ScriptName) -> str:
    return (LUA_DIR / f"{name}.lua").read_text()


def register(client: Redis, name: ScriptName) -> AsyncScript:
    return client.register_script(source(name))
