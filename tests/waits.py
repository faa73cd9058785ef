"""Waiting on a fleet of processes (used by the tests that start several)."""

import time

from context8.procs import Fleet


def wait_for(what: str, check, timeout_s: float, fleet: Fleet):
    """``check()``'s first truthy result, polled every 50 ms while every process of ``fleet``
    lives; fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        fleet.check_alive()
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
