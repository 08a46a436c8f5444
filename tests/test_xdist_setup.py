"""tests/conftest.py's pytest-xdist hooks, which the README's test command
(``python -m pytest -n auto``) relies on: each test file whole on one worker, and ``auto``
as one worker per usable CPU, at most 4."""

from __future__ import annotations

import os

import pytest

import conftest

xdist = pytest.importorskip("xdist")


def test_workers_take_whole_files(pytestconfig, monkeypatch):
    """``-n`` alone (xdist's ``--dist load``) schedules by file: ``load`` would spread a
    file's tests over the workers, each building its module-scoped model files."""
    from xdist.scheduler import LoadFileScheduling

    monkeypatch.setattr(pytestconfig.option, "dist", "load")
    monkeypatch.setattr(pytestconfig.option, "tx", ["popen"] * 2, raising=False)
    assert isinstance(conftest.pytest_xdist_make_scheduler(pytestconfig, None),
                      LoadFileScheduling)
    for other in ("loadscope", "each", "no"):  # asked for: xdist's own scheduler
        monkeypatch.setattr(pytestconfig.option, "dist", other)
        assert conftest.pytest_xdist_make_scheduler(pytestconfig, None) is None


@pytest.mark.parametrize("cpus,workers", [(1, 1), (2, 2), (3, 3), (64, 4)])
def test_auto_is_one_worker_per_usable_cpu_at_most_four(pytestconfig, monkeypatch, cpus,
                                                        workers):
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)),
                        raising=False)
    assert conftest.pytest_xdist_auto_num_workers(pytestconfig) == workers


def test_auto_leaves_the_environment_variable_to_xdist(pytestconfig, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "3")
    assert conftest.pytest_xdist_auto_num_workers(pytestconfig) is None


def test_the_hooks_are_optional_without_xdist():
    """Without pytest-xdist (``-p no:xdist``, or a venv without the test extra) the
    conftest still loads: its xdist hooks are optional, not 'unknown hook' errors."""
    import subprocess
    import sys
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-q",
         "--collect-only", os.path.join(os.path.dirname(__file__), "test_thread_policy.py")],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
