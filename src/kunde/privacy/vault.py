"""The privacy vault: per-subject data keys, field encryption, blind indexes, shredding.

* Each subject (customer) gets a random 256-bit data key, stored wrapped
  (AES-256-GCM) by the master key from settings.
* `seal`/`open_` encrypt bytes under a data key with AES-256-GCM; the nonce is
  random and stored in front of the ciphertext.
* `blind_index` is a keyed HMAC-SHA256 of a normalised value, so PII such as an
  email can be looked up without being stored in clear.
* `shred` deletes a subject's data key: every copy of what was sealed under it,
  in rows, event payloads or backups, becomes unreadable.
* `rotate_master_key` re-wraps every data key under a new master key without
  touching the data.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Iterable

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kunde.core.clock import utcnow
from kunde.core.errors import KundeError
from kunde.privacy.tables import shredded_subjects, subject_keys, system_keys
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore

NONCE = 12
BLIND_INDEX_KEY = "blind_index"


class SubjectErased(KundeError):
    status = 410
    code = "privacy.subject_erased"


@functools.lru_cache(maxsize=4096)
def _aead(key: bytes) -> AESGCM:
    """Cipher objects are cheap to keep and not free to build: reuse them per key."""
    return AESGCM(key)


def master_key_id(master: bytes) -> str:
    return hashlib.sha256(b"kunde-master-key-id" + master).hexdigest()[:16]


class _KeyCache:
    """LRU of unwrapped data keys with a short lifetime, so a shred elsewhere takes effect soon."""

    def __init__(self, size: int = 100_000, ttl: float = 60.0) -> None:
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._size = size
        self._ttl = ttl

    def get(self, subject: str) -> bytes | None:
        item = self._items.get(subject)
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self._items[subject]
            return None
        self._items.move_to_end(subject)
        return item[1]

    def put(self, subject: str, key: bytes) -> None:
        self._items[subject] = (time.monotonic() + self._ttl, key)
        self._items.move_to_end(subject)
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def drop(self, subject: str) -> None:
        self._items.pop(subject, None)

    def clear(self) -> None:
        self._items.clear()


class Vault:
    def __init__(self, master_key: bytes, previous_master_keys: Iterable[bytes] = ()) -> None:
        self._masters = {master_key_id(master_key): AESGCM(master_key)}
        for old in previous_master_keys:
            self._masters.setdefault(master_key_id(old), AESGCM(old))
        self._current_id = master_key_id(master_key)
        self._cache = _KeyCache()
        self._blind_key: bytes | None = None

    # -- primitives ----------------------------------------------------------
    @staticmethod
    def seal(key: bytes, plaintext: bytes, aad: bytes | None = None) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + _aead(key).encrypt(nonce, plaintext, aad)

    @staticmethod
    def open_(key: bytes, blob: bytes, aad: bytes | None = None) -> bytes:
        return _aead(key).decrypt(blob[:NONCE], blob[NONCE:], aad)

    def _wrap(self, key: bytes, aad: bytes) -> bytes:
        return self.seal_with(self._masters[self._current_id], key, aad)

    @staticmethod
    def seal_with(aead: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + aead.encrypt(nonce, plaintext, aad)

    def _unwrap(self, wrapped: bytes, kek_id: str, aad: bytes) -> bytes:
        aead = self._masters.get(kek_id)
        if aead is None:
            raise KundeError(
                f"data key wrapped by unknown master key {kek_id}; "
                "add the old key to KUNDE_PREVIOUS_MASTER_KEYS",
                code="privacy.unknown_master_key",
                status=500,
            )
        return aead.decrypt(wrapped[:NONCE], wrapped[NONCE:], aad)

    # -- subject keys ----------------------------------------------------------
    def subject_key(self, subject: str, wrapped: bytes, kek_id: str) -> bytes:
        """A subject's data key from its ``subject_keys`` row, read by the caller's own query."""
        key = self._cache.get(subject)
        if key is None:
            key = self._unwrap(wrapped, kek_id, subject.encode())
            self._cache.put(subject, key)
        return key

    async def keys_for(
        self, uow: UnitOfWork, subjects: Iterable[str], *, create: bool
    ) -> dict[str, bytes]:
        """Data keys of the given subjects; with ``create`` missing ones are minted.

        A subject whose key was shredded never gets a new one: it is simply
        absent from the result.
        """
        wanted = set(subjects)
        found: dict[str, bytes] = {}
        missing: list[str] = []
        for s in wanted:
            key = self._cache.get(s)
            if key is None:
                missing.append(s)
            else:
                found[s] = key
        if not missing:
            return found
        found.update(await self._load(uow, missing))
        still = [s for s in missing if s not in found]
        if still and create:
            erased = await self._erased(uow, still)
            fresh = [s for s in still if s not in erased]
            if fresh:
                now = utcnow()
                rows = []
                for s in fresh:
                    rows.append({
                        "subject_id": s,
                        "wrapped_key": self._wrap(os.urandom(32), s.encode()),
                        "master_key_id": self._current_id,
                        "created_at": now,
                    })
                # Two transactions may mint a key for the same new subject: the
                # first insert wins and both read the winner back.
                await uow.execute(insert_ignore(uow.dialect, subject_keys), rows)
                found.update(await self._load(uow, fresh))
        return found

    async def _load(self, uow: UnitOfWork, subjects: list[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for i in range(0, len(subjects), 500):
            chunk = subjects[i : i + 500]
            rows = await uow.execute(
                sa.select(subject_keys.c.subject_id, subject_keys.c.wrapped_key,
                          subject_keys.c.master_key_id)
                .where(subject_keys.c.subject_id.in_(chunk))
            )
            for row in rows:
                sid = str(row.subject_id)
                key = self._unwrap(row.wrapped_key, row.master_key_id, sid.encode())
                self._cache.put(sid, key)
                out[sid] = key
        return out

    async def _erased(self, uow: UnitOfWork, subjects: list[str]) -> set[str]:
        rows = await uow.execute(
            sa.select(shredded_subjects.c.subject_id).where(
                shredded_subjects.c.subject_id.in_(subjects)
            )
        )
        return {r[0] for r in rows}

    async def is_shredded(self, uow: UnitOfWork, subject: str) -> bool:
        return bool(await self._erased(uow, [subject]))

    async def shred(self, uow: UnitOfWork, subject: str, reason: str) -> bool:
        """Destroy a subject's data key and record it in the erasure log. Idempotent."""
        await uow.execute(subject_keys.delete().where(subject_keys.c.subject_id == subject))
        result = await uow.execute(
            insert_ignore(uow.dialect, shredded_subjects),
            {"subject_id": subject, "shredded_at": utcnow(), "reason": reason},
        )
        self._cache.drop(subject)
        uow.after_commit(lambda: self._cache.drop(subject))
        return bool(result.rowcount)

    def forget_cached(self, subject: str) -> None:
        self._cache.drop(subject)

    # -- convenience for fields --------------------------------------------------
    async def encrypt_field(self, uow: UnitOfWork, subject: str, value: str) -> bytes:
        keys = await self.keys_for(uow, [subject], create=True)
        if subject not in keys:
            raise SubjectErased("this customer was erased", subject_id=subject)
        return self.seal(keys[subject], value.encode(), subject.encode())

    async def decrypt_field(self, uow: UnitOfWork, subject: str, blob: bytes | None) -> str | None:
        """The clear value, or None when the blob is empty or its subject was shredded."""
        if blob is None:
            return None
        keys = await self.keys_for(uow, [subject], create=False)
        key = keys.get(subject)
        if key is None:
            return None
        try:
            return self.open_(key, blob, subject.encode()).decode()
        except InvalidTag:
            return None

    # -- blind index -------------------------------------------------------------
    async def load_system_keys(self, uow: UnitOfWork) -> None:
        """Load (or create on first start) the blind-index key. Called once at start-up."""
        row = (
            await uow.execute(sa.select(system_keys).where(system_keys.c.name == BLIND_INDEX_KEY))
        ).first()
        if row is None:
            await uow.execute(
                insert_ignore(uow.dialect, system_keys),
                {
                    "name": BLIND_INDEX_KEY,
                    "wrapped_key": self._wrap(os.urandom(32), BLIND_INDEX_KEY.encode()),
                    "master_key_id": self._current_id,
                    "created_at": utcnow(),
                },
            )
            row = (
                await uow.execute(
                    sa.select(system_keys).where(system_keys.c.name == BLIND_INDEX_KEY)
                )
            ).one()
        self._blind_key = self._unwrap(row.wrapped_key, row.master_key_id, BLIND_INDEX_KEY.encode())

    def blind_index(self, kind: str, value: str) -> str:
        """A stable, keyed, non-reversible index of a normalised identifier (hex, 32 chars)."""
        if self._blind_key is None:
            raise RuntimeError("vault system keys not loaded; call load_system_keys at start")
        normalised = normalise_identifier(kind, value)
        mac = hmac.new(self._blind_key, f"{kind}\x1f{normalised}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    # -- rotation --------------------------------------------------------------
    async def rotate_master_key(self, uow: UnitOfWork, new_master: bytes) -> int:
        """Re-wrap every data key and system key under ``new_master``; returns keys re-wrapped."""
        new_id = master_key_id(new_master)
        new_aead = AESGCM(new_master)
        count = 0
        for table, name_col in ((subject_keys, "subject_id"), (system_keys, "name")):
            rows = (await uow.execute(sa.select(table))).all()
            for row in rows:
                name = getattr(row, name_col)
                key = self._unwrap(row.wrapped_key, row.master_key_id, name.encode())
                await uow.execute(
                    table.update()
                    .where(table.c[name_col] == name)
                    .values(
                        wrapped_key=self.seal_with(new_aead, key, name.encode()),
                        master_key_id=new_id,
                    )
                )
                count += 1
        self._masters[new_id] = new_aead
        self._current_id = new_id
        return count


def normalise_identifier(kind: str, value: str) -> str:
    """Case- and whitespace-normalised form used for lookups and blind indexes."""
    value = value.strip()
    if kind == "email":
        return value.lower()
    if kind == "phone":
        keep = "".join(ch for ch in value if ch.isdigit() or ch == "+")
        return keep
    return value
