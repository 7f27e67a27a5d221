"""The French translation follows every string in the code."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from django.utils import translation

import wagtail_client_billing

PACKAGE = Path(wagtail_client_billing.__file__).parent
PO_FILE = PACKAGE / "locale" / "fr" / "LC_MESSAGES" / "django.po"


def entries(po_text: str) -> dict[tuple[str, str], str]:
    """(msgctxt, msgid) -> msgstr of every entry but the header; fuzzy ones map to ""."""
    found = {}
    for block in po_text.split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith("#~")]
        fuzzy = any(line.startswith("#,") and "fuzzy" in line for line in lines)
        fields: dict[str, str] = {}
        current = None
        for line in lines:
            match = re.match(r'^(msgctxt|msgid|msgid_plural|msgstr(?:\[\d\])?) "(.*)"$', line)
            if match:
                current = match.group(1)
                fields[current] = match.group(2)
            elif line.startswith('"') and current:
                fields[current] += line[1:-1]
        if fields.get("msgid"):
            value = fields.get("msgstr", fields.get("msgstr[0]", ""))
            found[(fields.get("msgctxt", ""), fields["msgid"])] = "" if fuzzy else value
    return found


def test_every_french_string_is_translated():
    missing = [msgid for msgid, text in entries(PO_FILE.read_text()).items() if not text]
    assert missing == []


def test_the_french_catalogue_has_every_string_of_the_code(tmp_path, settings):
    copy = tmp_path / "wagtail_client_billing"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [sys.executable, "-m", "django", "makemessages", "-l", "fr", "--no-obsolete"],
        cwd=copy,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        },
    )
    assert result.returncode == 0, result.stderr
    fresh = set(entries((copy / "locale/fr/LC_MESSAGES/django.po").read_text()))
    committed = set(entries(PO_FILE.read_text()))
    assert fresh - committed == set(), "run makemessages -l fr and translate the new strings"
    assert committed - fresh == set(), "the catalogue holds strings the code no longer uses"


def test_the_product_words_in_french():
    with translation.override("fr"):
        assert str(wagtail_client_billing.apps.WagtailClientBillingConfig.verbose_name) == (
            "Facturation client"
        )
