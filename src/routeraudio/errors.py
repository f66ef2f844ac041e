"""The exception tree and the one mapping from exceptions to WebSocket close codes.

Every failure a client can see is one of these classes; ``close_code_for`` is the only place that
turns an exception into a close code, and ``CLOSE_CODES`` is the table the README documents.
"""

from __future__ import annotations

# Close codes: the spec's four, plus the ones routeraudio adds (README "Close codes").
NORMAL = 1000
GOING_AWAY = 1001  # server shutting down
INVALID_DATA = 1007  # audio that cannot be decoded as the declared encoding
TOO_BIG = 1009  # a frame over the configured maximum
INTERNAL = 1011
UNAUTHORIZED = 3000
INVALID_PARAMETER = 4000
IDLE_TIMEOUT = 4008
LIMIT = 4029  # concurrency, rate or pace limits
PROVIDER_ERROR = 4040


class RouterError(Exception):
    """Base of every error routeraudio reports to a client."""

    close_code: int = INTERNAL


class ParameterError(RouterError, ValueError):
    """A query parameter, control message or setting is missing or invalid."""

    close_code = INVALID_PARAMETER


class AuthError(RouterError):
    """Missing, invalid, expired, reused or out-of-scope key or token."""

    close_code = UNAUTHORIZED


class AudioFormatError(RouterError, ValueError):
    """Audio bytes that are not what the declared encoding promises.

    The message says what was expected, what was found and at which byte offset of the stream.
    """

    close_code = INVALID_DATA


class FrameTooLargeError(RouterError):
    close_code = TOO_BIG


class LimitError(RouterError):
    """A configured limit was hit: concurrent sessions, pace, buffered audio."""

    close_code = LIMIT


class IdleTimeoutError(RouterError):
    close_code = IDLE_TIMEOUT


class ShutdownError(RouterError):
    close_code = GOING_AWAY


class ProviderError(RouterError):
    """The upstream provider failed, refused, or broke its protocol.

    ``provider_code`` and ``provider_message`` carry the provider's own words, so that the client's
    error frame can include them.
    """

    close_code = PROVIDER_ERROR

    def __init__(self, message: str, *, provider_code: int | str | None = None,
                 provider_message: str | None = None) -> None:
        super().__init__(message)
        self.provider_code = provider_code
        self.provider_message = provider_message


class UpstreamConnectError(ProviderError):
    """The provider could not be reached or refused the handshake."""


class UpstreamProtocolError(ProviderError):
    """The provider sent something its protocol does not allow (malformed or unexpected frame)."""


class UpstreamTimeoutError(ProviderError):
    """The provider did not answer within a deadline (handshake, finalize, pings, stall)."""


CLOSE_CODES: dict[int, str] = {
    NORMAL: "normal closure: the stream ended and every transcript was delivered",
    GOING_AWAY: "server shutting down: finals so far were delivered; reconnect to another instance",
    INVALID_DATA: "audio could not be decoded as the declared encoding",
    TOO_BIG: "a frame was larger than the configured maximum",
    INTERNAL: "internal error in the router",
    UNAUTHORIZED: "unauthorized: missing, invalid, expired, reused or out-of-scope key or token",
    INVALID_PARAMETER: "invalid or missing query parameter or control message",
    IDLE_TIMEOUT: "no audio or keep_alive from the client within the idle timeout",
    LIMIT: "a limit was hit: concurrent sessions per key, pace or buffered audio",
    PROVIDER_ERROR: "the upstream provider returned an error or could not be reached",
}


def close_code_for(exc: BaseException) -> int:
    """The close code a client receives when ``exc`` ends its session."""
    if isinstance(exc, RouterError):
        return exc.close_code
    return INTERNAL
