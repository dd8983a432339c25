"""A lease heartbeat: a daemon thread that calls `renew` every `interval_s` until stopped.

Long jobs (training, dataset imports) hold a lease on their row or status file; a periodic sweep
re-queues or fails a job whose lease ran out, because its worker died. Progress writes renew the
lease too; the heartbeat covers long silent phases (one big batch, one long epoch).

Invariant: the heartbeat only extends a lease, never takes one; `renew` itself checks that this
attempt still holds the job. A failing `renew` (database or storage briefly away) is logged and
retried at the next beat; if it keeps failing the lease runs out and the sweep takes over, which
is what should happen to a worker that cannot reach its database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import close_old_connections, connection

logger = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, renew: Callable[[], None], *, interval_s: float, name: str) -> None:
        self._renew = renew
        self._interval_s = max(interval_s, 0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._interval_s):
                close_old_connections()  # this thread's own connection, if `renew` uses one
                try:
                    self._renew()
                except Exception:  # logged with its context; the next beat tries again
                    logger.warning("Lease heartbeat %s failed", self._thread.name, exc_info=True)
        finally:
            connection.close()
