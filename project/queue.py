"""The one way to enqueue a Celery task: by name, after the transaction commits, never raising.

Services enqueue by task NAME (`enqueue("labeling.make_thumbnails", ids)`), never by importing
the task module: the task module imports the service, so importing it back makes an import
circle.

Invariant: a message is sent only once the transaction that wrote what its task reads has
committed, so a worker never gets a message about a row it cannot see yet (outside a
transaction `on_commit` runs at once). If Redis is down the send fails fast — one connection
attempt bounded by LOUPE_QUEUE_TIMEOUT_S, no publish retries — and is logged, never raised into
the request: the rows are committed by then and a periodic sweep re-sends what is missing
(thumbnails, imports, iterations each have one). After a failure, sends are skipped for
LOUPE_QUEUE_BACKOFF_S, so a 1,000-file upload with 20 thumbnail batches costs one timeout, not
20. `on_error` lets a caller record the loss where a user will see it (fail the job).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

ErrorCallback = Callable[[Exception], None]


class BrokerUnavailable(Exception):
    """The broker did not take the message (down, unreachable, or within the backoff)."""


_lock = threading.Lock()
_down_until = 0.0  # time.monotonic() before which sends are skipped


def enqueue(
    task_name: str,
    *args: object,
    queue: str | None = None,
    on_error: ErrorCallback | None = None,
    **options: Any,
) -> None:
    """Send task `task_name` with `args` once the surrounding transaction commits.

    `options` go to Celery's `send_task` (task_id, time_limit, soft_time_limit, countdown...).
    A broker outage is logged and handed to `on_error` (if given); it never raises here.
    """
    transaction.on_commit(
        lambda: send(task_name, *args, queue=queue, on_error=on_error, **options), robust=True
    )


def send(
    task_name: str,
    *args: object,
    queue: str | None = None,
    on_error: ErrorCallback | None = None,
    **options: Any,
) -> bool:
    """Send now (a sweep, or code already past its commit). True if the broker took it."""
    try:
        _send(task_name, args, queue, options)
    except BrokerUnavailable as err:
        logger.warning("Could not queue %s%s: %s", task_name, _describe(args), err)
        if on_error is not None:
            try:
                on_error(err)
            except Exception:
                logger.exception("on_error of %s failed", task_name)
        return False
    return True


def broker_is_down() -> bool:
    """True within the backoff after a failed send: sweeps skip their work instead of waiting."""
    return time.monotonic() < _down_until


def reset_backoff() -> None:
    """Forget a past failure (tests; or a sweep that just reached the broker)."""
    global _down_until
    with _lock:
        _down_until = 0.0


def _send(task_name: str, args: tuple[object, ...], queue: str | None, options: Any) -> None:
    global _down_until
    if broker_is_down():
        raise BrokerUnavailable("the broker failed moments ago; the sweep will send it later")
    from kombu.exceptions import OperationalError

    from project.celery import app

    timeout_s = settings.LOUPE_QUEUE_TIMEOUT_S
    try:
        # A connection of its own with short socket timeouts (the worker's stay as configured).
        with app.connection_for_write(
            connect_timeout=timeout_s,
            transport_options={
                "socket_connect_timeout": timeout_s,
                "socket_timeout": timeout_s,
                "max_retries": 0,
            },
        ) as connection:
            # One bounded attempt: Celery's default publish retries and kombu's reconnect loop
            # held an upload's response for ~20 s while Redis was down (issue 16).
            connection.ensure_connection(max_retries=0, timeout=timeout_s)
            app.send_task(
                task_name,
                args=list(args),
                queue=queue,
                connection=connection,
                retry=False,
                # Nobody waits on a result of a task sent by name; asking for one would make
                # the Redis result backend subscribe first, another round trip that can hang.
                ignore_result=True,
                **options,
            )
    except (OperationalError, OSError, TimeoutError) as err:
        with _lock:
            _down_until = time.monotonic() + settings.LOUPE_QUEUE_BACKOFF_S
        raise BrokerUnavailable(str(err) or type(err).__name__) from err


def queued_count(queue: str) -> int | None:
    """Messages waiting in `queue` (not those a worker holds), or None if the broker is down.

    For sweeps: a queue with a backlog still holds the work a sweep would re-send.
    """
    if broker_is_down():
        return None
    from kombu.exceptions import ChannelError, OperationalError

    from project.celery import app

    timeout_s = settings.LOUPE_QUEUE_TIMEOUT_S
    try:
        with app.connection_for_read(
            connect_timeout=timeout_s,
            transport_options={"socket_connect_timeout": timeout_s, "socket_timeout": timeout_s},
        ) as connection:
            connection.ensure_connection(max_retries=0, timeout=timeout_s)
            channel = connection.default_channel
            try:
                return int(channel.queue_declare(queue=queue, passive=True).message_count)
            except ChannelError:  # Redis drops an empty list's key: the queue "does not exist"
                return 0
    except (OperationalError, OSError, TimeoutError) as err:
        logger.warning("Could not read the length of queue %s: %s", queue, err)
        return None


def _describe(args: tuple[object, ...]) -> str:
    text = repr(args)
    return text if len(text) <= 120 else text[:117] + "...)"
