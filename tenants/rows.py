"""One-statement ``INSERT`` and ``SELECT`` of a model's row, for the per-webhook hot paths.

The ORM compiles its SQL on every call; on a verified webhook that compilation cost more than the
statement itself. Both helpers build their SQL text once per model, columns and database alias
(the parameters are still bound on each call), and convert values as the ORM would:
:func:`insert_row` with ``pre_save`` then ``get_db_prep_save`` (defaults, ``auto_now_add``, JSON
and UUID adaptation), :func:`select_row` with the backend's and the field's converters
(``from_db_value``). Both run inside ``mark_for_rollback_on_error``, like the ORM's writes: a
database error inside ``atomic()`` marks the transaction for rollback.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

M = TypeVar("M", bound=models.Model)

_Statement = tuple[str, tuple[models.Field[Any, Any], ...], tuple[models.Field[Any, Any], ...]]
_Guard = tuple[type[models.Model], tuple[str, ...]] | None
_statements: dict[tuple[type[models.Model], tuple[str, ...], bool, _Guard, str], _Statement] = {}


def _statement(
    connection: BaseDatabaseWrapper,
    model: type[models.Model],
    names: tuple[str, ...],
    skip_conflicts: bool,
    guard: _Guard,
) -> _Statement:
    key = (model, names, skip_conflicts, guard, connection.alias)
    if (known := _statements.get(key)) is not None:
        return known
    meta = model._meta
    fields = tuple(_field(model, name) for name in names)
    columns = ", ".join(_quoted(connection, f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    table = _quoted(connection, meta.db_table)
    guarded: tuple[models.Field[Any, Any], ...] = ()
    if guard is None:
        sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"  # noqa: S608
    else:
        other, other_names = guard
        guarded = (_field(other, other._meta.pk.attname), *(_field(other, name) for name in other_names))
        same = " AND ".join(f"{_quoted(connection, f.column)} = %s" for f in guarded)
        sql = (
            f"INSERT INTO {table} ({columns}) SELECT {placeholders} "  # noqa: S608
            f"WHERE EXISTS (SELECT 1 FROM {_quoted(connection, other._meta.db_table)} WHERE {same})"
        )
    if skip_conflicts:
        sql += f" ON CONFLICT DO NOTHING RETURNING {_quoted(connection, meta.pk.column)}"
    elif meta.pk.attname not in names:
        sql += f" RETURNING {_quoted(connection, meta.pk.column)}"  # the database makes the key
    _statements[key] = (sql, fields, guarded)
    return _statements[key]


def insert_row(
    connection: BaseDatabaseWrapper,
    instance: models.Model,
    names: tuple[str, ...],
    *,
    skip_conflicts: bool = False,
    unless_changed: tuple[models.Model, tuple[str, ...]] | None = None,
) -> Any:
    """``INSERT`` ``instance``'s fields ``names`` (model field names) through ``connection``.

    With ``skip_conflicts``: ``ON CONFLICT DO NOTHING RETURNING pk`` (PostgreSQL, and SQLite 3.35
    or newer), one round trip and no savepoint; returns the new primary key, or None when a unique
    constraint already holds such a row. Without: a plain ``INSERT``; returns the primary key:
    the instance's (set by the caller or by its field's default) when ``names`` holds it, else
    the one the database made (``RETURNING``).

    ``unless_changed=(row, field_names)``: insert only if ``row`` (another model's instance, as
    loaded earlier) is still stored with those fields' values, checked in the same statement
    (``INSERT ... SELECT ... WHERE EXISTS``); requires ``skip_conflicts``, and None then also
    means that ``row`` changed. Database errors propagate.
    """
    guard = None if unless_changed is None else (type(unless_changed[0]), unless_changed[1])
    if guard is not None and not skip_conflicts:
        raise TypeError("unless_changed needs skip_conflicts: None is how a changed row is told")
    sql, fields, guarded = _statement(connection, type(instance), names, skip_conflicts, guard)
    values = [f.get_db_prep_save(f.pre_save(instance, add=True), connection) for f in fields]
    if unless_changed is not None:
        row = unless_changed[0]
        values += [f.get_db_prep_value(getattr(row, f.attname), connection) for f in guarded]
    with transaction.mark_for_rollback_on_error(connection.alias), connection.cursor() as cursor:
        cursor.execute(sql, values)
        if not skip_conflicts and instance._meta.pk.attname in names:
            return instance.pk
        inserted = cursor.fetchone()
    return None if inserted is None else inserted[0]


_Select = tuple[str, tuple[str, ...], tuple[tuple[Any, list[Any]], ...]]
_selects: dict[tuple[type[models.Model], tuple[str, ...], str, str], _Select] = {}


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field) or field.column is None:
        raise TypeError(f"{model.__name__}.{name} is not a column")
    return field


def _quoted(connection: BaseDatabaseWrapper, name: str | None) -> str:
    """A table's or a column's name, quoted for ``connection``'s SQL."""
    if name is None:  # pragma: no cover - _field refused fields without a column
        raise TypeError("no column")
    return str(connection.ops.quote_name(name))


def _select(
    connection: BaseDatabaseWrapper, model: type[models.Model], names: tuple[str, ...], key: str
) -> _Select:
    # By alias: the converters are the connection's (SQLite's dates read its TIME_ZONE).
    cache_key = (model, names, key, connection.alias)
    if (known := _selects.get(cache_key)) is not None:
        return known
    meta = model._meta
    # Model.from_db takes the values in the model's field order, whatever the order of names.
    attnames = tuple(f.attname for f in meta.concrete_fields)
    if unknown := set(names) - set(attnames):
        raise TypeError(f"{model.__name__} has no column {sorted(unknown)[0]!r}")
    names = tuple(name for name in attnames if name in names)
    fields = [_field(model, name) for name in names]
    columns = ", ".join(_quoted(connection, f.column) for f in fields)
    where = _quoted(connection, _field(model, key).column)
    sql = f"SELECT {columns} FROM {_quoted(connection, meta.db_table)} WHERE {where} = %s"  # noqa: S608
    # What the ORM's compiler applies to each value: the backend's converters (SQLite's dates and
    # booleans), then the field's own (from_db_value: a sealed secret).
    converters = []
    for field in fields:
        col = field.get_col(meta.db_table)
        converters.append((col, connection.ops.get_db_converters(col) + col.get_db_converters(connection)))
    _selects[cache_key] = (sql, names, tuple(converters))
    return _selects[cache_key]


def select_row(
    connection: BaseDatabaseWrapper,
    model: type[M],
    names: tuple[str, ...],
    key: str,
    value: Any,
    *,
    for_update: bool = False,
) -> M | None:
    """The ``model`` instance whose field ``key`` equals ``value`` (a unique column), with only the
    fields ``names`` (attnames) loaded, or None: one ``SELECT`` built once, values converted as
    the ORM converts them, the instance made by ``Model.from_db``. ``for_update``: ``SELECT ...
    FOR UPDATE`` where the database has it (PostgreSQL; SQLite locks the whole file on write).
    ``TypeError`` for a name that is not a column of ``model``; database errors propagate."""
    sql, ordered, converters = _select(connection, model, names, key)
    if for_update and connection.features.has_select_for_update:
        sql += " FOR UPDATE"  # the row stays locked until the caller's transaction ends
    value = _field(model, key).get_db_prep_value(value, connection)
    with transaction.mark_for_rollback_on_error(connection.alias), connection.cursor() as cursor:
        cursor.execute(sql, [value])
        row = cursor.fetchone()
    if row is None:
        return None
    values = []
    for raw, (col, functions) in zip(row, converters, strict=True):
        for convert in functions:
            raw = convert(raw, col, connection)
        values.append(raw)
    return model.from_db(connection.alias, ordered, values)
