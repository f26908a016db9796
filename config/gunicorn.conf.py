"""gunicorn settings for the HTTP API: `gunicorn -c config/gunicorn.conf.py config.wsgi`.

Workers are gthread (threads overlap the database and Redis waits of one process;
WSGI costs a third of ASGI's CPU per request, bench/session_create.py). Command-line
flags override these values.

The app is imported once in the master and frozen out of the garbage collector before
forking (the workers share those pages instead of copying them when a collection touches
their reference counts), and each worker freezes again after its first requests
(config.gc_freeze: a full collection had stalled a worker ~120 ms every ~1,500 requests).
"""

from __future__ import annotations

import os

from config.gc_freeze import FreezeAfterWarmUp, gc_freeze

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
preload_app = True
# A request line of up to 8 KB, as nginx's default buffers allow: analytics and admin
# filters can make long query strings; gunicorn's own limit (4,094 bytes) answered them 414.
limit_request_line = 8190

_warm_up = FreezeAfterWarmUp()  # one per worker: the master makes none of its requests


def pre_fork(server, worker):
    gc_freeze()


def post_request(worker, req, environ, resp):
    _warm_up.request_finished()
