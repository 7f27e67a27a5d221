"""The end-to-end harness: everything runs for real, as in a deployment.

- The **example project** (``manage.py``, settings ``tests.e2e.settings``, which are the
  demo's plus an SMTP host) on a database of its own: a SQLite file in a temporary
  directory, or with ``DATABASE_URL=postgres://...`` a PostgreSQL database created next to
  the one named there (and dropped afterwards). It is migrated and loaded once per test
  session into a *template*; each test gets a fresh copy of it.
- Per test, as separate processes in their own process groups: the **Stripe simulator**
  (its command line), ``manage.py runserver --noreload`` and ``manage.py qcluster`` (a
  real django-q2 cluster on the ORM broker, not sync mode). The simulator's webhook
  endpoint is registered through its control API as a Connect endpoint for the event
  types the app handles, as ``manage.py register_stripe_webhook`` registers one at Stripe.
- Two **aiosmtpd servers** on loopback (``tests.smtp``): the project's default SMTP
  server (payment notifications) and a client site's own "Custom SMTP" server, which a
  test can take down and bring back on the same port.

Every process writes to a log file; ``Stack.logs()`` gives their tails, which the conftest
attaches to a failing test's report.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from aiosmtpd.controller import Controller

from tests.smtp import SMTPServer, free_port
from wagtail_client_billing.testing.stripe_simulator import RemoteSimulator

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SETTINGS_MODULE = "tests.e2e.settings"

ADMIN_USER = "admin"  # made by load_demo_data
ADMIN_EMAIL = "admin@agency.localhost"
PASSWORD = "e2e-Admin-pass-4821"
API_KEY = "sk_test_e2e_harness"  # the only key the simulator accepts
WEBHOOK_SECRET = "whsec_e2e_harness_signing_secret"
WEBHOOK_PATH = "/billing/stripe/webhook/"
# The shortest TTL the app accepts (30 min): Stripe sessions live 31 minutes, so a
# simulator clock move of 32 minutes expires them.
REQUEST_TTL = 1800
SESSION_LIFETIME = REQUEST_TTL + 60
STRIPE_TIMEOUT = 4  # seconds; see settings.py

START_TIMEOUT = 90  # seconds for a process to answer (two busy cores)
T = TypeVar("T")


class HarnessError(RuntimeError):
    """A process of the harness did not start or stopped."""


def wait_until(
    check: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
    processes: Iterable[Process] = (),
) -> T:
    """Poll ``check`` until it returns something truthy; fail if a process dies first."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        for process in processes:
            if not process.alive:
                raise HarnessError(
                    f"{process.name} exited with {process.returncode} while waiting for "
                    f"{what}:\n{process.tail()}"
                )
        if time.monotonic() > deadline:
            raise TimeoutError(f"Waited {timeout:g} s for {what}.")
        time.sleep(interval)


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_status(url: str, timeout: float = 5) -> int | None:
    """The HTTP status of a GET, or None if nothing answers."""
    try:
        with _opener.open(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies (Linux), so that a
    killed pytest leaves no server behind; the cluster then stops its own workers."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Process:
    """A command in its own process group, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.pid = self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        text = self.log().splitlines()[-lines:]
        return "\n".join(f"  | {line}" for line in text) or "  | (no output)"

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM)."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 5) -> None:
        """SIGTERM to the process, then SIGKILL to whatever is left of its group."""
        if self.alive:
            self.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Workers of the cluster, or the process itself if it did not stop in time.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._log.close()


def manage(*args: str, env: dict[str, str], log_dir: Path, name: str, timeout: float = 300) -> str:
    """Run a management command to completion; its output, or HarnessError with it."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        result = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    output = log_path.read_text(errors="replace")
    if result.returncode:
        raise HarnessError(f"manage.py {' '.join(args)} failed ({result.returncode}):\n{output}")
    return output


# Databases ------------------------------------------------------------------------------


class SQLiteDatabases:
    """A template SQLite file and a copy of it per test, in a temporary directory."""

    vendor = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.template = directory / "template.sqlite3"

    def create_template(self) -> dict[str, str]:
        return {"SQLITE_PATH": str(self.template)}

    def clone(self, name: str) -> dict[str, str]:
        target = self.directory / f"{name}.sqlite3"
        # The backup API copies a consistent database, WAL content included.
        with contextlib.closing(sqlite3.connect(self.template)) as source:
            with contextlib.closing(sqlite3.connect(target)) as copy:
                source.backup(copy)
        return {"SQLITE_PATH": str(target)}

    def drop(self, env: dict[str, str]) -> None:
        path = Path(env["SQLITE_PATH"])
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        self.drop({"SQLITE_PATH": str(self.template)})


class PostgresDatabases:
    """Databases next to the one ``DATABASE_URL`` names: ``<name>_e2e_<pid>_tpl`` (the
    template) and one ``<name>_e2e_<pid>_<test>`` per test, all dropped afterwards."""

    vendor = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        base = parts.path.lstrip("/") or "postgres"
        self.prefix = f"{base}_e2e_{os.getpid()}"[:50]
        self.template = f"{self.prefix}_tpl"
        self.created: list[str] = []

    def _url(self, name: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=f"/{name}"))

    def _execute(self, statement: str, name: str, template: str | None = None) -> None:
        import psycopg
        from psycopg import sql

        parts = urlsplit(self.url)
        connection = psycopg.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=parts.username or "postgres",
            password=parts.password,
            dbname="postgres",
            autocommit=True,
        )
        with connection:
            query = sql.SQL(statement).format(
                name=sql.Identifier(name),
                template=sql.Identifier(template or ""),
            )
            connection.execute(query)

    def create_template(self) -> dict[str, str]:
        self._execute("DROP DATABASE IF EXISTS {name} WITH (FORCE)", self.template)
        self._execute("CREATE DATABASE {name}", self.template)
        self.created.append(self.template)
        return {"DATABASE_URL": self._url(self.template)}

    def clone(self, name: str) -> dict[str, str]:
        database = f"{self.prefix}_{name}"[:63]
        self._execute("DROP DATABASE IF EXISTS {name} WITH (FORCE)", database)
        self._execute("CREATE DATABASE {name} TEMPLATE {template}", database, self.template)
        self.created.append(database)
        return {"DATABASE_URL": self._url(database)}

    def drop(self, env: dict[str, str]) -> None:
        name = urlsplit(env["DATABASE_URL"]).path.lstrip("/")
        self._execute("DROP DATABASE IF EXISTS {name} WITH (FORCE)", name)
        if name in self.created:
            self.created.remove(name)

    def close(self) -> None:
        for name in list(self.created):
            with contextlib.suppress(Exception):
                self.drop({"DATABASE_URL": self._url(name)})


def databases(directory: Path) -> SQLiteDatabases | PostgresDatabases:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        return PostgresDatabases(url)
    return SQLiteDatabases(directory)


# SMTP -----------------------------------------------------------------------------------


class MailServer(SMTPServer):
    """``tests.smtp.SMTPServer`` (plain SMTP) that can go down and come back on its port."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.running = False

    def up(self) -> None:
        if not self.running:
            # A stopped aiosmtpd controller cannot start again: a new one, same inbox.
            self.controller = Controller(self.inbox, hostname=self.host, port=self.port)
            self.controller.start()
            self.running = True

    def down(self) -> None:
        if self.running:
            self.controller.stop()
            self.running = False

    def __enter__(self) -> MailServer:
        self.controller.start()
        self.running = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def to(self, address: str) -> list[EmailMessage]:
        """Messages received for ``address`` (envelope recipients), oldest first."""
        with self.inbox._lock:
            return [
                message
                for message, (_sender, recipients) in zip(
                    self.inbox.messages, self.inbox.envelopes, strict=True
                )
                if address in recipients
            ]

    def wait_for(self, address: str, count: int = 1, timeout: float = 60) -> list[EmailMessage]:
        """Wait until ``count`` messages for ``address`` arrived; return them."""
        return wait_until(
            lambda: (messages := self.to(address)) and len(messages) >= count and messages,
            timeout=timeout,
            what=f"{count} email(s) to {address} on the {self.name} SMTP server",
        )

    def counts(self) -> dict[str, int]:
        """How many messages each recipient got."""
        result: dict[str, int] = {}
        with self.inbox._lock:
            for _sender, recipients in self.inbox.envelopes:
                for recipient in recipients:
                    result[recipient] = result.get(recipient, 0) + 1
        return result


def subject(message: EmailMessage) -> str:
    """The Subject as one line (a long or encoded one arrives folded)."""
    return " ".join(str(message["Subject"]).split())


def text_of(message: EmailMessage) -> str:
    """The plain-text body of an email."""
    part = message.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


def payment_link(message: EmailMessage) -> str:
    """The /billing/pay/<token>/ link in a billing email."""
    match = re.search(r"https?://\S+/billing/pay/[\w-]+/", text_of(message))
    if match is None:
        raise AssertionError(f"No payment link in:\n{text_of(message)}")
    return match.group(0)


# The processes --------------------------------------------------------------------------


@dataclass
class Stack:
    """One test's running system."""

    name: str
    web_port: int
    simulator: RemoteSimulator
    default_smtp: MailServer
    site_smtp: MailServer
    log_dir: Path
    processes: dict[str, Process] = field(default_factory=dict)
    database: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # the example project's environment

    @property
    def url(self) -> str:
        """The agency's admin site (``localhost``, as load_demo_data made it)."""
        return f"http://localhost:{self.web_port}"

    def site_url(self, hostname: str) -> str:
        return f"http://{hostname}:{self.web_port}"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}{WEBHOOK_PATH}"

    def check_alive(self) -> None:
        for process in self.processes.values():
            if not process.alive:
                raise HarnessError(
                    f"{process.name} stopped ({process.returncode}):\n{process.tail()}"
                )

    def logs(self, lines: int = 80) -> list[tuple[str, str]]:
        return [(name, process.tail(lines)) for name, process in self.processes.items()]

    def shell(self, code: str, name: str = "shell") -> str:
        """Python code in the example project (``manage.py shell -c``); its output."""
        return manage("shell", "-c", code, env=self.env, log_dir=self.log_dir, name=name)


class Harness:
    """Builds the template database once, then a fresh stack per test."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.web_port = free_port()  # the sites in the database name this port
        self.databases = databases(directory)
        self.template_ready = False
        self.timings: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Record how long a step took (shown in pytest's summary)."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings.append((step, time.monotonic() - started))

    def environment(
        self, database: dict[str, str], *, stripe_url: str, email_port: int, state: Path
    ) -> dict[str, str]:
        """The processes' environment: the example project's settings, by variable."""
        removed = {"DATABASE_URL", "SQLITE_PATH", "Q_REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in removed and not key.startswith(("STRIPE_", "DJANGO_"))
        }
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
                "DJANGO_DEBUG": "1",  # runserver serves the admin's static files
                "DEMO_STATE_DIR": str(state),
                "WAGTAILADMIN_BASE_URL": f"http://localhost:{self.web_port}",
                "STRIPE_API_BASE": stripe_url,
                "STRIPE_TEST_SECRET_KEY": API_KEY,
                "STRIPE_TEST_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "BILLING_REQUEST_TTL": str(REQUEST_TTL),
                "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "DJANGO_DEFAULT_FROM_EMAIL": "billing@agency.localhost",
                "WCB_E2E_EMAIL_PORT": str(email_port),
                "WCB_E2E_STRIPE_TIMEOUT": str(STRIPE_TIMEOUT),
                "WCB_E2E_PASSWORD": PASSWORD,
                "Q_WORKERS": "2",
                "PYTHONUNBUFFERED": "1",
                **database,
            }
        )
        return env

    def prepare_template(self) -> None:
        """Migrate and load the demo's people and sites once (the slow part)."""
        if self.template_ready:
            return
        log_dir = self.directory / "template"
        log_dir.mkdir(exist_ok=True)
        env = self.environment(
            self.databases.create_template(),
            stripe_url="http://127.0.0.1:9",  # nothing talks to Stripe here
            email_port=9,
            state=log_dir,
        )
        with self.timed(f"template: migrate ({self.databases.vendor})"):
            manage("migrate", "--no-input", env=env, log_dir=log_dir, name="migrate")
        with self.timed("template: load_demo_data and seed"):
            # One process: the demo's admin user and sites (load_demo_data), then ours.
            code = (
                "from django.core.management import call_command; "
                f"call_command('load_demo_data', password={PASSWORD!r}, port={self.web_port}); "
                "from tests.e2e.seed import run; run()"
            )
            manage("shell", "-c", code, env=env, log_dir=log_dir, name="seed")
        self.template_ready = True

    def start(self, name: str, default_smtp: MailServer, site_smtp: MailServer) -> Stack:
        """A fresh database, the simulator, the web server and the cluster."""
        self.prepare_template()
        log_dir = self.directory / name
        log_dir.mkdir(exist_ok=True)
        with self.timed(f"{name}: copy the database"):
            database = self.databases.clone(name)
        stack = Stack(
            name=name,
            web_port=self.web_port,
            simulator=RemoteSimulator("http://127.0.0.1:9"),
            default_smtp=default_smtp,
            site_smtp=site_smtp,
            log_dir=log_dir,
            database=database,
        )
        try:
            with self.timed(f"{name}: start the processes"):
                self._start(stack, database, log_dir)
        except BaseException:
            self.stop(stack)
            raise
        return stack

    def _start(self, stack: Stack, database: dict[str, str], log_dir: Path) -> None:
        stack.simulator = RemoteSimulator(f"http://127.0.0.1:{free_port()}")
        env = self.environment(
            database,
            stripe_url=stack.simulator.url,
            email_port=stack.default_smtp.port,
            state=log_dir,
        )
        stack.env = env
        commands = {
            "stripe-simulator": [
                PYTHON, "-m", "wagtail_client_billing.testing.stripe_simulator",
                "--port", str(urlsplit(stack.simulator.url).port), "--api-key", API_KEY,
                "--retry-base", "0.5", "--max-attempts", "8",
            ],
            "runserver": [
                PYTHON, "manage.py", "runserver", "--noreload", "--skip-checks",
                f"127.0.0.1:{self.web_port}",
            ],
            "qcluster": [PYTHON, "manage.py", "qcluster"],
        }  # fmt: skip
        for name, command in commands.items():
            stack.processes[name] = Process(name, command, env, log_dir)
        simulator, cluster = stack.processes["stripe-simulator"], stack.processes["qcluster"]
        wait_until(
            lambda: http_status(f"{stack.simulator.url}/_simulator/health") == 200,
            timeout=START_TIMEOUT,
            what="the Stripe simulator",
            processes=[simulator],
        )
        # Events about the agency's connected account reach only a Connect endpoint, which
        # gets exactly the types the app handles (as register_stripe_webhook asks Stripe).
        from wagtail_client_billing.events.endpoints import handled_event_types

        stack.simulator.add_webhook(
            stack.webhook_url,
            WEBHOOK_SECRET,
            connect=True,
            enabled_events=list(handled_event_types()),
        )
        processes = list(stack.processes.values())
        wait_until(
            lambda: http_status(f"http://127.0.0.1:{self.web_port}/admin/login/") == 200,
            timeout=START_TIMEOUT,
            what="the web server",
            interval=0.5,
            processes=processes,
        )
        wait_until(
            lambda: "running." in cluster.log(),
            timeout=START_TIMEOUT,
            what="the django-q2 cluster",
            interval=0.5,
            processes=processes,
        )

    def stop(self, stack: Stack) -> None:
        """Stop the processes (SIGTERM, then SIGKILL for what is left), drop the database."""
        with self.timed(f"{stack.name}: stop"):
            processes = list(stack.processes.values())
            for process in processes:
                process.terminate()
            for process in processes:
                process.stop()
            if stack.database:
                with contextlib.suppress(Exception):
                    self.databases.drop(stack.database)

    def close(self) -> None:
        self.databases.close()


def pending_faults(stack: Stack) -> list[dict[str, Any]]:
    """The simulator's API faults not used up yet."""
    with _opener.open(f"{stack.simulator.url}/_simulator/faults", timeout=10) as response:
        return json.loads(response.read())["faults"]


def retry_assert(check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Run ``check`` until it stops raising AssertionError (then return its value)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(interval)
