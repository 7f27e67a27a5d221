"""Check that the wheel and the sdist hold what users need and nothing of the demo."""

import sys
import tarfile
import zipfile
from pathlib import Path

NEEDED = [
    "wagtail_client_billing/__init__.py",
    "wagtail_client_billing/migrations/__init__.py",
    "wagtail_client_billing/locale/fr/LC_MESSAGES/django.po",
    "wagtail_client_billing/locale/fr/LC_MESSAGES/django.mo",
    "wagtail_client_billing/templates/",
    "wagtail_client_billing/static/",
    "wagtail_client_billing/testing/stripe_simulator/__main__.py",
    "wagtail_client_billing/testing/stripe_objects/",
]
FORBIDDEN = ["example_project/", "tests/", ".demo/", "db.sqlite3"]


def names(path: Path) -> list[str]:
    if path.suffix == ".whl":
        return zipfile.ZipFile(path).namelist()
    with tarfile.open(path) as archive:
        # Drop the leading "wagtail_client_billing-x.y.z/" of sdist members.
        return [name.split("/", 1)[1] if "/" in name else name for name in archive.getnames()]


def main(dist: Path) -> int:
    archives = sorted(dist.glob("*.whl")) + sorted(dist.glob("*.tar.gz"))
    if len(archives) != 2:
        print(f"expected one wheel and one sdist in {dist}, found {archives}")
        return 1
    failed = False
    for archive in archives:
        members = names(archive)
        for needed in NEEDED:
            if not any(member.startswith(needed) for member in members):
                print(f"{archive.name}: missing {needed}")
                failed = True
        for forbidden in FORBIDDEN:
            found = [m for m in members if m.startswith(forbidden) or f"/{forbidden}" in m]
            if found:
                print(f"{archive.name}: must not ship {found[:3]}")
                failed = True
        print(f"{archive.name}: {len(members)} files checked")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
