"""SQL the ORM cannot say in one statement."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import IntegrityError, connection, connections, transaction
from django.db.models import Field, Model


def insert_columns(model: type[Model]) -> tuple[list[Field], str]:
    """The fields an INSERT writes (all but the automatic key) and their quoted columns."""
    return _insert_columns(connection.alias, model)


@cache  # per database and model: the text is the same for every row (the webhook's hot path)
def _insert_columns(alias: str, model: type[Model]) -> tuple[list[Field], str]:
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    quote = connections[alias].ops.quote_name
    return fields, ", ".join(quote(str(field.column)) for field in fields)


def insert_values(obj: Model, fields: list[Field]) -> list[Any]:
    """``obj``'s values for ``fields``, prepared as ``save`` prepares them for an INSERT."""
    database = connections[connection.alias]  # not the per-attribute proxy
    return [field.get_db_prep_save(field.pre_save(obj, True), database) for field in fields]


def insert_select(
    obj: Model, source: str = "", computed: dict[str, str] | None = None
) -> tuple[str, list[Any]]:
    """``INSERT INTO <table> (<columns>) SELECT <obj's values><source>`` and those values:
    a row that goes in with another statement's (``source``: `` FROM <cte>``, a WHERE...);
    ``computed``: SQL expressions (of ``source``'s rows) for some fields, by attname."""
    sql, given = insert_select_sql(type(obj), source, tuple((computed or {}).items()))
    return sql, insert_values(obj, given)


def insert_select_sql(
    model: type[Model], source: str = "", computed: tuple[tuple[str, str], ...] = ()
) -> tuple[str, list[Field]]:
    """``insert_select``'s statement (made once) and the fields it takes values of."""
    return _insert_select(connection.alias, model, source, computed)


@cache
def _insert_select(
    alias: str, model: type[Model], source: str, computed: tuple[tuple[str, str], ...]
) -> tuple[str, list[Field]]:
    expressions = dict(computed)
    fields, columns = _insert_columns(alias, model)
    table = connections[alias].ops.quote_name(model._meta.db_table)
    marks = ", ".join(expressions.get(field.attname, "%s") for field in fields)
    given = [field for field in fields if field.attname not in expressions]
    return f"INSERT INTO {table} ({columns}) SELECT {marks}{source}", given


def insert_once(obj: Model, unique_field: str) -> bool:
    """INSERT ``obj`` unless a row has its ``unique_field``: ``ON CONFLICT DO NOTHING
    RETURNING``, one statement with no savepoint (elsewhere a savepoint and the error)."""
    meta, quote = obj._meta, connection.ops.quote_name
    if connection.vendor not in ("postgresql", "sqlite"):
        try:
            with transaction.atomic():
                obj.save(force_insert=True)
        except IntegrityError:
            return False
        return True
    fields, columns = insert_columns(type(obj))
    unique, pk = meta.get_field(unique_field), meta.pk
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) "  # noqa: S608 (names are ours)
        f"VALUES ({', '.join(['%s'] * len(fields))}) "
        f"ON CONFLICT ({quote(str(getattr(unique, 'column', '')))}) DO NOTHING "
        f"RETURNING {quote(str(pk and pk.column))}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, insert_values(obj, fields))
        row = cursor.fetchone()
    if row is not None:
        obj.pk = row[0]
        obj._state.adding = False
    return row is not None


def insert_rows(model: type[Model], rows: list[dict[str, Any]]) -> None:
    """INSERT rows given as {attname: value} (the rest take their defaults) in one
    ``executemany`` (psycopg pipelines it): no model instance per row, for the sweep's
    thousands of entries (measured: 2x faster than a multi-row VALUES or bulk_create)."""
    fields, columns = insert_columns(model)
    sql = (
        f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({columns}) "  # noqa: S608 (names are ours)
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    defaults = {field.attname: field.get_default() for field in fields}
    database = connections[connection.alias]  # as insert_values: not the proxy, once per value
    values = [
        [
            field.get_db_prep_save(row.get(field.attname, defaults[field.attname]), database)
            for field in fields
        ]
        for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, values)
