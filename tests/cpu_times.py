"""pytest plugin: each test's CPU seconds (this process and its waited-for children) and wall seconds, appended
to the file named by $ASELECT_TEST_CPU_TIMES (one line per test: cpu wall nodeid). CPU time barely changes
when other processes share the machine, so it measures a test's cost on a busy CPU where wall time cannot."""

from __future__ import annotations

import os
import resource
import time

import pytest


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    path = os.environ.get("ASELECT_TEST_CPU_TIMES")
    cpu, wall = _cpu_seconds(), time.perf_counter()
    yield
    if path:
        with open(path, "a") as out:
            out.write(f"{_cpu_seconds() - cpu:.2f} {time.perf_counter() - wall:.2f} {item.nodeid}\n")
