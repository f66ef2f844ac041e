"""Authentication: router API keys (hashed at rest) and short-lived single-use JWTs."""

from .keys import KEY_PREFIX, ApiKey, KeyStore, is_router_key
from .tokens import SharedJtiStore, TokenIssuer

__all__ = ["KEY_PREFIX", "ApiKey", "KeyStore", "SharedJtiStore", "TokenIssuer", "is_router_key"]
