"""Use cases of access control: issue and verify credentials.

Secrets (API keys, write keys) are random and long, so they are stored as
SHA-256 hashes and verified in constant time; passwords are short and human,
so they are stored with argon2id. A secret is returned exactly once, at creation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from datetime import timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from kunde.access.models import ROLES, Principal, validate_scopes
from kunde.access.tables import api_keys, login_failures, sources, staff_users
from kunde.core import jsonutil
from kunde.core.clock import utcnow
from kunde.core.errors import Conflict, InvalidInput, TooManyRequests, Unauthenticated
from kunde.core.ids import new_id
from kunde.store.database import Database

_hasher = PasswordHasher()
CHANNELS = ("web", "app", "store", "service", "email", "server", "other")
MAX_FAILURES_PER_EMAIL = 5
MAX_FAILURES_PER_IP = 20
FAILURE_WINDOW = timedelta(minutes=15)


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class _TtlCache:
    """Verified credentials for a few seconds, so a revoked key stops working soon."""

    def __init__(self, ttl: float = 10.0, size: int = 10_000) -> None:
        self.ttl, self.size = ttl, size
        self._d: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()

    def get(self, key: str) -> tuple[bool, Principal | None]:
        item = self._d.get(key)
        if item is None or item[0] < time.monotonic():
            return False, None
        return True, item[1]

    def put(self, key: str, value: Principal | None) -> None:
        self._d[key] = (time.monotonic() + self.ttl, value)
        if len(self._d) > self.size:
            self._d.popitem(last=False)

    def clear(self) -> None:
        self._d.clear()


class AccessService:
    def __init__(self, db: Database, secret_key: str) -> None:
        self.db = db
        self._token_key = hashlib.sha256(b"kunde-customer-token\x00" + secret_key.encode()).digest()
        self._cache = _TtlCache()

    # -- API keys ------------------------------------------------------------
    async def create_api_key(self, name: str, scopes: list[str]) -> tuple[str, str]:
        """Create a key; returns (key id, the full key to show once)."""
        try:
            clean = validate_scopes(scopes)
        except ValueError as exc:
            raise InvalidInput(str(exc), code="access.invalid_scopes") from exc
        if not clean:
            raise InvalidInput("an API key needs at least one scope", code="access.invalid_scopes")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        async with self.db.transaction() as uow:
            await uow.execute(api_keys.insert().values(
                id=key_id, name=name, secret_hash=_sha(secret), scopes=" ".join(clean),
                created_at=utcnow(),
            ))
        return key_id, f"kk_{key_id}_{secret}"

    async def revoke_api_key(self, key_id: str) -> bool:
        async with self.db.transaction() as uow:
            result = await uow.execute(
                api_keys.update().where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        self._cache.clear()
        return bool(result.rowcount)

    async def verify_api_key(self, token: str) -> Principal | None:
        hit, cached = self._cache.get(token)
        if hit:
            return cached
        principal = None
        parts = token.split("_", 2)
        if len(parts) == 3 and parts[0] == "kk":
            async with self.db.read() as conn:
                row = (await conn.execute(
                    sa.select(api_keys).where(api_keys.c.id == parts[1])
                )).first()
            if (row is not None and row.revoked_at is None
                    and hmac.compare_digest(row.secret_hash, _sha(parts[2]))):
                principal = Principal(kind="api_key", id=row.id, name=row.name,
                                      scopes=frozenset(row.scopes.split()))
        self._cache.put(token, principal)
        return principal

    # -- sources and write keys --------------------------------------------------
    async def create_source(self, name: str, channel: str = "web") -> tuple[str, str]:
        """Create an event source; returns (source id, write key to show once)."""
        if channel not in CHANNELS:
            raise InvalidInput(f"channel must be one of {', '.join(CHANNELS)}",
                               code="access.invalid_channel")
        write_key = "wk_" + secrets.token_urlsafe(24)
        source_id = new_id()
        async with self.db.transaction() as uow:
            exists = (await uow.execute(
                sa.select(sources.c.id).where(sources.c.name == name)
            )).first()
            if exists:
                raise Conflict(f"a source named {name!r} exists", code="access.source_exists")
            await uow.execute(sources.insert().values(
                id=source_id, name=name, channel=channel, write_key_hash=_sha(write_key),
                created_at=utcnow(),
            ))
        return source_id, write_key

    async def verify_write_key(self, write_key: str) -> Principal | None:
        cache_key = "wk:" + write_key
        hit, cached = self._cache.get(cache_key)
        if hit:
            return cached
        async with self.db.read() as conn:
            row = (await conn.execute(
                sa.select(sources).where(sources.c.write_key_hash == _sha(write_key))
            )).first()
        principal = None
        if row is not None and row.disabled_at is None:
            principal = Principal(kind="source", id=row.id, name=row.name,
                                  scopes=frozenset({"ingest:write"}), channel=row.channel)
        self._cache.put(cache_key, principal)
        return principal

    # -- staff users ---------------------------------------------------------------
    async def create_user(self, email: str, name: str, role: str, password: str) -> str:
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}",
                               code="access.invalid_role")
        if len(password) < 10:
            raise InvalidInput("passwords need at least 10 characters",
                               code="access.weak_password")
        user_id = new_id()
        async with self.db.transaction() as uow:
            exists = (await uow.execute(
                sa.select(staff_users.c.id).where(staff_users.c.email == email.lower())
            )).first()
            if exists:
                raise Conflict(f"a user with email {email} exists", code="access.user_exists")
            await uow.execute(staff_users.insert().values(
                id=user_id, email=email.lower(), name=name, role=role,
                password_hash=_hasher.hash(password), created_at=utcnow(),
            ))
        return user_id

    async def authenticate(self, email: str, password: str, ip: str) -> Principal:
        """Check a staff log-in; throttled per email and per client address."""
        email = email.strip().lower()
        since = utcnow() - FAILURE_WINDOW
        async with self.db.read() as conn:
            by_email = (await conn.execute(
                sa.select(sa.func.count()).select_from(login_failures)
                .where(login_failures.c.email == email, login_failures.c.at > since)
            )).scalar_one()
            by_ip = (await conn.execute(
                sa.select(sa.func.count()).select_from(login_failures)
                .where(login_failures.c.ip == ip, login_failures.c.at > since)
            )).scalar_one()
            row = (await conn.execute(
                sa.select(staff_users).where(staff_users.c.email == email)
            )).first()
        if by_email >= MAX_FAILURES_PER_EMAIL or by_ip >= MAX_FAILURES_PER_IP:
            raise TooManyRequests("too many failed log-ins; wait 15 minutes and try again",
                                  code="access.login_throttled")
        ok = False
        if row is not None and row.disabled_at is None:
            try:
                ok = _hasher.verify(row.password_hash, password)
            except (VerificationError, InvalidHashError):
                ok = False
        else:
            # Spend the same time as a real check so timing does not reveal accounts.
            _hasher.hash(password)
        if not ok or row is None:
            async with self.db.transaction() as uow:
                await uow.execute(login_failures.insert().values(
                    id=new_id(), email=email, ip=ip, at=utcnow()))
            raise Unauthenticated("wrong email or password", code="access.bad_credentials")
        return staff_principal(row.id, row.name, row.role)

    async def staff_by_id(self, user_id: str) -> Principal | None:
        async with self.db.read() as conn:
            row = (await conn.execute(
                sa.select(staff_users).where(staff_users.c.id == user_id)
            )).first()
        if row is None or row.disabled_at is not None:
            return None
        return staff_principal(row.id, row.name, row.role)

    # -- customer tokens -----------------------------------------------------------
    def issue_customer_token(self, customer_id: str, ttl: timedelta = timedelta(hours=1)) -> str:
        body = jsonutil.dumps({"cid": customer_id, "exp": int((utcnow() + ttl).timestamp())})
        payload = base64.urlsafe_b64encode(body).rstrip(b"=").decode()
        sig = hmac.new(self._token_key, payload.encode(), hashlib.sha256).digest()
        return f"ct.{payload}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"

    def verify_customer_token(self, token: str) -> Principal | None:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != "ct":
            return None
        expected = hmac.new(self._token_key, parts[1].encode(), hashlib.sha256).digest()
        try:
            given = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
            body = jsonutil.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(expected, given):
            return None
        if not isinstance(body, dict) or int(body.get("exp", 0)) < utcnow().timestamp():
            return None
        cid = str(body["cid"])
        return Principal(kind="customer", id=cid, name="customer", customer_id=cid)


def staff_principal(user_id: str, name: str, role: str) -> Principal:
    from kunde.access.models import ROLE_PERMISSIONS

    return Principal(kind="staff", id=user_id, name=name, role=role,
                     scopes=ROLE_PERMISSIONS.get(role, frozenset()))
