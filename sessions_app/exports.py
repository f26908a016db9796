"""Streamed session exports (CSV and JSON), shared by the admin API and the Django admin's actions.

Rows come from admin_selectors.session_export_rows (a server-side cursor on PostgreSQL, read in
chunks); they are written out 500 at a time, so memory stays flat whatever the export's size.
Every export is audited with its selection and row count before the first byte leaves.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import StreamingHttpResponse

from sessions_app.admin_selectors import EXPORT_NAMES, session_export_rows
from sessions_app.admin_services import sessions_export_audit
from sessions_app.models import UserSession


class _Line:
    """A write-only file for csv.writer that hands back what was written."""

    def write(self, value: str) -> str:
        return value


# A cell a spreadsheet would run as a formula (OWASP "CSV injection"): visitors choose their landing
# page, referrer, UTM values and anonymous id, and operators open exports in Excel or Sheets.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """Text that a spreadsheet would take for a formula, quoted with a leading apostrophe."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_stream(rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    writer = csv.writer(_Line())
    yield writer.writerow(EXPORT_NAMES).encode()
    batch: list[str] = []
    for row in rows:
        row["consent"] = ";".join(sorted(k for k, v in row["consent"].items() if v is True))
        batch.append(writer.writerow([_cell(value) for value in row.values()]))
        if len(batch) >= 500:
            yield "".join(batch).encode()
            batch = []
    if batch:
        yield "".join(batch).encode()


def json_stream(rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    yield b"["
    first = True
    batch: list[bytes] = []
    for row in rows:
        batch.append((b"" if first else b",") + orjson.dumps(row, default=str))
        first = False
        if len(batch) >= 500:
            yield b"".join(batch)
            batch = []
    yield b"".join(batch) + b"]"


EXPORT_FORMATS: dict[str, tuple[str, Callable[[Iterator[dict[str, Any]]], Iterator[bytes]]]] = {
    "csv": ("text/csv; charset=utf-8", csv_stream),
    "json": ("application/json", json_stream),
}


async def _async_chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    # Thread-sensitive: every chunk is read on the thread (and so the database connection)
    # that opened the cursor.
    pull = sync_to_async(lambda: next(chunks, None), thread_sensitive=True)
    while (chunk := await pull()) is not None:
        yield chunk


def _streaming_body(request: Any, chunks: Iterator[bytes]) -> Iterator[bytes] | AsyncIterator[bytes]:
    """Under ASGI Django would buffer a sync iterator whole before sending; hand it an async one."""
    if isinstance(getattr(request, "_request", request), ASGIRequest):
        return _async_chunks(chunks)
    return chunks


def sessions_export_response(
    *,
    request: Any,
    queryset: QuerySet[UserSession],
    export_format: str,
    actor: Any,
    selection: Mapping[str, Any],
) -> StreamingHttpResponse:
    """Audit the export (selection and count), then stream the sessions as CSV or JSON."""
    count = queryset.count()
    sessions_export_audit(actor=actor, selection=selection, count=count, export_format=export_format)
    content_type, stream = EXPORT_FORMATS[export_format]
    chunks = stream(session_export_rows(queryset=queryset))
    response = StreamingHttpResponse(_streaming_body(request, chunks), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="sessions.{export_format}"'
    response["X-Total-Count"] = str(count)
    return response
