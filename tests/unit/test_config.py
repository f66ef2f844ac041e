import pytest

from routeraudio.config import ENCODINGS, PROVIDERS, SAMPLE_RATES, ListenParams, ServerConfig
from routeraudio.errors import ParameterError

BASE = {"provider": "deepgram", "encoding": "pcm_s16le", "sample_rate": "16000"}


def test_defaults_applied():
    p = ListenParams.from_query(BASE)
    assert (p.channels, p.model, p.language, p.diarize, p.punctuate, p.partial_results, p.endpointing,
            p.parse_json) == (1, None, "en", False, True, False, 500, True)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_provider_and_encoding(provider, encoding):
    p = ListenParams.from_query({**BASE, "provider": provider, "encoding": encoding})
    assert (p.provider, p.encoding) == (provider, encoding)


@pytest.mark.parametrize("rate", SAMPLE_RATES)
def test_every_rate(rate):
    assert ListenParams.from_query({**BASE, "sample_rate": str(rate)}).sample_rate == rate


def test_query_lists_and_booleans():
    p = ListenParams.from_query({**{k: [v] for k, v in BASE.items()}, "diarize": ["TRUE"], "punctuate": ["0"],
                                 "partial_results": "yes", "parse_json": "false", "endpointing": "0",
                                 "channels": "8", "model": "nova-3-general", "language": "pt-BR",
                                 "api_key": "x", "jwt_token": "y"})
    assert p.diarize and not p.punctuate and p.partial_results and not p.parse_json
    assert (p.endpointing, p.channels, p.model, p.language) == (0, 8, "nova-3-general", "pt-BR")


INVALID = [
    ({"provider": None}, "provider"),
    ({"encoding": None}, "encoding"),
    ({"sample_rate": None}, "sample_rate"),
    ({"provider": "whisperx"}, "provider"),
    ({"encoding": "flac"}, "encoding"),
    ({"sample_rate": "11025"}, "sample_rate"),
    ({"sample_rate": "16k"}, "sample_rate"),
    ({"sample_rate": "-16000"}, "sample_rate"),
    ({"channels": "0"}, "channels"),
    ({"channels": "9"}, "channels"),
    ({"channels": "two"}, "channels"),
    ({"diarize": "maybe"}, "diarize"),
    ({"punctuate": ""}, "punctuate"),
    ({"partial_results": "2"}, "partial_results"),
    ({"parse_json": "nope"}, "parse_json"),
    ({"endpointing": "-1"}, "endpointing"),
    ({"endpointing": "1e3"}, "endpointing"),
    ({"endpointing": "600001"}, "endpointing"),
    ({"model": ""}, "model"),
    ({"model": "a b"}, "model"),
    ({"language": "en;drop"}, "language"),
    ({"sampel_rate": "16000"}, "sampel_rate"),
]


@pytest.mark.parametrize("change,name", INVALID)
def test_invalid_parameters_name_the_parameter(change, name):
    q = dict(BASE)
    for k, v in change.items():
        if v is None:
            q.pop(k)
        else:
            q[k] = v
    with pytest.raises(ParameterError) as info:
        ListenParams.from_query(q)
    assert name in str(info.value)


def test_repeated_parameter_refused():
    with pytest.raises(ParameterError, match="provider"):
        ListenParams.from_query({**BASE, "provider": ["deepgram", "soniox"]})


def test_server_config_env_and_toml(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('port = 9001\nidle_timeout = 12.5\n[provider_urls]\ndeepgram = "ws://127.0.0.1:1/v1/listen"\n')
    cfg = ServerConfig.load(str(toml), environ={"ROUTERAUDIO_PORT": "9002", "DEEPGRAM_API_KEY": "dg",
                                                "ROUTERAUDIO_SONIOX_URL": "ws://x", "ROUTERAUDIO_ALLOW_PROVIDER_KEYS": "false"})
    assert cfg.port == 9002  # environment wins over the file
    assert cfg.idle_timeout == 12.5
    assert cfg.provider_urls == {"deepgram": "ws://127.0.0.1:1/v1/listen", "soniox": "ws://x"}
    assert cfg.provider_keys == {"deepgram": "dg"}
    assert cfg.allow_provider_keys is False


def test_server_config_rejects_unknown_and_bad_values(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("prot = 1\n")
    with pytest.raises(ParameterError, match="prot"):
        ServerConfig.load(str(toml), environ={})
    with pytest.raises(ParameterError, match="port"):
        ServerConfig.load(None, environ={"ROUTERAUDIO_PORT": "eighty"})


def test_short_secret_refused(tmp_path):
    cfg = ServerConfig(data_dir=str(tmp_path), jwt_secret="x" * 31)
    with pytest.raises(ParameterError, match="32 bytes"):
        cfg.secret_bytes()


def test_generated_secret_persisted(tmp_path):
    cfg = ServerConfig(data_dir=str(tmp_path))
    first = cfg.secret_bytes()
    assert len(first) >= 32
    assert ServerConfig(data_dir=str(tmp_path)).secret_bytes() == first
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o077 == 0
