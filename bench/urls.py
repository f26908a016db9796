"""The product's URLs plus the baselines the benchmarks measure in the same run:

- `/bench/bare`: a Django view returning a small JSON body;
- `/bench/ideal-ingest`: the least a Django view can do to store one event (bearer token
  looked up by its hash, one INSERT ... ON CONFLICT DO NOTHING in autocommit, orjson, no
  DRF, no validation, no counters, no consent check): the floor our ingestion is held to.
"""

import hashlib
from urllib.parse import urlsplit

import orjson
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from config.urls import urlpatterns as product_urls


def bare(request):
    return JsonResponse({"ok": True, "sessionId": "00000000-0000-0000-0000-000000000000"})


@csrf_exempt
def ideal_ingest(request):
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    event = orjson.loads(request.body)
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, neuron_id, anonymous_id FROM user_sessions WHERE token_hash = %s",
            [hashlib.sha256(token.encode()).hexdigest()],
        )
        row = cursor.fetchone()
        if row is None:
            return HttpResponse(status=401)
        page = event.get("page") or {}
        cursor.execute(
            "INSERT INTO behavior_events (neuron_id, session_id, anonymous_id, event_type, event_name, properties, "
            "page_url, page_path, page_title, referrer, timestamp, received_at, message_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, '', %s, %s, %s) "
            "ON CONFLICT (neuron_id, message_id) DO NOTHING",
            [
                row[1],
                row[0],
                row[2],
                event["eventType"],
                event.get("eventName", ""),
                orjson.dumps(event.get("eventData") or {}).decode(),
                page.get("url", ""),
                urlsplit(page.get("url", "")).path,
                page.get("title", ""),
                now,
                now,
                event["messageId"],
            ],
        )
    return HttpResponse(orjson.dumps({"stored": cursor.rowcount}), content_type="application/json")


urlpatterns = [path("bench/bare", bare), path("bench/ideal-ingest", ideal_ingest), *product_urls]
handler404 = "config.views.not_found"
handler500 = "config.views.server_error"
