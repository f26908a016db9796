from __future__ import annotations

from django.core.exceptions import ValidationError
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination

from config.api.errors import ValidationFailed


class KeysetPagination(CursorPagination):
    """Keyset (cursor) pagination: stable under concurrent inserts, constant cost per page."""

    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = 500
    ordering = "-id"

    def get_page_size(self, request):
        # DRF serves its default page for a page size it cannot read ("ten", 0, -3): a 400 instead.
        # Above the maximum it clamps, as PostHog and Matomo do.
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None or raw == "":
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if size < 1:
            raise ValidationFailed(errors={self.page_size_query_param: ["Expected a whole number of at least 1."]})
        return min(size, self.max_page_size)

    def paginate_queryset(self, queryset, request, view=None):
        # The field a cursor's position is compared with, to check a decoded position first.
        name = self.get_ordering(request, queryset, view)[0].lstrip("-")
        self.position_field = queryset.model._meta.get_field(name)
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        # DRF answers a cursor it cannot decode with a 404, and one that decodes to a position
        # the ordering field cannot hold (`p=x` for an id) with a 500 from the query; either
        # is a bad parameter of a page that exists, so a 400 naming it.
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise self._invalid() from None
        if cursor is not None and cursor.position is not None:
            field = getattr(self, "position_field", None)
            try:
                if field is not None:
                    field.run_validators(field.to_python(cursor.position))
            except ValidationError:
                raise self._invalid() from None
        return cursor

    def _invalid(self) -> ValidationFailed:
        return ValidationFailed(
            errors={self.cursor_query_param: ["Invalid cursor: follow the `next` or `previous` link as given."]}
        )
