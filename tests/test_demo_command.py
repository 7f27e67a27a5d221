"""The README's demo command, run as a user runs it: ``python3 dev.py demo``, then Ctrl-C.

It migrates a fresh SQLite database, loads the demo data, starts the Stripe simulator, a
django-q2 cluster and the dev server, connects a test account on the simulator and sends
some billing requests whose webhooks the simulator delivers; Ctrl-C stops everything.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests.smtp import free_port

ROOT = Path(__file__).resolve().parent.parent
# A password that argparse would take for an option if it were passed as "--password X".
PASSWORD = "-looks-like-an-option"
STARTUP_SECONDS = 240


class Output:
    """The demo's combined output, read in a thread so that its pipe never fills up."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, process: subprocess.Popen, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if needle in self.text:
                return True
            if process.poll() is not None:
                self.thread.join(5)
                return needle in self.text
            time.sleep(0.5)
        return False


def log_in(base: str) -> urllib.request.OpenerDirector:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/admin/login/", timeout=30).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = {"csrfmiddlewaretoken": token, "username": "admin", "password": PASSWORD}
    request = urllib.request.Request(  # noqa: S310 (our own loopback URL)
        f"{base}/admin/login/",
        data=urllib.parse.urlencode(form).encode(),
        headers={"Referer": f"{base}/admin/login/"},
    )
    response = opener.open(request, timeout=30)
    assert response.url.rstrip("/").endswith("/admin"), response.url
    return opener


def port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_the_demo_command_serves_the_admin_with_billing_history_and_stops_on_ctrl_c(tmp_path):
    web_port, stripe_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)},
        "DEMO_PORT": str(web_port),
        "DEMO_STRIPE_PORT": str(stripe_port),
        "DEMO_STATE_DIR": str(tmp_path),  # never a developer's own .demo
        "DEMO_ADMIN_PASSWORD": PASSWORD,
        "WCB_VENV": sys.prefix,  # this very virtualenv, as it is
        "WCB_NO_INSTALL": "1",
    }
    env.pop("DATABASE_URL", None)  # the demo is SQLite, whatever the suite runs on
    process = subprocess.Popen(
        [sys.executable, "dev.py", "demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As "python3 dev.py demo &" in a script starts it: with SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    output = Output(process)
    try:
        assert output.wait_for("Press Ctrl-C", process, STARTUP_SECONDS), output.text
        assert f"Password:          {PASSWORD}" in output.text
        assert "Billing history: 6 requests on the simulator." in output.text, output.text
        assert (tmp_path / "db.sqlite3").exists()

        base = f"http://localhost:{web_port}"
        admin = log_in(base)
        overview = f"{base}/admin/client-billing/requests/overview/?status=paid"
        deadline = time.monotonic() + 60  # the webhooks reach the dev server on their own
        while True:
            page = admin.open(overview, timeout=30).read().decode()
            if "Website redesign" in page and "Care plan" in page:
                break
            assert time.monotonic() < deadline, page
            time.sleep(1)
        for site, name in (
            ("acme", "Acme Plumbing"),
            ("bakery", "Rue Haute Bakery"),
            ("studio", "Studio Nord"),
        ):
            # *.localhost, as a browser resolves it (the resolver here may not).
            home = urllib.request.Request(
                f"http://127.0.0.1:{web_port}/", headers={"Host": f"{site}.localhost:{web_port}"}
            )
            assert name in urllib.request.urlopen(home, timeout=30).read().decode()  # noqa: S310
        health = f"http://127.0.0.1:{stripe_port}/_simulator/health"
        assert urllib.request.urlopen(health, timeout=30).status == 200
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            returncode = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert returncode == 0, output.text
    assert "Stopping" in output.text
    deadline = time.monotonic() + 15
    while not (port_is_free(web_port) and port_is_free(stripe_port)):
        assert time.monotonic() < deadline, "the demo left a server running"
        time.sleep(0.5)
