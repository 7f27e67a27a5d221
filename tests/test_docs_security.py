"""docs/security.md names the test that keeps each promise: every one it names exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "security.md"


def test_every_test_the_security_page_names_exists():
    text = PAGE.read_text()
    named = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", text)
    assert len(named) >= 20  # each promise names at least one test
    missing = []
    for path, name in named:
        source = ROOT / path
        if not source.exists():
            missing.append(path)
        elif name and not re.search(rf"^def {name}\(", source.read_text(), re.MULTILINE):
            missing.append(f"{path}::{name}")
    assert missing == []


def test_the_security_page_is_in_the_docs_navigation():
    assert "security.md" in (ROOT / "mkdocs.yml").read_text()


def test_links_into_the_security_page_land_on_its_sections():
    # Its sections carry explicit ids ({#ssrf}, needs mkdocs' attr_list); other pages link
    # to them, and a link to an id that is not there lands at the top of the page.
    ids = set(re.findall(r"^#+ .*\{#([\w-]+)\}$", PAGE.read_text(), re.MULTILINE))
    assert {"ssrf", "deadlines", "from", "no-lock"} <= ids
    assert "attr_list" in (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        for anchor in re.findall(r"\(security\.md#([\w-]+)\)", page.read_text()):
            assert anchor in ids, f"{page.name} links to security.md#{anchor}"
