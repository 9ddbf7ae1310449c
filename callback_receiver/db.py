"""The receiver's database engine, sized for its threads (``service_common.engine``)."""

from __future__ import annotations

from sqlalchemy import Engine

from service_common import engine

PG_POOL_MAX = 12  # connections one receiver keeps to a PostgreSQL server, at most


def make_engine(url: str, *, pool_size: int, name: str | None = None) -> Engine:
    """An engine for ``url`` (``service_common.engine``) of ``pool_size`` connections.

    On PostgreSQL the pool is capped at ``PG_POOL_MAX`` (threads beyond it wait their turn: a
    server's connections are shared by every instance of both services), and ``name`` (the
    instance id) is the connections' ``application_name``, the payload of their notifications.
    """
    return engine.create(
        url, pool=(pool_size, 4), pg_pool=(min(pool_size, PG_POOL_MAX), 4), name=name
    )
