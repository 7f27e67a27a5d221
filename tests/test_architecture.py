"""The package's modules import each other without circles.

Read from the source with ``ast`` (nothing is imported): an edge A -> B for every
``import``/``from ... import`` of one of the package's modules by another. Imports under
``if TYPE_CHECKING:`` are for type checkers only and do not count. Module-level imports
must form no circle; function-local imports are for what Django needs (the app registry
in ``AppConfig.ready``, django-q2 being optional) and must not close a circle either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import wagtail_client_billing

PACKAGE = wagtail_client_billing.__name__
ROOT = Path(wagtail_client_billing.__file__).parent


def module_names() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    names = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


MODULES = module_names()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, *, in_function: bool = False):
    """(import node, whether it is inside a function), skipping ``TYPE_CHECKING`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from _imports(
                ast.Module(body=node.orelse, type_ignores=[]), in_function=in_function
            )
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, in_function
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _imports(node, in_function=inner)


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The package's modules an import statement of ``module`` loads."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in MODULES}
    if node.level:
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    if base not in MODULES:
        return set()
    submodules = {f"{base}.{alias.name}" for alias in node.names} & set(MODULES)
    # ``from pkg import name``: the submodule if ``name`` is one, else the package itself.
    return submodules if len(submodules) == len(node.names) else {base, *submodules}


def import_graph(*, with_function_imports: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for module, path in MODULES.items():
        for node, in_function in _imports(ast.parse(path.read_text(), str(path))):
            if with_function_imports or not in_function:
                graph[module] |= _targets(module, node) - {module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def describe(found: list[list[str]], graph: dict[str, set[str]]) -> str:
    lines = []
    for component in found:
        members = set(component)
        edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]
        lines.append("circle: " + "; ".join(edges))
    return "\n".join(lines)


def test_the_graph_sees_the_imports():
    graph = import_graph(with_function_imports=True)
    assert f"{PACKAGE}.billing" in graph[f"{PACKAGE}.tasks"]
    assert f"{PACKAGE}.events.handlers" in graph[f"{PACKAGE}.events.processing"]
    assert f"{PACKAGE}.tasks" in graph[f"{PACKAGE}.apps"]  # inside ready()
    assert f"{PACKAGE}.tasks" not in import_graph(with_function_imports=False)[f"{PACKAGE}.apps"]


def test_the_circle_finder_finds_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]
    assert describe(circles(graph), graph) == "circle: a -> b; b -> c; c -> a"


def test_no_circle_among_module_level_imports():
    graph = import_graph(with_function_imports=False)
    found = circles(graph)
    assert not found, describe(found, graph)


def test_no_circle_hidden_by_function_local_imports():
    graph = import_graph(with_function_imports=True)
    found = circles(graph)
    assert not found, describe(found, graph)


# Issue 11: a module a newcomer can read in one sitting; the package smaller than before
# the redesign (6,648 lines then), for the same behaviour; it ended at 6,602. Later issues
# add lines on purpose, each named here (and in CHANGELOG), so growth is a decision:
MAX_MODULE_LINES = 400
ADDED_SINCE_THE_REDESIGN = {
    "issue 12: the webhook's one transaction, db.py's one-statement inserts, the sweep's "
    "one PostgreSQL statement per batch (billing/sweep.py)": 230,
    "issue 12: create_request in 5 statements (billing/creation.py's look-up and make-pending)": 60,
    "issue 12: the paid webhook in one statement (events/paid.py: the entry, the notification "
    "and its task computed from the paid row; db.insert_select's computed columns)": 30,
    "issue 12: create_request in 3 statements (the email's outbox row and its django-q2 task "
    "go in with the transition: billing/creation.py, mail/queue.py; renewal_of's early "
    "return)": 32,
    "issue 12: the email batch's one commit per email, one SMTP deadline thread": 45,
    "issue 12: the paid statement's text made once per process, not per event (events/paid.py, "
    "db.py's cached INSERT texts; mail/queue.py's django-q2 queue name): a paid event's "
    "CPU 2.1-2.9 ms -> 1.6-1.9 ms (in-process, the test client included)": 48,
    "issue 12: the listings' count stops at 10,000 rows (views/listing.CappedPaginator) and "
    "Pending now reads only the links that can still be paid (reports.totals): the "
    "overview of a million requests costs what one of 100,000 does": 40,
    "issue 12: the paid webhook in two statements (events/paid.py; mail/queue.py's "
    "notification row and django-q2 task row built for a caller's statement)": 215,
    "issue 13: French done right (subscription statuses with a context, Just now, the "
    "event page in the reader's time zone, email reasons translated when shown)": 86,
    "issue 13: the app's own credit-card icon (icons.py, the register_icons hook)": 10,
    "issue 13: the time left rounded, the client's processing page, the port rule": 30,
    "issue 13: what Stripe still needs, in words (requirements.py)": 85,
    "issue 13: no second webhook endpoint; each site's client language": 66,
    "issue 13: screens that guide (the site chooser, the hidden Deleted count, the form's "
    "alerts, the site's address, the currency's default and order, status colours)": 190,
    "issue 14: invoices and receipts (billing/invoicing.py, events/invoices.py, the "
    "settings form and view, the invoice template tags, the paid page's invoice, the "
    "export's invoice number)": 386,
    "issue 14: refunds and disputes (billing/refunds.py, events/refunds.py, views/refunds.py, "
    "the refund form), the schema after Paid (models/payments.py, the invoice settings), "
    "totals net of refunds, endpoints given new event types": 790,
    "issue 14: subscriptions (billing/subscriptions.py, the cancel view, the client's "
    "customer portal link, the subscription emails, recurring revenue)": 385,
    "issue 14: money moved after unlinking still recorded; unconfirmed refunds settled "
    "from Stripe's word (billing/refunds.settle_unconfirmed)": 65,
    "issue 14: a refund's status only forward; the subscription link's own key (an HMAC "
    "under SECRET_KEY and its fallbacks); refunds of payments made before this version": 45,
    "issue 14: a subscription read again at Stripe after its events (subscriptions.refresh"
    "); the refund and cancel pages' breadcrumbs; the listing's end date": 65,
    "issue 14: renewals whose webhooks were lost read again (subscriptions.reconcile_overdue)": 35,
    "issue 14: signed objects of a shape a database refuses are ignored, saying why": 30,
}
MAX_PACKAGE_LINES = 6_648 + sum(ADDED_SINCE_THE_REDESIGN.values())


def counted_modules() -> dict[str, int]:
    """Lines of each module outside migrations/ and testing/ (``wc -l``)."""
    return {
        name: len(path.read_text().splitlines())
        for name, path in MODULES.items()
        if not {"migrations", "testing"} & set(name.split("."))
    }


def test_no_module_over_the_size_a_reader_takes_in():
    over = {name: n for name, n in counted_modules().items() if n > MAX_MODULE_LINES}
    assert not over, f"modules over {MAX_MODULE_LINES} lines: {over}"


def test_the_package_is_smaller_than_before_the_redesign():
    total = sum(counted_modules().values())
    assert total < MAX_PACKAGE_LINES, f"{total} lines of Python outside migrations/, testing/"


# Wagtail 7.4 LTS's newest wagtailcore migration: ours may not depend on a newer one, or
# installs on 7.4 cannot migrate (makemigrations on Wagtail 8 names its newest).
WAGTAIL_74_LAST_CORE_MIGRATION = 97


def test_our_migrations_need_no_wagtailcore_migration_newer_than_wagtail_7_4():
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    ours = [
        (key, dependency)
        for key, migration in loader.disk_migrations.items()
        if key[0] in ("wagtail_client_billing", "bench_anchor")
        for dependency in migration.dependencies
        if dependency[0] == "wagtailcore"
        and int(dependency[1].split("_")[0]) > WAGTAIL_74_LAST_CORE_MIGRATION
    ]
    assert ours == []
