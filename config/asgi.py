"""ASGI entry point: HTTP through Django's WSGI handler on a thread pool, websockets through Channels.

The HTTP API is synchronous (DRF views, the ORM). Django's own ASGI handler runs such a
request through a chain of sync/async hand-offs and a new thread per request (asgiref's
thread-sensitive context): it cost ~2.9 ms of server CPU for a bare JSON view against
~0.9 ms for the same view through a2wsgi's WSGI bridge, which runs the WSGI handler on a
fixed pool of threads (bench/session_create.py --server uvicorn). Websockets (the live
dashboard) are async consumers and stay on Channels.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Django must be set up before importing anything that touches models.
django_wsgi_app = get_wsgi_application()

from a2wsgi import WSGIMiddleware  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from config.chunked import ChunkedBodyMiddleware  # noqa: E402
from config.gc_freeze import FreezeAfterWarmUpASGI, gc_freeze  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402

# Threads per process for HTTP requests (each holds its own persistent database connection).
HTTP_THREADS = int(os.environ.get("ASGI_HTTP_THREADS", "16"))

application = ProtocolTypeRouter(
    {
        # Long-lived objects leave the garbage collector after the first requests (config.gc_freeze).
        "http": FreezeAfterWarmUpASGI(WSGIMiddleware(ChunkedBodyMiddleware(django_wsgi_app), workers=HTTP_THREADS)),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

gc_freeze()  # what importing Django and the apps made lives as long as the process
