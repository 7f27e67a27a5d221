"""Fixtures of the end-to-end tests: the harness (once per session), a fresh stack per test,
browser tabs, screenshots for the docs; the processes' logs on a failure."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import Harness, MailServer, Stack

STACK_KEY = pytest.StashKey[Stack]()
VIEWPORT = {"width": 1280, "height": 800}
MAX_HEIGHT = 2000  # pixels of a screenshot for the docs


_harnesses: list[Harness] = []


@pytest.fixture(scope="session")
def e2e_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    harness = Harness(tmp_path_factory.mktemp("e2e"))
    _harnesses.append(harness)
    try:
        yield harness
    finally:
        harness.close()


def pytest_terminal_summary(terminalreporter) -> None:
    """How long the harness's steps took (the budget is five minutes per database)."""
    for harness in _harnesses:
        terminalreporter.section("end-to-end harness timings")
        for step, seconds in harness.timings:
            terminalreporter.write_line(f"{seconds:7.1f} s  {step}")


@pytest.fixture
def stack(request: pytest.FixtureRequest, e2e_harness: Harness) -> Iterator[Stack]:
    """The example project, its cluster and the Stripe simulator, on a fresh database."""
    name = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:30]
    with MailServer("default") as default_smtp, MailServer("site") as site_smtp:
        stack = e2e_harness.start(name, default_smtp, site_smtp)
        request.node.stash[STACK_KEY] = stack
        try:
            yield stack
        finally:
            e2e_harness.stop(stack)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failing end-to-end test shows what its processes logged."""
    report = yield
    stack = item.stash.get(STACK_KEY, None)
    if report.failed and stack is not None:
        for name, text in stack.logs():
            report.sections.append((f"{name} log ({report.when})", text))
    return report


@pytest.fixture
def new_page(browser, stack: Stack):
    """``new_page(locale)``: a tab with its own cookies, closed after the test."""
    contexts = []

    def make(locale: str = "en-US"):
        context = browser.new_context(locale=locale, viewport=VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        return page

    yield make
    for context in contexts:
        context.close()


class Screenshots:
    """Full-page PNGs for the docs, written only when ``WCB_SCREENSHOTS`` names a directory."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory) if directory else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.taken: list[str] = []

    def __call__(self, page, name: str) -> None:
        if self.directory is None:
            return
        page.wait_for_load_state("networkidle")
        # Wagtail's admin scrolls inside its own layout, where Playwright's full_page sees
        # only the window: make the window as tall as the content (within reason) instead.
        height = page.evaluate(
            "() => Math.max(...Array.from(document.querySelectorAll('body, body *'),"
            " (element) => element.scrollHeight))"
        )
        page.set_viewport_size(
            {**VIEWPORT, "height": max(VIEWPORT["height"], min(height, MAX_HEIGHT))}
        )
        try:
            page.screenshot(path=str(self.directory / name), animations="disabled")
        finally:
            page.set_viewport_size(VIEWPORT)
        self.taken.append(name)

    def in_language(self, language: str) -> Callable[[Any, str], None] | None:
        """A journey's shots in ``language``, None unless taking them: English under the
        docs' names, another language with its suffix (``dashboard-fr.png``)."""
        if self.directory is None:
            return None
        if language == "en":
            return self
        return lambda page, name: self(page, name.replace(".png", f"-{language}.png"))


@pytest.fixture
def screenshots() -> Screenshots:
    return Screenshots(os.environ.get("WCB_SCREENSHOTS", ""))
