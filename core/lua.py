"""The Lua scripts of ``lua/``, each read once and registered as a redis-py ``Script``, and
the one way to run them.

Called one at a time, a ``Script`` is EVALSHA reloaded transparently after NOSCRIPT (a
restarted Redis, a flushed script cache). In a batch (a pipeline, or concurrent calls on a
cluster) redis-py's ``Script`` would first ask SCRIPT EXISTS, a second round trip per batch,
so batches send plain EVALSHA through ``run_batch``, which loads the scripts and sends again,
once, just the commands that met NOSCRIPT.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from core.redis_client import AnyAsyncRedis, Command, batch

__all__ = ["LUA_DIR", "ScriptName", "evalsha", "load", "register", "run_batch", "source"]

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


def register(client: AnyAsyncRedis, name: ScriptName) -> AsyncScript:
    return client.register_script(source(name))


def evalsha(script: AsyncScript, keys: Sequence[str], args: Sequence[object]) -> Command:
    """A batch command running ``script`` (see ``run_batch``)."""
    return ("evalsha", (script.sha, len(keys), *keys, *args), {})


async def load(client: AnyAsyncRedis, scripts: Iterable[AsyncScript]) -> None:
    """Load ``scripts`` into Redis's script cache (every primary, on a cluster)."""
    for script in scripts:
        await client.script_load(script.script)


async def run_batch(
    client: AnyAsyncRedis, commands: Sequence[Command], scripts: Iterable[AsyncScript]
) -> list[Any]:
    """``commands`` in one round trip (``core.redis_client.batch``: results or errors in
    order); the ones refused with NOSCRIPT are sent again, once, after loading ``scripts``."""
    results = await batch(client, commands)
    missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
    if missing:
        await load(client, scripts)
        again = await batch(client, [commands[i] for i in missing])
        for i, result in zip(missing, again, strict=True):
            results[i] = result
    return results
