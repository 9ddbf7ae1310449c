"""Client storage: tenants, their hashed API keys and their webhook signing secrets."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import secrets
import threading
import time

from sqlalchemy import bindparam, insert, select, update

from .db import Database
from .records import ClientRecord, new_id
from .schema import clients

# Every request looks its caller up by API key: an answer is kept this long. A secret
# rotation here clears what is kept; one by another server instance shows within this time.
CACHE_TTL_S = 5.0
CACHE_MAX = 10_000

_COLUMNS = [c for c in clients.c if c.name != "api_key_hash"]
_BY_KEY = select(*_COLUMNS).where(clients.c.api_key_hash == bindparam("key_hash"))


def hash_api_key(api_key: str) -> str:
    """API keys are 256-bit random tokens, so one SHA-256 is a sufficient one-way hash."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_webhook_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes, as Standard Webhooks specifies."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Clients:
    """The tenants of one database."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._by_key: dict[str, tuple[float, ClientRecord | None]] = {}
        self._lock = threading.Lock()

    def create(
        self, name: str, *, client_id: str | None = None, api_key: str | None = None
    ) -> tuple[ClientRecord, str]:
        """Create a tenant; returns it with its API key (shown once, stored hashed)."""
        api_key = api_key or "vt_" + secrets.token_urlsafe(32)
        record = ClientRecord(
            id=client_id or new_id("cli"),
            name=name,
            webhook_secret=new_webhook_secret(),
            previous_secret=None,
            previous_secret_until=None,
            created_at=time.time(),
        )
        with self._db.writer.begin() as conn:
            conn.execute(
                insert(clients).values(
                    api_key_hash=hash_api_key(api_key), **dataclasses.asdict(record)
                )
            )
        return record, api_key

    def get(self, client_id: str) -> ClientRecord | None:
        """One tenant by id."""
        with self._db.reader.connect() as conn:
            row = (
                conn.execute(select(*_COLUMNS).where(clients.c.id == client_id)).mappings().first()
            )
        return ClientRecord(**row) if row else None

    def by_api_key(self, api_key: str) -> ClientRecord | None:
        """The tenant owning ``api_key``; kept for ``CACHE_TTL_S``, as every request asks."""
        key_hash = hash_api_key(api_key)
        now = time.monotonic()
        kept = self._by_key.get(key_hash)
        if kept and kept[0] > now:
            return kept[1]
        with self._db.reader.connect() as conn:
            row = conn.execute(_BY_KEY, {"key_hash": key_hash}).mappings().first()
        record = ClientRecord(**row) if row else None
        with self._lock:
            if len(self._by_key) >= CACHE_MAX:
                self._by_key.clear()
            self._by_key[key_hash] = (now + CACHE_TTL_S, record)
        return record

    def all(self) -> list[ClientRecord]:
        """Every tenant, oldest first."""
        with self._db.reader.connect() as conn:
            rows = conn.execute(select(*_COLUMNS).order_by(clients.c.created_at)).mappings().all()
        return [ClientRecord(**row) for row in rows]

    def rotate_secret(self, client_id: str, *, grace_s: float) -> ClientRecord | None:
        """Give a tenant a new signing secret; the old one still signs for ``grace_s``."""
        with self._db.writer.begin() as conn:
            row = conn.execute(
                select(clients.c.webhook_secret).where(clients.c.id == client_id)
            ).first()
            if row is None:
                return None
            conn.execute(
                update(clients)
                .where(clients.c.id == client_id)
                .values(
                    webhook_secret=new_webhook_secret(),
                    previous_secret=row.webhook_secret,
                    previous_secret_until=time.time() + grace_s,
                )
            )
        with self._lock:
            self._by_key.clear()
        return self.get(client_id)
