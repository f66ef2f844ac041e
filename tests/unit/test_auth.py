import base64
import hashlib
import json
import sqlite3
import time

import jwt
import pytest

from routeraudio.auth import KeyStore, TokenIssuer
from routeraudio.errors import AuthError, ParameterError

SECRET = b"s" * 40


@pytest.fixture
def store(tmp_path):
    s = KeyStore(tmp_path / "keys.db")
    yield s
    s.close()


def test_key_roundtrip_and_revoke(store):
    record, key = store.create("team-a", max_sessions=3)
    assert key.startswith("router_" + record.id + "_")
    assert store.verify(key).id == record.id
    assert store.verify(key + "x") is None
    assert store.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.verify("router_00000000_nope") is None
    assert [k.id for k in store.list()] == [record.id]
    assert store.revoke(record.id)
    assert store.verify(key) is None
    assert not store.revoke(record.id)


def test_database_holds_digests_only(store, tmp_path):
    keys = [store.create()[1] for _ in range(3)]
    raw = (tmp_path / "keys.db").read_bytes()
    for wal in tmp_path.glob("keys.db*"):
        raw += wal.read_bytes()
    for key in keys:
        secret = key.split("_", 2)[2]
        assert key.encode() not in raw and secret.encode() not in raw
    rows = sqlite3.connect(tmp_path / "keys.db").execute("SELECT digest FROM api_keys").fetchall()
    assert sorted(r[0] for r in rows) == sorted(hashlib.sha256(k.encode()).digest() for k in keys)


def test_token_mint_verify_single_use():
    issuer = TokenIssuer(SECRET)
    token, ttl = issuer.mint("abcd1234")
    assert ttl == 60
    claims = issuer.verify(token, "deepgram")
    assert claims["sub"] == "abcd1234" and claims["aud"] == "routeraudio"
    assert {"exp", "iat", "jti"} <= set(claims)
    with pytest.raises(AuthError, match="already used"):
        issuer.verify(token, "deepgram")


def test_token_is_single_use_across_processes_sharing_the_database(tmp_path):
    # Each worker process has its own issuer; the used ids live in the router's database.
    import multiprocessing as mp

    from routeraudio.auth import SharedJtiStore

    db = tmp_path / "routeraudio.db"
    minted = [TokenIssuer(SECRET).mint("abcd1234")[0] for _ in range(3)]
    worker_a = TokenIssuer(SECRET, jti_store=SharedJtiStore(db))
    assert worker_a.verify(minted[0], "deepgram")["sub"] == "abcd1234"
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:  # another process: a second worker
        results = pool.starmap(_verify_in_worker, [(str(db), minted[0]), (str(db), minted[1])])
    assert results == ["already used", "ok"]
    with pytest.raises(AuthError, match="already used"):
        worker_a.verify(minted[1], "deepgram")  # used by the other worker
    restarted = TokenIssuer(SECRET, jti_store=SharedJtiStore(db))  # and after a restart
    with pytest.raises(AuthError, match="already used"):
        restarted.verify(minted[0], "deepgram")
    assert restarted.verify(minted[2], "deepgram")["sub"] == "abcd1234"
    worker_a.close()
    restarted.close()


def _verify_in_worker(db: str, token: str) -> str:
    from routeraudio.auth import SharedJtiStore

    issuer = TokenIssuer(SECRET, jti_store=SharedJtiStore(db))
    try:
        issuer.verify(token, "deepgram")
        return "ok"
    except AuthError as exc:
        return "already used" if "already used" in str(exc) else str(exc)
    finally:
        issuer.close()


def test_token_provider_restriction():
    issuer = TokenIssuer(SECRET)
    token, _ = issuer.mint("k", providers=["soniox"])
    with pytest.raises(AuthError, match="deepgram"):
        issuer.verify(token, "deepgram")
    assert issuer.verify(token, "soniox")["providers"] == ["soniox"]


def test_token_lifetime_bounds():
    issuer = TokenIssuer(SECRET)
    assert issuer.mint("k", ttl=600)[1] == 600
    for bad in (0, 601, -5, "60", True):
        with pytest.raises(ParameterError):
            issuer.mint("k", ttl=bad)
    with pytest.raises(ParameterError):
        issuer.mint("k", providers=["nope"])


def test_expired_token():
    issuer = TokenIssuer(SECRET)
    token, _ = issuer.mint("k", ttl=10, now=time.time() - 100)
    with pytest.raises(AuthError, match="expired"):
        issuer.verify(token, "deepgram")


def _forge(header: dict, claims: dict, key: bytes = SECRET, alg: str = "sha256") -> str:
    import hmac

    enc = lambda obj: base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    signing = f"{enc(header)}.{enc(claims)}"
    sig = hmac.new(key, signing.encode(), getattr(hashlib, alg)).digest()
    return signing + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


def _claims(**over):
    now = int(time.time())
    c = {"sub": "k", "aud": "routeraudio", "iat": now, "exp": now + 60, "jti": "j" + str(time.monotonic_ns())}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


@pytest.mark.parametrize("header,claims", [
    ({"alg": "none", "typ": "JWT"}, _claims()),
    ({"alg": "HS512", "typ": "JWT"}, _claims()),
    ({"alg": "RS256", "typ": "JWT"}, _claims()),
    ({"alg": "HS256", "typ": "JWT", "crit": ["x"], "x": 1}, _claims()),
    ({"alg": "HS256", "typ": "JOSE+JSON"}, _claims()),
    ({"alg": "HS256", "jku": "http://127.0.0.1:1/jwks"}, _claims()),
    ({"alg": "HS256", "jwk": {"kty": "oct", "k": "AAAA"}}, _claims()),
    ({"alg": "HS256", "kid": "../../etc/passwd"}, _claims()),
    ({"alg": "HS256"}, _claims(exp=None)),
    ({"alg": "HS256"}, _claims(iat=None)),
    ({"alg": "HS256"}, _claims(jti=None)),
    ({"alg": "HS256"}, _claims(aud=None)),
    ({"alg": "HS256"}, _claims(sub=None)),
    ({"alg": "HS256"}, _claims(aud="someone-else")),
    ({"alg": "HS256"}, _claims(iat=int(time.time()) + 3600, exp=int(time.time()) + 3700)),
    ({"alg": "HS256"}, _claims(exp=int(time.time()) + 3600)),  # lifetime above the cap
])
def test_forged_and_malformed_tokens_refused(header, claims):
    issuer = TokenIssuer(SECRET)
    alg = {"HS512": "sha512"}.get(header.get("alg"), "sha256")
    token = _forge(header, claims, alg=alg)
    if header.get("alg") == "none":
        token = token.rsplit(".", 1)[0] + "."
    with pytest.raises(AuthError):
        issuer.verify(token, "deepgram")


def test_tampered_payload_and_signature():
    issuer = TokenIssuer(SECRET)
    token, _ = issuer.mint("k")
    h, p, s = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=="))
    claims["sub"] = "other"
    p2 = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(AuthError):
        issuer.verify(f"{h}.{p2}.{s}", "deepgram")
    with pytest.raises(AuthError):
        # change a character in the middle: its 6 bits are all signature bits (the last one's are not all)
        issuer.verify(f"{h}.{p}.{s[:10]}{'B' if s[10] == 'A' else 'A'}{s[11:]}", "deepgram")
    with pytest.raises(AuthError):
        issuer.verify("not-a-token", "deepgram")
    wrong_key = jwt.encode(_claims(), b"w" * 40, algorithm="HS256")
    with pytest.raises(AuthError):
        issuer.verify(wrong_key, "deepgram")


def test_secret_too_short():
    with pytest.raises(ValueError):
        TokenIssuer(b"short")
