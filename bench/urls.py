"""The product's URLs plus `/bench/bare`: a Django view returning a small JSON body (the baseline)."""

from django.http import JsonResponse
from django.urls import path

from config.urls import urlpatterns as product_urls


def bare(request):
    return JsonResponse({"ok": True, "sessionId": "00000000-0000-0000-0000-000000000000"})


urlpatterns = [path("bench/bare", bare), *product_urls]
handler404 = "config.views.not_found"
handler500 = "config.views.server_error"
