"""Querysets compiled once and run many times with new values.

A report reads the open hours' raw rows with the same grouped query on every call; only
the range's ends change. Building and compiling that queryset costs the ORM 1-1.5 ms,
several times what PostgreSQL takes to run it. Here the queryset is built once per shape
with `Param` placeholders where the values go, compiled to SQL, and kept (per process,
least recently used first out); each call binds its values, prepared for the database as
the field would prepare them, and runs the SQL. The SQL is the ORM's own: one definition
of each query, whichever way it runs.

Small fixed queries every report makes (the sites, the watermarks) run the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.models import Expression, Field, QuerySet

from analytics.lru import SizedLRU


@dataclass(frozen=True, eq=False)
class _Slot:
    name: str
    field: Field


class Param(Expression):
    """Where a value bound at run time goes; `output_field` prepares it for the database."""

    def __init__(self, name: str, output_field: Field) -> None:
        super().__init__(output_field=output_field)
        self.name = name

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        return "%s", [_Slot(self.name, self.output_field)]


class Compiled:
    """A `.values()` queryset's SQL, its constant parameters and its Param slots; its rows are
    converted from the database as the queryset's would be (the compiler's converters)."""

    def __init__(self, queryset: QuerySet) -> None:
        self.alias = queryset.db
        query = queryset.query
        self._compiler = query.get_compiler(self.alias)
        self.sql, params = self._compiler.as_sql()
        self.params = tuple(params)
        self.columns = [*query.extra_select, *query.values_select, *query.annotation_select]

    def rows(self, **values: Any) -> list[dict[str, Any]]:
        connection = connections[self.alias]
        bound = [
            p.field.get_db_prep_value(values[p.name], connection) if isinstance(p, _Slot) else p for p in self.params
        ]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, bound)
            fetched = cursor.fetchall()
        return [dict(zip(self.columns, row, strict=True)) for row in self._compiler.results_iter(results=[fetched])]


class CompiledCache(SizedLRU):
    """Compiled queries by shape; every entry weighs one."""

    def __init__(self) -> None:
        super().__init__(lambda: 256)

    def get_or_build(self, key: Hashable, build: Callable[[], QuerySet]) -> Compiled:
        compiled = self.lookup(key)
        if compiled is None:
            compiled = Compiled(build())
            self.store(key, compiled, 1)
        return compiled


COMPILED = CompiledCache()
