"""Pages (not API): the demo of the browser session manager."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from federation.selectors import neuron_get_by_slug


@require_GET
def demo_page(request: HttpRequest, rest: str = "") -> HttpResponse:
    """A small shop page wired to static/session/session-manager.js against this server.

    Every path under /demo/ renders it, so the page's single-page navigation survives a reload.
    The publishable key it embeds is not a secret; the page is off in production unless enabled.
    """
    if not settings.DEMO_PAGE_ENABLED:
        raise Http404("The demo page is disabled.")
    neuron = neuron_get_by_slug(slug=settings.DEMO_NEURON_SLUG)
    return render(
        request,
        "demo/index.html",
        {
            "neuron": neuron,
            "demo_slug": settings.DEMO_NEURON_SLUG,
            "demo_config": {"siteKey": neuron.publishable_key if neuron else ""},
        },
    )
