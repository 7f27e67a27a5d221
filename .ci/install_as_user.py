#!/usr/bin/env python3
"""Install the wheel as a user would and follow README's install steps literally.

    python3 .ci/install_as_user.py [dist/wagtail_client_billing-*.whl] [--layout NAME]... [--keep]

Standard library only; the virtualenv gets the Python that runs it (so Python 3.12+
installs Django 6.0). Without a wheel it builds one from the working tree (in a
temporary copy: the checkout is left alone). Then, in a temporary directory:

1. a fresh virtualenv, and README's ``pip install`` with the wheel in place of the
   package name (which must be the wheel's);
2. a new project in each layout (``--layout``, by default both, in the same virtualenv):
   ``wagtail-start``, a fresh ``wagtail start mysite`` (settings in ``settings/base.py``
   and ``dev.py``); ``single-file``, an older-style ``django-admin startproject mysite``
   with Wagtail added as Wagtail's "Integrating Wagtail into a Django project" says: one
   ``mysite/settings.py`` whose INSTALLED_APPS already lists ``wagtail.contrib.settings``
   (as Wagtail's bakerydemo does), and Django's default (SMTP) email backend;
3. README's install blocks, found by their ``<!-- install: NAME -->`` markers: the
   settings, email-settings and sqlite-settings blocks appended to the settings module
   as they are (the EMAIL_BACKEND in force then must be the one README's warning says),
   the urls block's lines put before Wagtail's catch-all in ``mysite/urls.py``, the
   shell block's commands run (``qcluster`` in the background, checked to start);
   ``check`` must show the app's warning that no Stripe key is set;
4. the app's system checks: a key without a webhook secret (W003), a live key given as
   the test key (E001), README's simulator key and webhook secret (no messages);
5. a smoke test of the running project: README's simulator blocks (the Stripe simulator
   from the installed wheel, ``STRIPE_API_BASE``), ``runserver`` and a real ``qcluster``;
   log in over HTTP, open the app's admin pages, refuse a badly signed webhook, connect a
   test account through the simulator's onboarding page, send a billing request from the
   admin form, see the email the cluster sends, pay it on the simulator's Checkout page
   and see it Paid through the webhook.

Anything that does not work as README says fails the run with a message naming the step
(the project and the logs are then kept). ``--readme`` follows another README (to test
this script); ``--keep`` keeps the temporary directory.
``WCB_INSTALL_PIP_ARGS`` adds pip arguments (for example ``"wagtail>=7.4,<7.5"``).
"""

from __future__ import annotations

import argparse
import html.parser
import http.cookiejar
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SECTION = "## Install into your Wagtail project"
MARKER = re.compile(r"<!--\s*install:\s*([\w-]+)\s*-->\s*\n\s*```(\w*)\n(.*?)\n```", re.S)
FENCE = re.compile(r"^```\w*\n.*?^```", re.S | re.M)
REQUIRED_BLOCKS = {
    "pip": "sh",
    "settings": "python",
    "email-settings": "python",
    "sqlite-settings": "python",
    "urls": "python",
    "shell": "sh",
    "simulator-settings": "python",
    "simulator-shell": "sh",
}
CATCH_ALL = 'path("", include(wagtail_urls)),'
LAYOUTS = ("wagtail-start", "single-file")
CONSOLE_EMAIL = "django.core.mail.backends.console.EmailBackend"
# Wagtail added to a `django-admin startproject` project as Wagtail's docs say
# (https://docs.wagtail.org/en/stable/getting_started/integrating_into_django.html), the
# wagtail.contrib.settings app listed among them as bakerydemo lists it.
SINGLE_FILE_APPS = [
    "wagtail.contrib.forms",
    "wagtail.contrib.redirects",
    "wagtail.contrib.settings",
    "wagtail.embeds",
    "wagtail.sites",
    "wagtail.users",
    "wagtail.snippets",
    "wagtail.documents",
    "wagtail.images",
    "wagtail.search",
    "wagtail.admin",
    "wagtail",
    "modelcluster",
    "taggit",
]
SINGLE_FILE_SETTINGS = """
# Wagtail, added as "Integrating Wagtail into a Django project" says.
MIDDLEWARE += ["wagtail.contrib.redirects.middleware.RedirectMiddleware"]
MEDIA_ROOT = BASE_DIR / "media"
MEDIA_URL = "/media/"
WAGTAIL_SITE_NAME = "My site"
WAGTAILADMIN_BASE_URL = "http://localhost:8000"
"""
SINGLE_FILE_URLS = """from django.contrib import admin
from django.urls import include, path
from wagtail import urls as wagtail_urls
from wagtail.admin import urls as wagtailadmin_urls
from wagtail.documents import urls as wagtaildocs_urls

urlpatterns = [
    path("django-admin/", admin.site.urls),
    path("admin/", include(wagtailadmin_urls)),
    path("documents/", include(wagtaildocs_urls)),
    path("", include(wagtail_urls)),
]
"""
LONG_RUNNING = ("qcluster", "runserver")
PASSWORD = "install-as-user-Pw-1"  # noqa: S105 (a throwaway superuser in a temp project)
STARTED = time.monotonic()


class Failed(Exception):
    """The install or the smoke test went wrong; the message says where and why."""


def say(message: str) -> None:
    print(f"[install-as-user {time.monotonic() - STARTED:5.1f}s] {message}", flush=True)


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


# README ---------------------------------------------------------------------------------


def readme_blocks(path: Path = README) -> tuple[dict[str, str], str]:
    """The install section's marked code blocks by name, and the section's text."""
    text = path.read_text(encoding="utf-8")
    if SECTION not in text:
        raise Failed(f"README has no {SECTION!r} section.")
    section = text.split(SECTION, 1)[1]
    section = re.split(r"^## ", section, maxsplit=1, flags=re.M)[0]
    blocks: dict[str, str] = {}
    for name, language, body in MARKER.findall(section):
        if name in blocks:
            raise Failed(f"README's install section has two blocks marked {name!r}.")
        if name in REQUIRED_BLOCKS and language != REQUIRED_BLOCKS[name]:
            raise Failed(
                f"README's {name!r} block is ```{language}, expected ```{REQUIRED_BLOCKS[name]}."
            )
        blocks[name] = body
    missing = [name for name in REQUIRED_BLOCKS if name not in blocks]
    if missing:
        raise Failed(
            "README's install section lacks blocks marked "
            + ", ".join(f"<!-- install: {name} -->" for name in missing)
            + " (an HTML comment on the line before the ``` block)."
        )
    unmarked = len(FENCE.findall(section)) - len(blocks)
    if unmarked:
        raise Failed(
            f"README's install section has {unmarked} code block(s) without an "
            "<!-- install: NAME --> marker: mark each so this check follows it."
        )
    return blocks, section


def shell_commands(block: str) -> list[list[str]]:
    """The commands of a ```sh block: continuation lines joined, comments dropped."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(words)
    return commands


# Processes ------------------------------------------------------------------------------


class Processes:
    """Background processes this script started (each in its own session), logs in files."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, tuple[subprocess.Popen, Path]] = {}
        self.stop_signals: dict[str, int] = {}

    def start(
        self, name: str, argv: list[str], *, cwd: Path, env: dict[str, str], stop=signal.SIGTERM
    ) -> Path:
        """Start ``argv`` in its own process group; ``stop`` is the signal that ends it."""
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.running[name] = (process, log)
        self.stop_signals[name] = stop
        return log

    def log(self, name: str) -> str:
        return self.running[name][1].read_text(errors="replace")

    def check_alive(self, name: str) -> None:
        process, _log = self.running[name]
        if process.poll() is not None:
            raise Failed(
                f"{name} stopped (exit code {process.returncode}):\n{tail(self.log(name))}"
            )

    def stop(self, *names: str, grace: float = 20) -> None:
        """Each one's stop signal to its group (all at once), then SIGKILL after ``grace``."""
        stopping = {name: self.running.pop(name)[0] for name in names}
        begun = time.monotonic()
        for name, process in stopping.items():
            if process.poll() is None:
                os.killpg(process.pid, self.stop_signals[name])
        for name, process in stopping.items():
            try:
                process.wait(timeout=max(0.1, begun + grace - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop within {grace:g}s: SIGKILL")
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        say(f"stopped {', '.join(names)} in {time.monotonic() - begun:.1f}s")

    def stop_all(self) -> None:
        if self.running:
            self.stop(*self.running)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(what: str, ready, timeout: float, *, alive=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive:
            alive()
        if ready():
            return
        time.sleep(0.3)
    raise Failed(f"Timed out after {timeout:g}s waiting for {what}.")


# HTTP -----------------------------------------------------------------------------------


class Page:
    def __init__(self, status: int, url: str, headers, body: bytes) -> None:
        self.status, self.url, self.headers = status, url, headers
        self.text = body.decode("utf-8", errors="replace")

    @property
    def location(self) -> str:
        return urllib.parse.urljoin(self.url, self.headers.get("Location", ""))

    def title(self) -> str:
        match = re.search(r"<title>(.*?)</title>", self.text, re.S)
        return " ".join(match.group(1).split()) if match else ""

    def forms(self) -> list[dict]:
        parser = FormParser()
        parser.feed(self.text)
        return parser.forms

    def form(self, containing: str) -> dict:
        """The first form whose action or inputs mention ``containing``."""
        for form in self.forms():
            if (
                containing in form["action"]
                or containing in form["fields"]
                or any(containing == label for _n, _v, label in form["buttons"])
            ):
                return form
        raise Failed(f"No form with {containing!r} on {self.url} ({self.title()!r}).")


class FormParser(html.parser.HTMLParser):
    """Forms with their action, fields (name -> value), selects' options and buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self.select: str | None = None
        self.button: list | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag == "form":
            self.forms.append(
                {
                    "action": a.get("action", ""),
                    "method": a.get("method", "get").lower(),
                    "fields": {},
                    "options": {},
                    "buttons": [],
                }
            )
            return
        if not self.forms:
            return
        form = self.forms[-1]
        name = a.get("name", "")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    form["fields"][name] = a.get("value", "on")
                else:
                    form["fields"].setdefault(name, None)
            elif kind not in ("submit", "button", "image", "file"):
                form["fields"][name] = a.get("value", "")
        elif tag == "textarea" and name:
            form["fields"][name] = ""
        elif tag == "select" and name:
            self.select = name
            form["fields"][name] = None
            form["options"][name] = []
        elif tag == "option" and self.select:
            value = a.get("value", "")
            form["options"][self.select].append(value)
            if "selected" in a or form["fields"][self.select] is None:
                form["fields"][self.select] = value
        elif tag == "button" and a.get("type", "submit") == "submit":
            self.button = [name, a.get("value", ""), ""]
            form["buttons"].append(self.button)

    def handle_data(self, data: str) -> None:
        if self.button is not None:
            self.button[2] += data.strip()

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self.select = None
        elif tag == "button" and self.button is not None:
            self.button = None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """A cookie-keeping HTTP client that never follows redirects on its own."""

    def __init__(self) -> None:
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirects
        )

    def request(
        self, url: str, data: dict | bytes | None = None, headers: dict | None = None
    ) -> Page:
        if isinstance(data, dict):
            pairs = [(k, v) for k, v in data.items() if v is not None]
            data = urllib.parse.urlencode(pairs).encode()
        request = urllib.request.Request(url, data=data, headers=headers or {})  # noqa: S310
        try:
            with self.opener.open(request, timeout=60) as response:
                return Page(response.status, url, response.headers, response.read())
        except urllib.error.HTTPError as error:
            return Page(error.code, url, error.headers, error.read())

    def get(self, url: str) -> Page:
        return self.request(url)

    def follow(self, page: Page, limit: int = 5) -> Page:
        for _ in range(limit):
            if page.status not in (301, 302, 303, 307, 308):
                return page
            page = self.get(page.location)
        raise Failed(f"Too many redirects from {page.url}.")

    def submit(self, page: Page, form: dict, values: dict, button: str | None = None) -> Page:
        data = dict(form["fields"])
        data.update(values)
        if button is not None:
            for name, value, label in form["buttons"]:
                if label == button:
                    if name:
                        data[name] = value
                    break
            else:
                raise Failed(f"No {button!r} button on {page.url}.")
        action = urllib.parse.urljoin(page.url, form["action"] or page.url)
        return self.request(action, data, headers={"Referer": page.url})


def expect(page: Page, status: int, what: str) -> Page:
    if page.status != status:
        raise Failed(
            f"{what}: {page.url} answered {page.status}, expected {status} "
            f"(title {page.title()!r}).\n{tail(page.text, 15)}"
        )
    return page


def expect_title(page: Page, wanted: str, what: str) -> None:
    expect(page, 200, what)
    if wanted not in page.title():
        raise Failed(f"{what}: title of {page.url} is {page.title()!r}, expected {wanted!r}.")


# The steps --------------------------------------------------------------------------------


class Install:
    def __init__(self, work: Path, wheel: Path | None, readme: Path = README) -> None:
        self.blocks, self.section = readme_blocks(readme)
        self.work = work
        self.wheel = wheel
        self.venv = work / "venv"
        self.bin = self.venv / "bin"
        self.layout = ""
        self.project = work / "mysite"
        self.settings = self.project / "mysite" / "settings" / "base.py"
        self.logs = work / "logs"
        self.logs.mkdir()
        self.processes = Processes(self.logs)
        path = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
        # A user's shell: the virtualenv active, none of CI's Django or Stripe variables.
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("STRIPE_", "DJANGO_", "WAGTAIL", "PYTHON", "VIRTUAL_ENV"))
        }
        self.env.update(PATH=path, VIRTUAL_ENV=str(self.venv), PYTHONUNBUFFERED="1")

    # Running commands

    def run(
        self,
        argv: list[str],
        *,
        cwd: Path | None = None,
        env: dict | None = None,
        timeout: float = 300,
        ok: bool = True,
    ) -> subprocess.CompletedProcess:
        env = env or self.env
        resolved = shutil.which(argv[0], path=env["PATH"]) or argv[0]
        result = subprocess.run(
            [resolved, *argv[1:]],
            cwd=cwd or self.project,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if ok and result.returncode != 0:
            raise Failed(
                f"`{shlex.join(argv)}` failed (exit code {result.returncode}):\n"
                f"{tail(result.stdout + result.stderr)}"
            )
        return result

    def user_command(self, argv: list[str]) -> list[str]:
        """A README command, checked to be the virtualenv's python (or pip)."""
        if argv[0] not in ("python", "pip"):
            raise Failed(f"README command `{shlex.join(argv)}` does not start with python/pip.")
        found = shutil.which(argv[0], path=self.env["PATH"])
        if not found or Path(found).parent != self.bin:
            raise Failed(f"{argv[0]} is not the virtualenv's ({found}).")
        return argv

    # 1. Wheel and virtualenv

    def build_wheel(self) -> Path:
        say("Building the wheel from the working tree (in a copy)")
        files = (
            subprocess.run(
                ["git", "ls-files", "-co", "--exclude-standard", "-z"],
                cwd=ROOT,
                capture_output=True,
                check=True,
            )
            .stdout.decode()
            .split("\0")
        )
        source = self.work / "source"
        for name in filter(None, files):
            if (ROOT / name).is_file():
                (source / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, source / name)
        out = self.work / "wheel"
        self.run(
            [
                str(self.bin / "python"),
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "-w",
                str(out),
                str(source),
            ],
            cwd=self.work,
        )
        [wheel] = out.glob("*.whl")
        return wheel

    def install(self) -> None:
        say(f"Fresh virtualenv in {self.venv}")
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        if self.wheel is None:
            self.wheel = self.build_wheel()
        commands = shell_commands(self.blocks["pip"])
        command = commands[0] if len(commands) == 1 else []
        if command[:2] != ["pip", "install"] or len(command) != 3:
            raise Failed(f"README's pip block should be `pip install NAME`, not {commands}.")
        name = re.sub(r"[-_.]+", "-", command[2]).lower()
        wheel_name = re.sub(r"[-_.]+", "-", self.wheel.name.split("-")[0]).lower()
        if name != wheel_name:
            raise Failed(f"README installs {command[2]!r} but the wheel is {wheel_name!r}.")
        extra = shlex.split(os.environ.get("WCB_INSTALL_PIP_ARGS", ""))
        say(f"pip install {self.wheel.name} {shlex.join(extra)} (README: {shlex.join(command)})")
        self.run(
            [
                *self.user_command(["pip", "install"]),
                "-q",
                "--disable-pip-version-check",
                "--no-compile",  # much faster; Python compiles what it imports
                str(self.wheel),
                *extra,
            ],
            cwd=self.work,
            timeout=600,
        )
        versions = self.run(
            [
                "python",
                "-c",
                "import django, wagtail, stripe, wagtail_client_billing as w; "
                "print(f'Django {django.__version__}, Wagtail {wagtail.__version__}, "
                "stripe {stripe.VERSION}, wagtail-client-billing {w.__version__}')",
            ],
            cwd=self.work,
        ).stdout.strip()
        say(f"Installed: {versions}")

    # 2. A new project

    def start_project(self, layout: str) -> None:
        """A new project in ``layout`` (see LAYOUTS), in its own folder with its own logs."""
        self.processes.stop_all()
        self.layout = layout
        folder = self.work / layout
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True)
        self.processes = Processes(self.logs)
        self.project = folder / "mysite"
        if layout == "wagtail-start":
            say("[wagtail-start] wagtail start mysite")
            self.run(["wagtail", "start", "mysite"], cwd=folder)
            self.settings = self.project / "mysite" / "settings" / "base.py"
        else:
            say("[single-file] django-admin startproject mysite, Wagtail added as its docs say")
            self.run(["django-admin", "startproject", "mysite"], cwd=folder)
            self.settings = self.project / "mysite" / "settings.py"
            text = self.settings.read_text(encoding="utf-8")
            if text.count("INSTALLED_APPS = [\n") != 1:
                raise Failed("`django-admin startproject` made no INSTALLED_APPS = [ list.")
            apps = "".join(f'    "{app}",\n' for app in SINGLE_FILE_APPS)
            text = text.replace("INSTALLED_APPS = [\n", "INSTALLED_APPS = [\n" + apps)
            self.settings.write_text(text + SINGLE_FILE_SETTINGS, encoding="utf-8")
            (self.project / "mysite" / "urls.py").write_text(SINGLE_FILE_URLS, encoding="utf-8")
        for path in (self.project / "manage.py", self.settings, self.project / "mysite/urls.py"):
            if not path.is_file():
                raise Failed(f"The {layout} project has no {path.relative_to(folder)}.")

    # 3. README's blocks

    def apply_settings(self) -> None:
        name = self.settings.relative_to(self.project)
        say(f"README settings, email-settings and sqlite-settings blocks -> end of {name}")
        with self.settings.open("a", encoding="utf-8") as out:
            for block in ("settings", "email-settings", "sqlite-settings"):
                # Both layouts are SQLite projects: README's SQLite block applies.
                out.write(f"\n\n# README.md, Install into your Wagtail project: {block}\n")
                out.write(self.blocks[block] + "\n")
        # README warns that `wagtail start`'s dev.py puts the console backend back; a
        # single settings file keeps README's.
        readme = re.search(r'^EMAIL_BACKEND = "([\w.]+)"', self.blocks["email-settings"], re.M)
        if readme is None:
            raise Failed("README's email-settings block sets no EMAIL_BACKEND.")
        if CONSOLE_EMAIL not in self.section:
            raise Failed(f"README's install section does not warn about {CONSOLE_EMAIL}.")
        wanted = CONSOLE_EMAIL if self.layout == "wagtail-start" else readme.group(1)
        backend = self.run(
            [
                "python",
                "manage.py",
                "shell",
                "-c",
                "from django.conf import settings; print('BACKEND', settings.EMAIL_BACKEND)",
            ]
        ).stdout
        backend = next((x[8:] for x in backend.splitlines() if x.startswith("BACKEND ")), backend)
        if backend != wanted:
            raise Failed(f"EMAIL_BACKEND after README's blocks is {backend!r}, not {wanted!r}.")
        say(f"  EMAIL_BACKEND then: {backend}")

    def apply_urls(self) -> None:
        urls = self.project / "mysite" / "urls.py"
        say("README urls block -> mysite/urls.py, before Wagtail's catch-all")
        text = urls.read_text(encoding="utf-8")
        lines = self.blocks["urls"].splitlines()
        imports = [line for line in lines if line.startswith(("from ", "import "))]
        body = [line.strip() for line in lines if line.startswith((" ", "\t"))]
        if CATCH_ALL not in body:
            raise Failed(f"README's urls block does not show Wagtail's catch-all {CATCH_ALL}.")
        new = [line for line in body[: body.index(CATCH_ALL)] if not line.startswith("#")]
        if not new:
            raise Failed("README's urls block has no line before Wagtail's catch-all.")
        if any(
            line not in (CATCH_ALL,) and not line.startswith("#")
            for line in body[body.index(CATCH_ALL) + 1 :]
        ):
            raise Failed("README's urls block has patterns after Wagtail's catch-all.")
        at = re.search(r"^([ \t]*)" + re.escape(CATCH_ALL), text, re.M)
        if at is None:
            raise Failed(f"mysite/urls.py of the {self.layout} project has no {CATCH_ALL}.")
        indent = at.group(1)
        added = "".join(f"{indent}{line}\n" for line in new)
        text = text[: at.start()] + added + text[at.start() :]
        missing = [line for line in imports if line not in text.splitlines()]
        text = "".join(f"{line}\n" for line in missing) + text
        urls.write_text(text, encoding="utf-8")

    def follow_shell(self) -> None:
        """README's shell block, in a user's environment (no Stripe keys yet)."""
        for argv in shell_commands(self.blocks["shell"]):
            self.user_command(argv)
            if any(word in argv for word in LONG_RUNNING):
                say(f"README: {shlex.join(argv)} (in the background)")
                # Stopped as Ctrl-C stops it: SIGINT to its process group. (SIGTERM to the
                # whole group leaves django-q2's cluster hanging in "stopping".)
                self.processes.start(
                    "readme-qcluster", argv, cwd=self.project, env=self.env, stop=signal.SIGINT
                )
                wait_until(
                    "README's qcluster to start",
                    lambda: "running" in self.processes.log("readme-qcluster").lower(),
                    60,
                    alive=lambda: self.processes.check_alive("readme-qcluster"),
                )
                time.sleep(2)
                self.processes.check_alive("readme-qcluster")
                self.processes.stop("readme-qcluster")
                log = (self.logs / "readme-qcluster.log").read_text(errors="replace")
                if "Traceback" in log:
                    raise Failed(f"README's qcluster logged an error:\n{tail(log)}")
                continue
            say(f"README: {shlex.join(argv)}")
            try:
                result = self.run(argv)
            except Failed as error:
                raise Failed(f"Following README's install steps: {error}") from None
            if argv[-1] == "check":
                self.expect_checks(result, ["W002"], "with no Stripe key (README, no env)")

    def expect_checks(self, result, wanted: list[str], what: str) -> None:
        output = result.stdout + result.stderr
        found = sorted(set(re.findall(r"wagtail_client_billing\.([EW]\d{3})", output)))
        if found != sorted(wanted):
            raise Failed(
                f"manage.py check {what}: the app's checks said {found or 'nothing'}, "
                f"expected {wanted or 'nothing'}:\n{tail(output)}"
            )
        say(f"  check {what}: {', '.join(wanted) or 'no app messages'}")

    # 4. System checks

    def checks(self) -> None:
        cases = [
            ({"STRIPE_TEST_SECRET_KEY": "sk_test_x"}, ["W003"], "with a key, no webhook secret"),
            ({"STRIPE_TEST_SECRET_KEY": "sk_live_x"}, ["E001"], "with a live key as the test key"),
        ]
        for extra, wanted, what in cases:
            result = self.run(["python", "manage.py", "check"], env={**self.env, **extra}, ok=False)
            if (result.returncode != 0) != any(w.startswith("E") for w in wanted):
                raise Failed(f"manage.py check {what} exited {result.returncode}.")
            self.expect_checks(result, wanted, what)

    # 5. Smoke test

    def smoke(self) -> None:
        web_port, sim_port = free_port(), free_port()
        site = f"http://127.0.0.1:{web_port}"
        sim = f"http://127.0.0.1:{sim_port}"

        # README's simulator blocks, on free ports instead of 12111 and 8000.
        line = self.blocks["simulator-settings"]
        if "http://127.0.0.1:12111" not in line:
            raise Failed("README's simulator-settings block no longer uses http://127.0.0.1:12111.")
        with self.settings.open("a", encoding="utf-8") as out:
            out.write("\n# README.md: simulator-settings (on a free port)\n")
            out.write(line.replace("http://127.0.0.1:12111", sim) + "\n")
        commands = shell_commands(self.blocks["simulator-shell"])
        if len(commands) != 1:
            raise Failed("README's simulator-shell block should hold one command.")
        [argv] = commands
        options = dict(zip(argv[3::2], argv[4::2], strict=False))
        if argv[:3] != ["python", "-m", "wagtail_client_billing.testing.stripe_simulator"]:
            raise Failed(f"README's simulator command is not the bundled simulator: {argv}")
        if options.get("--port") != "12111":
            raise Failed("README's simulator command does not use --port 12111.")
        hook = options.get("--webhook-url", "")
        if hook != "http://127.0.0.1:8000/billing/stripe/webhook/":
            raise Failed(f"README's simulator sends webhooks to {hook!r}, not the app's URL.")
        secret = options.get("--webhook-secret", "")
        env_names = dict(
            re.findall(r"`(STRIPE_TEST_(?:SECRET_KEY|WEBHOOK_SECRET))=(\S+?)`", self.section)
        )
        if env_names.get("STRIPE_TEST_WEBHOOK_SECRET") != secret:
            raise Failed(
                "README's STRIPE_TEST_WEBHOOK_SECRET "
                f"({env_names.get('STRIPE_TEST_WEBHOOK_SECRET')}) differs from the "
                f"simulator's --webhook-secret ({secret})."
            )
        if not env_names.get("STRIPE_TEST_SECRET_KEY", "").startswith("sk_test_"):
            raise Failed("README does not say which STRIPE_TEST_SECRET_KEY to use with it.")
        argv = [
            a.replace("12111", str(sim_port)).replace("127.0.0.1:8000", f"127.0.0.1:{web_port}")
            for a in argv
        ]
        env = {**self.env, **env_names}
        self.expect_checks(
            self.run(["python", "manage.py", "check"], env=env),
            [],
            "with README's simulator key and webhook secret",
        )

        say(f"Stripe simulator (README's command) on {sim}")
        self.processes.start("simulator", self.user_command(argv), cwd=self.project, env=env)
        say(f"runserver --noreload on {site}, and qcluster")
        self.processes.start(
            "runserver",
            ["python", "manage.py", "runserver", "--noreload", f"127.0.0.1:{web_port}"],
            cwd=self.project,
            env=env,
        )
        self.processes.start(
            "qcluster",
            ["python", "manage.py", "qcluster"],
            cwd=self.project,
            env=env,
            stop=signal.SIGINT,
        )
        self.run(
            [
                "python",
                "manage.py",
                "createsuperuser",
                "--noinput",
                "--username",
                "admin",
                "--email",
                "admin@example.com",
            ],
            env={**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
        )
        browser = Browser()

        def answers(url: str) -> bool:
            try:
                return browser.get(url).status < 500
            except OSError:
                return False

        for name, url in (
            ("simulator", f"{sim}/_simulator/health"),
            ("runserver", f"{site}/admin/login/"),
        ):
            wait_until(
                f"{name} at {url}",
                lambda u=url: answers(u),
                60,
                alive=lambda n=name: self.processes.check_alive(n),
            )
        wait_until(
            "qcluster to start",
            lambda: "running" in self.processes.log("qcluster").lower(),
            60,
            alive=lambda: self.processes.check_alive("qcluster"),
        )

        # Public URLs
        bad = browser.request(
            f"{site}/billing/stripe/webhook/",
            b'{"id": "evt_1", "type": "account.updated"}',
            headers={"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=bad"},
        )
        expect(bad, 400, "A webhook with a bad signature")
        say("  POST /billing/stripe/webhook/ with a bad signature: 400")
        expect(browser.get(f"{site}/billing/pay/no-such-token/"), 404, "An unknown payment link")
        say("  GET /billing/pay/<unknown>/: 404")

        # Log in
        login = expect(browser.get(f"{site}/admin/login/"), 200, "The admin login page")
        form = login.form("csrfmiddlewaretoken")
        page = browser.submit(login, form, {"username": "admin", "password": PASSWORD})
        if page.status != 302:
            raise Failed(f"Logging in failed ({page.status}, {page.title()!r}).")
        expect_title(browser.follow(page), "Dashboard", "The admin dashboard")
        say("  logged in; /admin/ is the Dashboard")

        admin = f"{site}/admin/client-billing"
        for path, title in (
            ("/account/", "Client billing account"),
            ("/requests/", "Client billing"),
            ("/requests/overview/", "Client billing overview"),
            ("/events/", "Stripe events"),
        ):
            expect_title(browser.get(admin + path), title, f"The {title} page")
            say(f"  /admin/client-billing{path}: 200, {title!r}")

        # Connect a test account through the simulator's onboarding page.
        connect = browser.get(f"{admin}/account/connect/")
        expect(connect, 200, "The connect form")
        form = connect.form("privacy_policy_url")
        countries = form["options"].get("country", [])
        country = "US" if "US" in countries else next(c for c in countries if c)
        page = browser.submit(
            connect,
            form,
            {
                "test_mode": "on",
                "country": country,
                "privacy_policy_url": "https://agency.example.com/privacy/",
                "terms_of_service_url": "https://agency.example.com/terms/",
            },
        )
        if page.status != 302 or not page.location.startswith(sim):
            raise Failed(
                f"Connecting did not send the browser to the simulator's onboarding "
                f"({page.status} {page.location!r}):\n{tail(page.text, 15)}"
            )
        onboarding = expect(browser.get(page.location), 200, "The simulator's onboarding page")
        page = browser.submit(
            onboarding, onboarding.form("Complete onboarding"), {}, button="Complete onboarding"
        )
        if not page.location.startswith(f"{admin}/account/test/return/"):
            raise Failed(f"Onboarding returned to {page.location!r}, not the app's return URL.")
        account = browser.follow(page)
        expect_title(account, "Client billing account", "The account page after onboarding")
        if "ready to charge" not in account.text:
            raise Failed(f"The account page does not say it is ready:\n{tail(account.text, 30)}")
        say(f"  connected a test account ({country}) through the simulator's onboarding")

        # Send a billing request from the admin form.
        create = browser.get(f"{admin}/requests/new/")
        expect(create, 200, "The Add billing request form")
        form = create.form("billing_type")
        page = browser.submit(
            create,
            form,
            {
                "email": "client@example.com",
                "currency": "eur",
                "amount": "49.90",
            },
        )
        if page.status != 302:
            raise Failed(
                f"Sending a billing request failed ({page.status}):\n{tail(page.text, 30)}"
            )
        listing = browser.follow(page)
        if "client@example.com" not in listing.text:
            raise Failed("The new billing request is not in the Client billing list.")
        say("  sent a billing request (EUR 49.90) from the admin form")

        def emailed() -> re.Match | None:
            return re.search(r"https?://\S+?/billing/pay/([\w-]+)/", self.processes.log("qcluster"))

        wait_until(
            "qcluster to send the billing email (console backend)",
            emailed,
            60,
            alive=lambda: self.processes.check_alive("qcluster"),
        )
        if "To: client@example.com" not in self.processes.log("qcluster"):
            raise Failed("qcluster's email is not addressed to client@example.com.")
        token = emailed().group(1)
        say("  qcluster sent the email with the payment link /billing/pay/<token>/")

        # The client pays on the simulator's Checkout page; the webhook marks it Paid.
        page = browser.get(f"{site}/billing/pay/{token}/")
        if page.status != 302 or not page.location.startswith(sim):
            raise Failed(f"The payment link did not open Checkout ({page.status} {page.location}).")
        checkout = expect(browser.get(page.location), 200, "The simulator's Checkout page")
        page = browser.submit(checkout, checkout.form("Pay"), {}, button="Pay")
        if page.status != 303:
            raise Failed(f"Paying on the simulator's Checkout answered {page.status}.")

        wait_until(
            "the checkout.session.completed webhook to mark the request paid",
            lambda: browser.get(f"{site}/billing/pay/{token}/").status == 200,
            30,
            alive=lambda: self.processes.check_alive("runserver"),
        )
        rows = self.run(
            [
                "python",
                "manage.py",
                "shell",
                "-c",
                "from wagtail_client_billing.models import BillingRequest as B; "
                "print('ROWS', [(b.status, b.email_status) for b in B.objects.all()])",
            ],
            env=env,
        ).stdout
        rows = next((line[5:] for line in rows.splitlines() if line.startswith("ROWS ")), rows)
        if rows != "[('paid', 'sent')]":
            raise Failed(f"The billing requests are {rows}, expected [('paid', 'sent')].")
        say("  paid on the simulator's Checkout; the webhook made it Paid, its email Sent")

        for name in ("runserver", "qcluster", "simulator"):
            self.processes.check_alive(name)
            # The bad-signature webhook above is logged with its traceback (Django's
            # SuspiciousOperation handling); any other traceback is an error.
            unexpected = [
                chunk
                for chunk in self.processes.log(name).split("Traceback")[1:]
                if "WebhookRejected: Invalid or expired Stripe-Signature" not in chunk
            ]
            if unexpected:
                raise Failed(f"{name} logged an error:\nTraceback{tail(unexpected[0], 60)}")
        say("  no unexpected tracebacks from the server, the cluster or the simulator")

    def main(self, layouts: list[str]) -> None:
        self.install()
        for layout in layouts:
            self.start_project(layout)
            self.apply_settings()
            self.apply_urls()
            self.follow_shell()
            self.checks()
            self.smoke()
            say(f"[{layout}] OK")
        self.processes.stop_all()


def scratch_root() -> str | None:
    """Where the temporary directory goes: ``WCB_INSTALL_TMPDIR``, else /dev/shm if roomy.

    A virtualenv is some 20,000 files: on a disk mounted with ``discard`` deleting them
    alone takes most of a minute, in memory it is instant (and pip installs faster).
    """
    if os.environ.get("WCB_INSTALL_TMPDIR"):
        return os.environ["WCB_INSTALL_TMPDIR"]
    shm = "/dev/shm"  # noqa: S108 (a private mkdtemp directory inside it)
    try:
        if os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 * 1024**3:
            return shm
    except OSError:
        pass
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", nargs="?", type=Path, help="the wheel (default: build one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--readme", type=Path, default=README, help="follow this README instead")
    parser.add_argument(
        "--layout",
        action="append",
        choices=LAYOUTS,
        help="the project layout(s) to install into (default: all, in one virtualenv)",
    )
    args = parser.parse_args(argv)
    if args.wheel is not None and not args.wheel.is_file():
        parser.error(f"{args.wheel} is not a file")
    work = Path(tempfile.mkdtemp(prefix="wcb-install-as-user-", dir=scratch_root()))
    install = None
    try:
        install = Install(work, args.wheel.resolve() if args.wheel else None, args.readme)
        install.main(args.layout or list(LAYOUTS))
    except BaseException as error:
        if isinstance(error, Failed | subprocess.TimeoutExpired):
            print(f"\nINSTALL AS A USER FAILED: {error}", file=sys.stderr, flush=True)
        if install is not None:
            for name in list(install.processes.running):
                log = tail(install.processes.log(name))
                print(f"\n--- {name} output ---\n{log}", file=sys.stderr)
            install.processes.stop_all()
        if not args.keep:
            # Keep the project and the logs to look at, not the 250 MB virtualenv.
            for bulky in ("venv", "source"):
                shutil.rmtree(work / bulky, ignore_errors=True)
        if any(work.iterdir()):
            print(f"(the project and the logs are kept in {work})", file=sys.stderr)
        else:
            work.rmdir()
        if isinstance(error, Failed | subprocess.TimeoutExpired):
            return 1
        raise
    else:
        install.processes.stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - STARTED
    say(f"OK: installed as a user would and the smoke test passed in {seconds:.0f}s")
    if args.keep:
        say(f"kept {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
