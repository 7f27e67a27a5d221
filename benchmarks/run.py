"""Run every benchmark in this folder and print one table, with the machine described.

    python benchmarks/run.py [--quick] [--rows N] [--only NAME ...] [--json FILE]
    python benchmarks/run.py --scaling FILE ...   # the scaling table of --json files

A benchmark is any ``benchmarks/*.py`` file (other than this one) that defines a
top-level ``main()``. Each runs in its own Python process (each sets Django up on a
database of its own), with ``--quick`` passed through when given. ``main`` may take
``argv`` (a list of strings) or nothing (it then finds them in ``sys.argv``); it prints
its own report and returns a dict, or a list of dicts, for the table:

    {"name": "expiry_sweep", "benchmark": "expiry_sweep", "measured": "...",
     "baseline": "...", "time_s": 1.2, "baseline_s": 0.3, "ratio": 4.0,
     "statements": 183, "notes": "..."}

Missing keys are left blank; a benchmark that returns nothing gets a row with its wall
time. ``DATABASE_URL`` is passed on: set it to benchmark on PostgreSQL. ``--rows N`` is
passed through too: every benchmark then runs on a table of N billing requests.

``--json FILE`` also writes the table's rows as a JSON list (see ``json_row``): each
with its ``name`` (``webhook_new``, ``expiry_sweep``, ...), the ``measured`` and
``baseline`` times in seconds, their ``ratio``, the SQL ``statements`` where the
benchmark counts them, and the rest of what the benchmark returned.

Before the benchmarks that use ``bench_database.create_database`` (those that mention
``WCB_BENCH_TEMPLATE``), one template database is migrated and named to them in that
variable, so that each copies it instead of migrating its own; it is dropped at the end.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TEMPLATE_ENV = "WCB_BENCH_TEMPLATE"  # bench_database.TEMPLATE_ENV

# Runs in the child process: load the file as a module (not as __main__), call main().
BOOTSTRAP = """
import importlib.util, inspect, json, sys
path, out, *argv = sys.argv[1:]
sys.argv = [path, *argv]
spec = importlib.util.spec_from_file_location("benchmark_under_test", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
takes_argv = bool(inspect.signature(module.main).parameters)
result = module.main(argv) if takes_argv else module.main()
with open(out, "w") as file:
    json.dump(result, file, default=str)
"""


def benchmarks() -> list[Path]:
    """The files here that define a top-level ``main()``, by name."""
    found = []
    for path in sorted(HERE.glob("*.py")):
        if path.name in ("run.py", "__init__.py"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            found.append(path)
    return found


def run_one(path: Path, argv: list[str]) -> tuple[list[dict[str, Any]], float, int]:
    """Run one benchmark in a child process; its rows, wall time and exit status."""
    with tempfile.TemporaryDirectory(prefix="wcb-bench-run-") as tmp:
        out = Path(tmp) / "result.json"
        started = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-c", BOOTSTRAP, str(path), str(out), *argv],
            cwd=HERE.parent,
            check=False,
        )
        wall = time.perf_counter() - started
        result = json.loads(out.read_text()) if out.exists() else None
    if result is None:
        rows = [{}]
    elif isinstance(result, dict):
        rows = [result]
    else:
        rows = [row if isinstance(row, dict) else {"notes": str(row)} for row in result]
    load = load_average()
    for row in rows:
        row.setdefault("benchmark", path.stem)
        row.setdefault("name", row["benchmark"])
        row.setdefault("load_average", load)  # when the benchmark ended (1, 5, 15 min)
    return rows, wall, completed.returncode


@contextmanager
def template_database(paths: list[Path]) -> Iterator[None]:
    """Migrate one template database for the benchmarks that copy it (see bench_database)."""
    users = [path for path in paths if TEMPLATE_ENV in path.read_text(encoding="utf-8")]
    if not users or os.environ.get(TEMPLATE_ENV):
        yield
        return
    module = "benchmarks.bench_database"
    with tempfile.TemporaryDirectory(prefix="wcb-bench-template-") as tmp:
        started = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-m", module, "create", tmp],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            check=False,
        )
        lines = completed.stdout.strip().splitlines()
        if completed.returncode or not lines:
            # Not fatal: each benchmark then migrates a database of its own.
            print(f"No template database ({completed.stderr.strip()[-500:]})", flush=True)
            yield
            return
        name = lines[-1]
        print(f"Template database migrated in {time.perf_counter() - started:.1f} s", flush=True)
        os.environ[TEMPLATE_ENV] = name
        try:
            yield
        finally:
            del os.environ[TEMPLATE_ENV]
            subprocess.run(
                [sys.executable, "-m", module, "drop", name], cwd=HERE.parent, check=False
            )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def database() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version} (a temporary file per benchmark)"
    try:
        import psycopg

        # The maintenance database, as Django does: the one named may not exist (the
        # benchmarks make databases of their own next to it).
        with psycopg.connect(url, dbname="postgres", connect_timeout=5) as connection:
            version = connection.execute("SHOW server_version").fetchone()[0]
        return f"PostgreSQL {version} ({url.split('@')[-1]}, a fresh database per benchmark)"
    except Exception as error:  # still worth describing the rest of the machine
        return f"{url.split('@')[-1]} (version unknown: {error.__class__.__name__})"


def load_average() -> list[float]:
    """The load average over 1, 5 and 15 minutes (empty where the OS does not say)."""
    return [round(value, 2) for value in os.getloadavg()] if hasattr(os, "getloadavg") else []


def machine() -> list[tuple[str, str]]:
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    load = ", ".join(f"{value:.2f}" for value in load_average())
    return [
        ("CPU", cpu_model()),
        ("Cores", str(os.cpu_count())),
        ("Memory", memory or "unknown"),
        ("Load average", load or "unknown"),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("Database", database()),
    ]


def seconds(value: Any) -> str:
    return f"{value:.3f} s" if isinstance(value, int | float) else ""


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table (readable in a terminal, pastable into a README)."""
    header = ["Benchmark", "Measured", "Time", "Baseline", "Baseline time", "Ratio", "Notes"]
    lines = []
    for row in rows:
        ratio = row.get("ratio")
        lines.append(
            [
                str(row.get("benchmark", "")),
                str(row.get("measured", "")),
                seconds(row.get("time_s")),
                str(row.get("baseline", "")),
                seconds(row.get("baseline_s")),
                f"{ratio:.2f}x" if isinstance(ratio, int | float) else "",
                str(row.get("notes", "")),
            ]
        )
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=True)]

    def render(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [render(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        + [render(line) for line in lines]
    )


def json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A table row for ``--json``: the times under ``measured`` and ``baseline`` (seconds),
    their labels under ``measured_label`` and ``baseline_label``; other keys as they are."""
    data = {
        key: value
        for key, value in row.items()
        if key not in ("measured", "baseline", "time_s", "baseline_s")
    }
    return {
        "name": row.get("name") or row.get("benchmark", ""),
        "ratio": row.get("ratio"),
        "measured": row.get("time_s"),
        "baseline": row.get("baseline_s"),
        "unit": "s",
        "statements": row.get("statements"),
        "measured_label": row.get("measured", ""),
        "baseline_label": row.get("baseline", ""),
        **{key: value for key, value in data.items() if key != "name"},
    }


def write_json(path: str, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as file:
        json.dump([json_row(row) for row in rows], file, indent=2, default=str)
        file.write("\n")


def scaling_table(paths: list[str]) -> str:
    """One Markdown table of the ``--json`` files of runs at several ``--rows``: a line
    per row name, a column per table size, each cell the ratio (and the statements),
    and the load average (1 minute, the highest of the run's rows) under each size."""
    cells: dict[str, dict[int, str]] = {}
    loads: dict[int, float] = {}
    for path in paths:
        with open(path, encoding="utf-8") as file:
            for row in json.load(file):
                size, ratio = row.get("rows"), row.get("ratio")
                if not isinstance(size, int) or not isinstance(ratio, int | float):
                    continue
                cell = f"{ratio:.2f}x"
                if isinstance(row.get("overhead_ms"), int | float):
                    cell += f", {row['overhead_ms']:.1f} ms own"  # create_request
                if row.get("statements") is not None:
                    cell += f" ({row['statements']} st.)"
                cells.setdefault(row["name"], {})[size] = cell
                load = row.get("load_average") or [0.0]
                loads[size] = max(loads.get(size, 0.0), load[0])
    sizes = sorted(loads)
    lines = [
        "| name | " + " | ".join(f"{size:,} rows" for size in sizes) + " |",
        "| --- |" + " --- |" * len(sizes),
    ]
    for name in sorted(cells):
        lines.append(
            f"| `{name}` | " + " | ".join(cells[name].get(size, "") for size in sizes) + " |"
        )
    lines.append("| load average | " + " | ".join(f"{loads[size]:.1f}" for size in sizes) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (passed through)")
    parser.add_argument(
        "--rows", type=int, help="billing requests in each benchmark's table (passed through)"
    )
    parser.add_argument("--only", nargs="*", default=[], help="benchmark names (file stems)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as a JSON list")
    parser.add_argument(
        "--scaling",
        nargs="+",
        metavar="FILE",
        help="print the scaling table of these --json files (runs nothing)",
    )
    args = parser.parse_args(argv)
    if args.scaling:
        print(scaling_table(args.scaling))
        return 0
    passed = ["--quick"] if args.quick else []
    if args.rows:
        passed += ["--rows", str(args.rows)]

    rows: list[dict[str, Any]] = []
    failed = []
    selected = [path for path in benchmarks() if not args.only or path.stem in args.only]
    with template_database(selected):
        for path in selected:
            print(f"== {path.name} {' '.join(passed)}".rstrip(), flush=True)
            results, wall, status = run_one(path, passed)
            for row in results:
                if status:
                    row["notes"] = f"FAILED (exit status {status}) {row.get('notes', '')}".strip()
                if not row.get("time_s") and not row.get("notes"):
                    row["notes"] = f"ran in {wall:.1f} s (no numbers returned)"
            rows += results
            if status:
                failed.append(path.name)
            print(flush=True)

    print("Machine")
    for name, value in machine():
        print(f"  {name + ':':14} {value}")
    print()
    print(table(rows))
    if args.json:
        write_json(args.json, rows)
        print(f"\n{len(rows)} rows written to {args.json}")
    if failed:
        print(f"\nFailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
