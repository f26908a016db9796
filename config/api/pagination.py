from __future__ import annotations

from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination

from config.api.errors import ValidationFailed


class KeysetPagination(CursorPagination):
    """Keyset (cursor) pagination: stable under concurrent inserts, constant cost per page."""

    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = 500
    ordering = "-id"

    def decode_cursor(self, request):
        # DRF answers a cursor it cannot decode with a 404; it is a bad parameter of a page
        # that exists, so a 400 naming it.
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationFailed(
                errors={self.cursor_query_param: ["Invalid cursor: follow the `next` or `previous` link as given."]}
            ) from None
