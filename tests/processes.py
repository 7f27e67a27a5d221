"""Real django-q2 clusters (``manage.py qcluster``) in their own processes, for the tests.

``QCluster`` starts the example project's ``manage.py qcluster`` in a new session (its
own process group, so a SIGKILL reaches the sentinel, the pusher, the monitor and every
worker at once, as when a machine dies), configured through the environment as a
deployment would be: the database of the running test (``DATABASE_URL`` or
``SQLITE_PATH``), ``Q_REDIS_URL`` for the Redis broker, the Stripe simulator's URL. A
settings module written to a temporary directory imports the example project's
settings and changes only ``Q_CLUSTER``: a queue name of the test's own (so runs that
share a Redis server never take each other's tasks) and whatever else the test sets
(a ``timeout``/``retry`` short enough to wait for, every result kept).

``QCluster.processed()`` reads what the cluster's workers ran from its log: one line
per task run, so a task run twice, or by both clusters, shows.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROCESSING = re.compile(r" processing (?P<name>\S+) '(?P<func>[^']+)'")

SETTINGS_TEMPLATE = '''"""A test cluster: the example project's settings, a queue of its own."""

from example_project.settings.base import *  # noqa: F403
from example_project.settings.base import Q_CLUSTER

Q_CLUSTER = {{**Q_CLUSTER, **{overrides!r}}}
'''


def wait_until(
    condition: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"Gave up after {timeout:g} s waiting for {what or condition}")
        time.sleep(interval)


def database_env(settings_dict: dict[str, Any]) -> dict[str, str]:
    """The example project's environment for the database the test runs on."""
    if settings_dict["ENGINE"] == "django.db.backends.sqlite3":
        return {"SQLITE_PATH": str(settings_dict["NAME"])}
    if "postgresql" not in settings_dict["ENGINE"]:
        raise ValueError(f"No DATABASE_URL for {settings_dict['ENGINE']}")
    from urllib.parse import quote

    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "localhost"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return {"DATABASE_URL": f"postgres://{credentials}{host}{port}/{settings_dict['NAME']}"}


def write_settings(directory: Path, module: str, q_cluster: dict[str, Any]) -> str:
    """Write the cluster's settings module into ``directory``; returns its name."""
    (directory / f"{module}.py").write_text(SETTINGS_TEMPLATE.format(overrides=q_cluster))
    return module


class QCluster:
    """One ``manage.py qcluster`` process group; its output goes to ``log_path``."""

    def __init__(self, label: str, env: dict[str, str], log_path: Path) -> None:
        self.label = label
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.kills = 0

    def start(self) -> QCluster:
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.log_path.open("ab") as log:
            log.write(f"\n--- start {self.starts + 1} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: see kill()
            )
        self.starts += 1
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_running(self, timeout: float = 60) -> None:
        """Until the sentinel says the cluster runs (its workers are forked by then)."""

        def running() -> bool:
            if not self.running:
                raise RuntimeError(f"{self.label} exited:\n{self.log_tail()}")
            return self.log().count(" running.") >= self.starts

        wait_until(running, timeout=timeout, interval=0.1, what=f"{self.label} to run")

    def kill(self) -> None:
        """SIGKILL the whole process group at once: nothing gets to clean up."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        self.kills += 1

    def terminate(self) -> None:
        """SIGTERM to the main process: django-q2 finishes the tasks it holds, then exits."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = 60) -> None:
        assert self.process is not None
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            message = f"{self.label} did not stop on SIGTERM:\n{self.log_tail()}"
            raise RuntimeError(message) from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def processed(self) -> list[tuple[str, str]]:
        """(task name, function) of every task a worker of this cluster started."""
        return [(m["name"], m["func"]) for m in PROCESSING.finditer(self.log())]


def stop(*clusters: QCluster, timeout: float = 60) -> None:
    """Stop the clusters gracefully, all at once."""
    for cluster in clusters:
        cluster.terminate()
    for cluster in clusters:
        cluster.wait_stopped(timeout)
