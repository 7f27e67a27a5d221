#!/usr/bin/env python3
"""The project's two commands, needing nothing but Python 3.11+ and pip.

    python3 dev.py demo    # the example site, the Stripe simulator and a django-q2 cluster
    python3 dev.py test    # the whole test suite (pytest arguments may follow)

Each creates (or reuses) the virtualenv in .venv and installs the project into it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("WCB_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
EXTRAS = "test,docs,build"
# Pins installed after the project, e.g. "wagtail>=7.4,<7.5" to test the older LTS.
EXTRA_REQUIREMENTS = os.environ.get("WCB_EXTRA_REQUIREMENTS", "").split()


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def ensure_venv() -> None:
    """Create .venv and install the project, unless it is already current."""
    stamp = VENV / ".installed"
    recipe = (ROOT / "pyproject.toml").read_bytes() + EXTRAS.encode()
    digest = hashlib.sha256(recipe + " ".join(EXTRA_REQUIREMENTS).encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest and PYTHON.exists():
        return
    if os.environ.get("WCB_NO_INSTALL") and PYTHON.exists():
        return  # the caller vouches for this virtualenv (the demo command's own test)
    if not PYTHON.exists():
        say(f"Creating the virtualenv in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    say("Installing the project and its test tools (first run only)")
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "-U", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[{EXTRAS}]", *EXTRA_REQUIREMENTS], check=True)
    stamp.write_text(digest)


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([str(PYTHON), "manage.py", *args], cwd=ROOT, env=env, check=True)


def free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def wait_for(url: str, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 (our own loopback URL)
            return True
        except OSError as error:
            if getattr(error, "code", None):  # an HTTP error: the server answers
                return True
            time.sleep(0.3)
    return False


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def demo() -> int:
    """Migrate, load demo data, start the simulator, a cluster and the dev server."""
    # Ctrl-C stops everything, even when a shell started the demo in the background
    # (which ignores SIGINT); so does SIGTERM (kill, a process manager).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop)
    ensure_venv()
    port = int(os.environ.get("DEMO_PORT", "8000"))
    sim_port = int(os.environ.get("DEMO_STRIPE_PORT", "12111"))
    for wanted in (port, sim_port):
        if not free(wanted):
            sys.exit(
                f"Port {wanted} is in use: stop what runs there or set DEMO_PORT / "
                "DEMO_STRIPE_PORT."
            )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings.dev",
        "STRIPE_API_BASE": f"http://127.0.0.1:{sim_port}",
        "WAGTAILADMIN_BASE_URL": f"http://localhost:{port}",
        "DEMO_PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }
    webhook_secret = env.setdefault("STRIPE_TEST_WEBHOOK_SECRET", "whsec_demo")
    state = Path(os.environ.get("DEMO_STATE_DIR", ROOT / ".demo"))  # as the settings say
    if not os.environ.get("DEMO_KEEP_DATA"):
        # The simulated Stripe keeps nothing between runs, so neither does the demo.
        shutil.rmtree(state, ignore_errors=True)
    state.mkdir(exist_ok=True)
    say(f"Migrating the demo database ({state / 'db.sqlite3'})")
    manage("migrate", "--no-input", "-v", "0", env=env)
    password = os.environ.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    # "--password=..." so that a password starting with "-" is not taken for an option.
    manage("load_demo_data", f"--password={password}", "--port", str(port), env=env)

    stripe_url = f"http://127.0.0.1:{sim_port}"
    commands = {
        "stripe-simulator": [
            str(PYTHON),
            "-m",
            "wagtail_client_billing.testing.stripe_simulator",
            "--port",
            str(sim_port),
            "--webhook-url",
            f"http://127.0.0.1:{port}/billing/stripe/webhook/",
            "--webhook-secret",
            webhook_secret,
        ],
        "django-q2 cluster": [str(PYTHON), "manage.py", "qcluster"],
        "dev server": [str(PYTHON), "manage.py", "runserver", f"0.0.0.0:{port}"],
    }
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            say(f"Starting the {name}")
            processes[name] = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        if not wait_for(f"http://127.0.0.1:{port}/admin/login/"):
            say("The dev server did not answer within a minute; see its output above.")
        if wait_for(f"{stripe_url}/_simulator/health"):
            say("Connecting a test Stripe account and sending some billing requests")
            try:
                manage(
                    "load_demo_data", f"--password={password}", "--port", str(port),
                    "--stripe-url", stripe_url, env=env,
                )  # fmt: skip
            except subprocess.CalledProcessError:
                say("The billing history could not be loaded (see above); the demo runs on.")
        print(
            "\n"
            f"  Wagtail admin:     http://localhost:{port}/admin/\n"
            f"  Username:          admin\n"
            f"  Password:          {password}\n"
            f"  Client sites:      http://acme.localhost:{port}/  "
            f"http://bakery.localhost:{port}/  http://studio.localhost:{port}/\n"
            f"  Stripe simulator:  {stripe_url}/ (no real Stripe involved)\n"
            "\n  Press Ctrl-C to stop everything.\n",
            flush=True,
        )
        while True:
            for name, process in processes.items():
                if process.poll() is not None:
                    say(f"The {name} stopped (exit code {process.returncode}); stopping the rest.")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print()
        say("Stopping")
        return 0
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def test(args: list[str]) -> int:
    """Run the whole suite, saying plainly what this machine cannot run."""
    ensure_venv()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    database = env.get("DATABASE_URL", "")
    if database.startswith(("postgres://", "postgresql://")):
        say("Database: PostgreSQL (DATABASE_URL)")
    else:
        say(
            "Database: SQLite. PostgreSQL-only tests are skipped; run again with "
            "DATABASE_URL=postgres://USER@HOST:5432/DB to run them."
        )
    chromium = env.get("CHROMIUM_PATH") or shutil.which("chromium")
    if chromium:
        say(f"Browser: {chromium}")
    else:
        say(
            "Browser: Debian's chromium is not installed, so browser tests are SKIPPED "
            "(apt-get install chromium)."
        )
    command = [str(PYTHON), "-m", "pytest", "-ra", *args]
    say(" ".join(command[2:]))
    return subprocess.run(command, cwd=ROOT, env=env).returncode


def main(argv: list[str]) -> int:
    if len(argv) >= 1 and argv[0] == "demo":
        return demo()
    if len(argv) >= 1 and argv[0] == "test":
        return test(argv[1:])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
