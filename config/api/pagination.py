from __future__ import annotations

from rest_framework.pagination import CursorPagination


class KeysetPagination(CursorPagination):
    """Keyset (cursor) pagination: stable under concurrent inserts, constant cost per page."""

    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = 500
    ordering = "-id"
