"""Short-lived, single-use JWTs minted from a router key (``POST /v1/token``).

HS256 only, pinned. Required claims: exp, iat, jti, aud, sub (the key id); optional ``providers``.
Headers other than ``alg`` and ``typ`` are refused (no ``crit``, ``jku``, ``jwk``, ``kid``, ``x5u``...),
so nothing in a token can steer verification. A ``jti`` is accepted once: the router records used ids
in its database (``SharedJtiStore``), shared by its worker processes, and forgets each when the token
would have expired anyway.
"""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
import time
from typing import Iterable

import jwt

from ..config import PROVIDERS
from ..errors import AuthError, ParameterError
from .keys import open_database

ALGORITHM = "HS256"
AUDIENCE = "routeraudio"
LEEWAY = 5.0  # seconds of clock skew tolerated on iat/exp
_ALLOWED_HEADERS = frozenset({"alg", "typ"})
_REQUIRED = ["exp", "iat", "jti", "aud", "sub"]


class JtiStore:
    """Remembers used token ids until they expire, in this process only (tests, embedding)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._next_purge = 0.0

    def use(self, jti: str, expires: float, now: float) -> bool:
        """Mark ``jti`` used; False if it was used before."""
        if now >= self._next_purge:
            self._seen = {k: v for k, v in self._seen.items() if v > now}
            self._next_purge = now + 30.0
        if jti in self._seen:
            return False
        self._seen[jti] = expires + LEEWAY
        return True


_JTI_SCHEMA = """
CREATE TABLE IF NOT EXISTS used_tokens (jti TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS used_tokens_expires ON used_tokens (expires);
"""


class SharedJtiStore(JtiStore):
    """Used token ids in the router's database, so that a token is single-use across all worker
    processes (and across restarts), not once per worker. One INSERT per token presented; rows are
    purged once the token would have expired anyway."""

    def __init__(self, path) -> None:
        self._db = open_database(path, _JTI_SCHEMA)
        self._next_purge = 0.0

    def use(self, jti: str, expires: float, now: float) -> bool:
        if now >= self._next_purge:
            self._db.execute("DELETE FROM used_tokens WHERE expires <= ?", (now,))
            self._next_purge = now + 30.0
        try:
            self._db.execute("INSERT INTO used_tokens (jti, expires) VALUES (?, ?)", (jti, expires + LEEWAY))
        except sqlite3.IntegrityError:
            return False
        return True

    def close(self) -> None:
        self._db.close()


def _header(token: str) -> dict:
    try:
        head = token.split(".", 1)[0]
        return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except Exception:
        raise AuthError("jwt_token is not a well-formed JWT") from None


class TokenIssuer:
    def __init__(self, secret: bytes, *, default_ttl: float = 60.0, max_ttl: float = 600.0,
                 jti_store: JtiStore | None = None) -> None:
        if len(secret) < 32:
            raise ValueError("the JWT secret must be at least 32 bytes")
        self._secret = secret
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl
        self._jti = jti_store or JtiStore()

    def close(self) -> None:
        close = getattr(self._jti, "close", None)
        if close is not None:
            close()

    def mint(self, key_id: str, *, ttl: float | None = None, providers: Iterable[str] | None = None,
             now: float | None = None) -> tuple[str, int]:
        """Mint a token for ``key_id``; returns (token, expires_in seconds)."""
        if ttl is None:
            ttl = self.default_ttl
        if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not 1 <= ttl <= self.max_ttl:
            raise ParameterError(f"expires_in must be a number of seconds from 1 to {int(self.max_ttl)}")
        iat = int(time.time() if now is None else now)
        exp = iat + int(ttl)
        claims: dict = {"sub": key_id, "aud": AUDIENCE, "iat": iat, "exp": exp, "jti": secrets.token_urlsafe(16)}
        if providers is not None:
            plist = list(providers)
            bad = [p for p in plist if p not in PROVIDERS]
            if not plist or bad or not all(isinstance(p, str) for p in plist):
                raise ParameterError(f"providers must be a non-empty list of: {', '.join(PROVIDERS)}")
            claims["providers"] = sorted(set(plist))
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM, headers={"typ": "JWT"})
        return token, exp - iat

    def verify(self, token: str, provider: str, *, now: float | None = None) -> dict:
        """Claims of a valid, unused token that allows ``provider``; raises ``AuthError`` otherwise.

        Marks the token used: a second call with the same token fails.
        """
        if len(token) > 4096:
            raise AuthError("jwt_token is too long")
        header = _header(token)
        if header.get("alg") != ALGORITHM:
            raise AuthError(f"jwt_token must be signed with {ALGORITHM}")
        if set(header) - _ALLOWED_HEADERS:
            raise AuthError("jwt_token has header fields this router does not accept")
        if header.get("typ", "JWT") != "JWT":
            raise AuthError("jwt_token has the wrong typ")
        t = time.time() if now is None else now
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], audience=AUDIENCE, leeway=LEEWAY,
                options={"require": _REQUIRED, "verify_iat": True})
        except jwt.ExpiredSignatureError:
            raise AuthError("jwt_token has expired; mint a new one with POST /v1/token") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"jwt_token is invalid: {exc}") from None
        iat, exp = claims["iat"], claims["exp"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (iat, exp)):
            raise AuthError("jwt_token has non-numeric iat/exp")
        if iat > t + LEEWAY:
            raise AuthError("jwt_token is issued in the future")
        if exp <= t - LEEWAY:  # pyjwt already checks; kept in case a caller passes a fixed `now`
            raise AuthError("jwt_token has expired; mint a new one with POST /v1/token")
        if exp - iat > self.max_ttl + LEEWAY:
            raise AuthError("jwt_token lifetime is longer than this router allows")
        if not isinstance(claims["sub"], str) or not isinstance(claims["jti"], str):
            raise AuthError("jwt_token has malformed sub/jti claims")
        allowed = claims.get("providers")
        if allowed is not None:
            if not isinstance(allowed, list) or provider not in allowed:
                raise AuthError(f"jwt_token is not valid for provider {provider!r}")
        if not self._jti.use(claims["jti"], float(exp), t):
            raise AuthError("jwt_token was already used; tokens are single-use")
        return claims
