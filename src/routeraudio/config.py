"""Parse and validate what configures a session or the server. No I/O beyond reading a named file.

``ListenParams.from_query`` turns the ``/v1/listen`` query string into a validated value (or raises
``ParameterError`` naming the parameter); ``ServerConfig`` gathers the server's settings from the
environment and an optional TOML file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Mapping

from .errors import ParameterError

PROVIDERS = ("deepgram", "assemblyai", "elevenlabs", "openai", "speechmatics", "soniox", "gradium")
ENCODINGS = ("pcm_s16le", "pcm_mulaw", "ogg_opus", "webm", "mp3")
CONTAINER_ENCODINGS = frozenset({"ogg_opus", "webm", "mp3"})
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
MAX_CHANNELS = 8
MAX_ENDPOINTING_MS = 60_000
# Query parameters that authenticate rather than configure; accepted, never stored in ListenParams.
AUTH_QUERY_PARAMS = frozenset({"api_key", "jwt_token"})

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _parse_bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ParameterError(f"{name} must be true or false, got {value!r}")


def _parse_int(name: str, value: str, lo: int, hi: int) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        raise ParameterError(f"{name} must be a whole number, got {value!r}") from None
    if not lo <= n <= hi:
        raise ParameterError(f"{name} must be between {lo} and {hi}, got {n}")
    return n


def _parse_choice(name: str, value: str, choices: tuple) -> str:
    v = value.strip().lower()
    if v not in choices:
        raise ParameterError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return v


@dataclass(frozen=True, slots=True)
class ListenParams:
    """The validated query parameters of one ``/v1/listen`` session (spec: Query parameters)."""

    provider: str
    encoding: str
    sample_rate: int
    channels: int = 1
    model: str | None = None
    language: str = "en"
    diarize: bool = False
    punctuate: bool = True
    partial_results: bool = False
    endpointing: int = 500  # ms of silence before a segment is finalised
    parse_json: bool = True

    @classmethod
    def from_query(cls, query: Mapping[str, str | list[str]]) -> "ListenParams":
        """Validate a query mapping; raise ``ParameterError`` naming the first bad parameter."""
        known = {f.name for f in fields(cls)} | AUTH_QUERY_PARAMS
        q: dict[str, str] = {}
        for key, value in query.items():
            if key not in known:
                raise ParameterError(f"unknown query parameter {key!r}; known: {', '.join(sorted(known))}")
            if isinstance(value, list):
                if len(value) != 1:
                    raise ParameterError(f"query parameter {key!r} given {len(value)} times")
                value = value[0]
            q[key] = value
        for required in ("provider", "encoding", "sample_rate"):
            if not q.get(required, "").strip():
                raise ParameterError(f"missing required query parameter {required!r}")
        provider = _parse_choice("provider", q["provider"], PROVIDERS)
        encoding = _parse_choice("encoding", q["encoding"], ENCODINGS)
        rate_text = q["sample_rate"].strip()
        if not rate_text.isdigit() or int(rate_text) not in SAMPLE_RATES:
            raise ParameterError(
                f"sample_rate must be one of {', '.join(map(str, SAMPLE_RATES))}; got {q['sample_rate']!r}")
        kw: dict = {"provider": provider, "encoding": encoding, "sample_rate": int(rate_text)}
        if "channels" in q:
            kw["channels"] = _parse_int("channels", q["channels"], 1, MAX_CHANNELS)
        if "model" in q:
            model = q["model"].strip()
            if not model or len(model) > 100 or not all(c.isalnum() or c in "-_.:/" for c in model):
                raise ParameterError(f"model must be a provider model name, got {q['model']!r}")
            kw["model"] = model
        if "language" in q:
            lang = q["language"].strip()
            if not lang or len(lang) > 35 or not all(c.isalnum() or c in "-_" for c in lang):
                raise ParameterError(f"language must be a language code such as 'en' or 'pt-BR', got {q['language']!r}")
            kw["language"] = lang
        for name in ("diarize", "punctuate", "partial_results", "parse_json"):
            if name in q:
                kw[name] = _parse_bool(name, q[name])
        if "endpointing" in q:
            kw["endpointing"] = _parse_int("endpointing", q["endpointing"], 0, MAX_ENDPOINTING_MS)
        return cls(**kw)

    @property
    def is_container(self) -> bool:
        return self.encoding in CONTAINER_ENCODINGS


# --------------------------------------------------------------------------------------------------
# Server configuration

#: The environment variable each provider's own SDK reads its key from.
PROVIDER_KEY_ENV = {
    "deepgram": "DEEPGRAM_API_KEY",
    "assemblyai": "ASSEMBLYAI_API_KEY",
    "elevenlabs": "ELEVENLABS_API_KEY",
    "openai": "OPENAI_API_KEY",
    "speechmatics": "SPEECHMATICS_API_KEY",
    "soniox": "SONIOX_API_KEY",
    "gradium": "GRADIUM_API_KEY",
}

MIN_SECRET_BYTES = 32


def _default_data_dir() -> str:
    import os

    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "routeraudio")


@dataclass(slots=True)
class ServerConfig:
    """Every server setting, with its default. Environment: ``ROUTERAUDIO_<FIELD>`` (upper case)."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = field(default_factory=_default_data_dir)
    db_path: str = ""  # default: <data_dir>/routeraudio.db
    jwt_secret: str = ""  # default: generated on first run and kept in <data_dir>/jwt_secret
    allow_provider_keys: bool = True  # bring-your-own-key sessions
    token_default_ttl: float = 60.0
    token_max_ttl: float = 600.0
    # limits and timeouts (seconds / bytes)
    max_frame_bytes: int = 192_000  # 1 s of the largest raw format: 48 kHz s16 stereo
    max_http_header_bytes: int = 8192
    open_timeout: float = 10.0  # TCP accept -> complete handshake
    upstream_connect_timeout: float = 10.0
    idle_timeout: float = 30.0  # no audio or keep_alive from the client
    finalize_timeout: float = 10.0  # close_stream -> provider's end-of-stream marker
    upstream_close_timeout: float = 2.0  # our close -> provider's socket gone
    max_pending_audio_seconds: float = 10.0  # audio buffered while upstream connects
    pace_lead_seconds: float = 10.0  # a client may run this far ahead of real time, then it is paced (0: off)
    upstream_ping_interval: float = 20.0  # WebSocket ping to the provider (0: off)...
    upstream_ping_timeout: float = 20.0  # ...which must be answered within this long
    stall_timeout: float = 10.0  # the provider stops reading our audio for this long: 4040
    max_sessions_per_key: int = 100
    drain_timeout: float = 20.0  # SIGTERM -> streams get to finish
    provider_keys: dict[str, str] = field(default_factory=dict)
    provider_urls: dict[str, str] = field(default_factory=dict)

    @property
    def database(self) -> str:
        import os

        return self.db_path or os.path.join(self.data_dir, "routeraudio.db")

    @classmethod
    def load(cls, path: str | None = None, environ: Mapping[str, str] | None = None) -> "ServerConfig":
        """Defaults, then the TOML file (``path`` or ``ROUTERAUDIO_CONFIG``), then the environment."""
        import os
        import tomllib

        env = os.environ if environ is None else environ
        cfg = cls()
        path = path or env.get("ROUTERAUDIO_CONFIG")
        if path:
            try:
                with open(path, "rb") as f:
                    data = tomllib.load(f)
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ParameterError(f"cannot read config file {path}: {exc}") from None
            cfg._apply(data, source=str(path))
        values: dict = {}
        for f in fields(cls):
            name = f"ROUTERAUDIO_{f.name.upper()}"
            if name in env and f.name not in ("provider_keys", "provider_urls"):
                values[f.name] = env[name]
        for provider, var in PROVIDER_KEY_ENV.items():
            if env.get(var):
                values.setdefault("provider_keys", {})[provider] = env[var]
            url = env.get(f"ROUTERAUDIO_{provider.upper()}_URL")
            if url:
                values.setdefault("provider_urls", {})[provider] = url
        cfg._apply(values, source="environment")
        return cfg

    def _apply(self, data: Mapping, source: str) -> None:
        types = {f.name: f.type for f in fields(self)}
        for key, value in data.items():
            if key in ("provider_keys", "provider_urls"):
                if not isinstance(value, Mapping) or any(p not in PROVIDERS for p in value):
                    raise ParameterError(f"{source}: {key} must map provider names to strings")
                getattr(self, key).update({p: str(v) for p, v in value.items()})
                continue
            if key not in types:
                raise ParameterError(f"{source}: unknown setting {key!r}")
            kind = types[key]
            try:
                if kind == "bool":
                    value = value if isinstance(value, bool) else _parse_bool(key, str(value))
                elif kind == "int":
                    value = int(value)
                elif kind == "float":
                    value = float(value)
                else:
                    value = str(value)
            except (TypeError, ValueError):
                raise ParameterError(f"{source}: setting {key} must be {kind}, got {value!r}") from None
            setattr(self, key, value)

    def secret_bytes(self) -> bytes:
        """The JWT secret: configured (>= 32 bytes, else refuse to start) or generated and persisted."""
        import os
        import secrets

        if self.jwt_secret:
            raw = self.jwt_secret.encode("utf-8")
            if len(raw) < MIN_SECRET_BYTES:
                raise ParameterError(
                    f"jwt_secret must be at least {MIN_SECRET_BYTES} bytes (got {len(raw)}); "
                    "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'")
            return raw
        path = os.path.join(self.data_dir, "jwt_secret")
        os.makedirs(self.data_dir, exist_ok=True)
        try:
            with open(path, "rb") as f:
                raw = f.read().strip()
        except FileNotFoundError:
            raw = secrets.token_urlsafe(48).encode()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
        if len(raw) < MIN_SECRET_BYTES:
            raise ParameterError(f"{path} holds a JWT secret shorter than {MIN_SECRET_BYTES} bytes")
        return raw
