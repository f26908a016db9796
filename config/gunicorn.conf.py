"""gunicorn settings for the HTTP API: `gunicorn -c config/gunicorn.conf.py config.wsgi`.

Workers are gthread (threads overlap the database and Redis waits of one process;
WSGI costs a third of ASGI's CPU per request, bench/session_create.py). Command-line
flags override these values.

Garbage collection: Python's full collection walks every object the process tracks. In
a worker that is all of Django, the apps and what the first requests build (URL
resolvers, static file index, serializers): ~170,000 objects, and a full collection held
the GIL for ~120 ms every ~1,500 requests, stalling every thread of the worker — the
tail of session creation at 200 requests/s. So the app is imported once in the master
and frozen before forking (the workers share those pages instead of copying them when
a collection touches their reference counts), and each worker freezes again after its
first requests, leaving the collector only the objects of requests in flight (a full
collection then takes a few ms).
"""

from __future__ import annotations

import gc
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
preload_app = True

# After this many requests a worker's long-lived objects exist; freeze them once.
FREEZE_AFTER_REQUESTS = int(os.environ.get("GUNICORN_GC_FREEZE_AFTER", "200"))


def pre_fork(server, worker):
    gc.collect()
    gc.freeze()


def post_request(worker, req, environ, resp):
    # Threads finish requests concurrently: a flag rather than `nr ==`, which one could skip.
    if worker.nr >= FREEZE_AFTER_REQUESTS and not getattr(worker, "gc_frozen", False):
        worker.gc_frozen = True
        gc.collect()
        gc.freeze()
