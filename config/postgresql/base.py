"""Django's PostgreSQL backend with a health check that costs no round trip while the server
has not hung up.

With CONN_HEALTH_CHECKS, Django runs `SELECT 1` on a persistent connection at the start of
every request that uses the database, before its first query: a round trip per request on
top of the request's own queries. A server that restarts or ends a backend
closes the connection's socket, and sometimes first writes a last error message to it, so
an idle connection whose socket has nothing to read and has not been hung up is alive as
far as anything can tell without asking; only a connection whose socket does show something
(a hang-up, an error, or a notice or notification that arrived while it sat idle) is asked
`SELECT 1` as before. A server that vanishes without closing (a host cut off from the
network) is detected, by either check, only when the connection is used.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        try:
            poller = select.poll()
            poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
            idle = not poller.poll(0)  # POLLHUP and POLLERR are always reported
        except (OSError, ValueError):
            return False
        return idle or super().is_usable()
