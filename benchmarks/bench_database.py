"""Django set-up and fresh databases for the benchmarks, copied from a migrated template.

Migrating a fresh database (Wagtail, django-q2 and the app: a few hundred migrations)
takes 20 to 30 s on the development machine, longer than most quick benchmarks. So
``run.py`` migrates one template database first and names it in
``WCB_BENCH_TEMPLATE``; a benchmark that uses :func:`create_database` then copies it
(PostgreSQL ``CREATE DATABASE ... TEMPLATE``, a file copy on SQLite) in a second or so.
Run on its own (no ``WCB_BENCH_TEMPLATE``), a benchmark migrates its database itself.

    python -m benchmarks.bench_database create DIR   # print the template's name
    python -m benchmarks.bench_database drop NAME

On PostgreSQL the template is ``<name>_template`` next to the database ``DATABASE_URL``
names (never that one); on SQLite, ``DIR/template.sqlite3``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_ENV = "WCB_BENCH_TEMPLATE"
SETTINGS = "benchmarks.bench_settings"


def set_up_django(workdir: str) -> None:
    """``benchmarks.bench_settings`` on DATABASE_URL, or on a SQLite file in ``workdir``."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    if not os.environ.get("DATABASE_URL"):
        os.environ["SQLITE_PATH"] = str(Path(workdir) / "unused.sqlite3")
    import django

    django.setup()


def database_name(suffix: str, workdir: str) -> str:
    """``<name>_<suffix>`` next to DATABASE_URL's database, or a SQLite file in ``workdir``."""
    from django.db import connection

    if connection.vendor == "sqlite":
        return str(Path(workdir) / f"{suffix}.sqlite3")
    return f"{connection.settings_dict['NAME']}_{suffix}"


def create_database(suffix: str, workdir: str) -> str:
    """Create a fresh, migrated database and switch to it; return the name to restore.

    A copy of the template when ``WCB_BENCH_TEMPLATE`` names one, else migrated here.
    Drop it with ``connection.creation.destroy_test_db(returned_name, verbosity=0)``.
    """
    from django.conf import settings
    from django.db import connection

    old_name = connection.settings_dict["NAME"]
    name = database_name(suffix, workdir)
    template = os.environ.get(TEMPLATE_ENV)
    if not template:
        connection.settings_dict.setdefault("TEST", {})["NAME"] = name
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        return old_name
    connection.close()
    if connection.vendor == "sqlite":
        shutil.copyfile(template, name)
    else:
        quote = connection.ops.quote_name
        with connection._nodb_cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {quote(name)}")
            cursor.execute(f"CREATE DATABASE {quote(name)} TEMPLATE {quote(template)}")
    settings.DATABASES[connection.alias]["NAME"] = name
    connection.settings_dict["NAME"] = name
    connection.ensure_connection()
    return old_name


def create_template(workdir: str) -> str:
    """Migrate the template database; return its name (a path on SQLite)."""
    from django.db import connection

    name = database_name("template", workdir)
    connection.settings_dict.setdefault("TEST", {})["NAME"] = name
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all in the one file
    connection.close()
    return name


def drop_template(name: str) -> None:
    from django.db import connection

    if connection.vendor == "sqlite":
        Path(name).unlink(missing_ok=True)
        return
    with connection._nodb_cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {connection.ops.quote_name(name)}")


def main_command(argv: list[str]) -> int:
    """``create DIR`` (prints the template's name) or ``drop NAME``."""
    if len(argv) != 2 or argv[0] not in ("create", "drop"):
        print(__doc__.split("\n\n")[2], file=sys.stderr)
        return 2
    command, value = argv
    set_up_django(value if command == "create" else str(Path(value).parent))
    if command == "create":
        print(create_template(value))
    else:
        drop_template(value)
    return 0


if __name__ == "__main__":
    sys.exit(main_command(sys.argv[1:]))
