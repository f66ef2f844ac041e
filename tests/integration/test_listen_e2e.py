"""The listen path end to end over real loopback sockets: client -> router -> Deepgram simulator."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from routeraudio.testing.base import Faults, Script
from routeraudio.testing.deepgram import DeepgramSimulator

from .harness import LOOPS, PROVIDER_KEY, http_request, listen_url, pcm_chunks, router, run, session

PCM = dict(provider="deepgram", encoding="pcm_s16le", sample_rate=16000)
SCRIPT_TEXT = "Hello there. How are you today? Fine thanks."


def sim(**kw) -> DeepgramSimulator:
    kw.setdefault("script", Script.from_text(SCRIPT_TEXT, start=0.2, word_s=0.25, gap_s=0.05, pause_s=0.8))
    return DeepgramSimulator(api_key=PROVIDER_KEY, **kw)


def words_of(out) -> list[str]:
    return [w["text"] for m in out.finals for w in (m["words"] or [])]


@pytest.mark.parametrize("loop", LOOPS)
def test_router_key_header_full_session(loop, tmp_path):
    async def main():
        async with sim() as s, router(tmp_path, {"deepgram": s.listen_url}) as r:
            _, key = r.keys.create("t")
            out = await session(listen_url(r, **PCM), pcm_chunks(6.0), headers={"x-api-key": key})
            rec = s.connections[0]
            return out, rec

    out, rec = run(loop, main)
    assert out.code == 1000, out.messages
    assert not out.errors
    # every scripted word arrives once, in order, as finals, with punctuation (punctuate defaults true)
    assert [w.lower().strip(".,?!") for w in words_of(out)] == [
        "hello", "there", "how", "are", "you", "today", "fine", "thanks"]
    assert "Hello" in out.finals[0]["transcript"]
    starts = [m["start_time"] for m in out.finals]
    assert starts == sorted(starts)
    for a, b in zip(out.finals, out.finals[1:]):
        assert a["end_time"] <= b["start_time"] + 1e-6  # non-overlapping segments
    assert "is_partial" not in out.finals[0]  # only present when partials were requested
    assert "turn_end" in out.types
    assert out.types[-1] != "error"
    # upstream saw the provider key in Deepgram's own header format, never the router key
    assert rec.header("authorization") == f"Token {PROVIDER_KEY}"
    assert rec.param("encoding") == "linear16" and rec.param("sample_rate") == "16000"
    assert rec.audio_bytes == sum(map(len, pcm_chunks(6.0)))
    assert rec.control_types[-1] == "CloseStream"


@pytest.mark.parametrize("loop", LOOPS)
def test_auth_methods(loop, tmp_path):
    async def main():
        results = {}
        async with sim() as s, router(tmp_path, {"deepgram": s.listen_url}) as r:
            _, key = r.keys.create("t")
            chunks = pcm_chunks(0.4)
            results["query_key"] = await session(listen_url(r, **PCM, api_key=key), chunks)
            results["byok_header"] = await session(listen_url(r, **PCM), chunks, headers={"x-api-key": PROVIDER_KEY})
            results["byok_query"] = await session(listen_url(r, **PCM, api_key=PROVIDER_KEY), chunks)
            # the header wins over the query parameter, both ways
            results["header_wins"] = await session(listen_url(r, **PCM, api_key="router_bad_bad"), chunks,
                                                   headers={"x-api-key": key})
            results["header_wins_bad"] = await session(listen_url(r, **PCM, api_key=key), chunks,
                                                       headers={"x-api-key": "router_00000000_nope"})
            results["missing"] = await session(listen_url(r, **PCM), chunks)
            results["bad_router_key"] = await session(listen_url(r, **PCM), chunks,
                                                      headers={"x-api-key": key[:-2] + "zz"})
            results["byok_wrong"] = await session(listen_url(r, **PCM), chunks, headers={"x-api-key": "wrong"})
            status, body = await http_request(r.port, "POST", "/v1/token", {"x-api-key": key})
            assert status == 200 and body["expires_in"] == 60
            results["jwt"] = await session(listen_url(r, **PCM, jwt_token=body["token"]), chunks)
            results["jwt_reused"] = await session(listen_url(r, **PCM, jwt_token=body["token"]), chunks)
            connections = len(s.connections)
        return results, connections

    results, connections = run(loop, main)
    for name in ("query_key", "byok_header", "byok_query", "header_wins", "jwt"):
        assert results[name].code == 1000, (name, results[name].messages)
    for name in ("header_wins_bad", "missing", "bad_router_key", "jwt_reused"):
        assert results[name].code == 3000, (name, results[name].messages)
        assert results[name].errors and results[name].errors[0]["code"] == 3000
    assert "already used" in results["jwt_reused"].errors[0]["error"]
    # a wrong provider key reaches the provider, which refuses it: 4040 with the provider's words
    assert results["byok_wrong"].code == 4040
    assert "401" in results["byok_wrong"].errors[0]["error"]
    assert connections == 6  # five good sessions + the wrong BYOK; refused auth never went upstream


def test_tokens_restricted_expired_tampered_revoked(tmp_path):
    async def main():
        out = {}
        async with sim() as s, router(tmp_path, {"deepgram": s.listen_url}) as r:
            record, key = r.keys.create("t")
            chunks = pcm_chunks(0.2)

            async def token(body=None):
                status, resp = await http_request(r.port, "POST", "/v1/token", {"x-api-key": key},
                                                  json.dumps(body).encode() if body else b"")
                assert status == 200, resp
                return resp["token"]

            out["restricted"] = await session(listen_url(r, **PCM, jwt_token=await token({"providers": ["soniox"]})), chunks)
            out["allowed"] = await session(listen_url(r, **PCM, jwt_token=await token({"providers": ["deepgram"], "expires_in": 5})), chunks)
            t = await token()
            h, p, sig = t.split(".")
            out["tampered"] = await session(listen_url(r, **PCM, jwt_token=f"{h}.{p}.{sig[::-1]}"), chunks)
            none_token = h.replace(h, "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0") + "." + p + "."
            out["alg_none"] = await session(listen_url(r, **PCM, jwt_token=none_token), chunks)
            expired, _ = r.tokens.mint(record.id, ttl=1, now=time.time() - 30)
            out["expired"] = await session(listen_url(r, **PCM, jwt_token=expired), chunks)
            out["status_ttl"] = await http_request(r.port, "POST", "/v1/token", {"x-api-key": key}, b'{"expires_in": 601}')
            live = await token()
            r.keys.revoke(record.id)
            out["revoked"] = await session(listen_url(r, **PCM, jwt_token=live), chunks)
            out["status_bad_key"] = await http_request(r.port, "POST", "/v1/token", {"x-api-key": "router_x"})
            out["connections"] = len(s.connections)
        return out

    out = run("uvloop", main)
    assert out["allowed"].code == 1000
    for name in ("restricted", "tampered", "alg_none", "expired", "revoked"):
        assert out[name].code == 3000, (name, out[name].messages)
    assert "soniox" not in out["restricted"].errors[0]["error"] and "deepgram" in out["restricted"].errors[0]["error"]
    assert out["status_bad_key"][0] == 401
    assert out["status_ttl"][0] == 400
    assert out["connections"] == 1


BAD_PARAMS = [
    {"provider": None}, {"encoding": None}, {"sample_rate": None}, {"provider": "nope"},
    {"encoding": "flac"}, {"sample_rate": "11025"}, {"channels": "9"}, {"diarize": "perhaps"},
    {"punctuate": "x"}, {"partial_results": "x"}, {"endpointing": "-5"}, {"parse_json": "x"},
    {"model": "bad model"}, {"language": "e n"}, {"unknown_param": "1"},
]


def test_every_invalid_parameter_refused_before_upstream(tmp_path):
    async def main():
        outs = []
        async with sim() as s, router(tmp_path, {"deepgram": s.listen_url}) as r:
            _, key = r.keys.create("t")
            for change in BAD_PARAMS:
                params = {**PCM}
                for k, v in change.items():
                    if v is None:
                        params.pop(k)
                    else:
                        params[k] = v
                outs.append((change, await session(listen_url(r, **params), [b"\0\0" * 160],
                                                   headers={"x-api-key": key})))
            return outs, len(s.connections)

    outs, connections = run("uvloop", main)
    for change, out in outs:
        assert out.code == 4000, (change, out.messages)
        assert out.errors[0]["code"] == 4000
        name = next(iter(change))
        assert name in out.errors[0]["error"], (change, out.errors)
    assert connections == 0


def _encoded_fixture(encoding: str) -> tuple[bytes, float]:
    """A few seconds of a real encoded stream, and its duration."""
    import io

    import av
    import numpy as np

    rate, seconds = 48000, 3.0
    t = np.arange(int(rate * seconds)) / rate
    signal = (0.3 * np.sin(2 * np.pi * 300 * t) * 32767).astype(np.int16)
    fmt, codec, out_rate = {"ogg_opus": ("ogg", "libopus", 48000), "webm": ("webm", "libopus", 48000),
                            "mp3": ("mp3", "libmp3lame", 44100)}[encoding]
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=out_rate, layout="mono")
        resampled = signal if out_rate == rate else (
            np.interp(np.arange(int(out_rate * seconds)) * rate / out_rate, np.arange(len(signal)), signal)
            .astype(np.int16))
        frame = av.AudioFrame.from_ndarray(resampled.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = out_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue(), seconds


@pytest.mark.parametrize("encoding,rate", [("pcm_s16le", 16000), ("pcm_s16le", 44100), ("pcm_mulaw", 8000),
                                           ("ogg_opus", 48000), ("webm", 48000), ("mp3", 44100)])
def test_every_encoding_forwarded_natively(encoding, rate, tmp_path):
    if encoding.startswith("pcm"):
        width = 2 if encoding == "pcm_s16le" else 1
        data = bytes(range(256)) * (rate * width * 3 // 256)
        seconds = 3.0
    else:
        data, seconds = _encoded_fixture(encoding)
    chunks = [data[i:i + 3200] for i in range(0, len(data), 3200)]

    async def main():
        async with sim() as s, router(tmp_path, {"deepgram": s.listen_url}) as r:
            out = await session(listen_url(r, provider="deepgram", encoding=encoding, sample_rate=rate),
                                chunks, headers={"x-api-key": PROVIDER_KEY})
            return out, s.connections[0], r.metrics.get("routeraudio_audio_seconds_total", provider="deepgram")

    out, rec, metered = run("uvloop", main)
    assert out.code == 1000, out.messages
    assert rec.audio_bytes == len(data)  # unchanged bytes, none lost
    if encoding.startswith("pcm"):
        assert rec.param("encoding") == {"pcm_s16le": "linear16", "pcm_mulaw": "mulaw"}[encoding]
        assert rec.param("sample_rate") == str(rate)
    else:
        assert rec.param("encoding") is None and rec.param("sample_rate") is None
    assert metered == pytest.approx(seconds, abs=0.1)


def test_multichannel_pcm_is_downmixed(tmp_path):
    async def main():
        async with sim() as s, router(tmp_path, {"deepgram": s.listen_url}) as r:
            out = await session(listen_url(r, **{**PCM, "sample_rate": 48000}, channels=2),
                                pcm_chunks(1.0, rate=48000, channels=2), headers={"x-api-key": PROVIDER_KEY})
            return out, s.connections[0]

    out, rec = run("uvloop", main)
    assert out.code == 1000
    assert rec.param("channels") in (None, "1")
    assert rec.param("sample_rate") == "48000"
    assert rec.audio_bytes == 48000 * 2  # one second of mono s16


@pytest.mark.parametrize("loop", LOOPS)
def test_partials_turn_end_and_diarization(loop, tmp_path):
    async def main():
        script = Script.from_text(SCRIPT_TEXT, start=0.2, word_s=0.25, gap_s=0.05, pause_s=0.8, speakers=2)
        async with sim(script=script, interim_interval_s=0.2) as s, router(tmp_path, {"deepgram": s.listen_url}) as r:
            on = await session(listen_url(r, **PCM, partial_results=True, diarize=True), pcm_chunks(6.0),
                               headers={"x-api-key": PROVIDER_KEY})
            off = await session(listen_url(r, **PCM, punctuate=False), pcm_chunks(6.0),
                                headers={"x-api-key": PROVIDER_KEY})
            return on, off

    on, off = run(loop, main)
    assert on.code == off.code == 1000
    partials = [m for m in on.transcripts if m["is_partial"]]
    assert partials and all(m["is_partial"] is False for m in on.finals)
    speakers = {w["speaker"] for m in on.finals for w in m["words"]}
    assert speakers == {"0", "1"}
    assert all(m.get("is_partial") is None for m in off.transcripts)  # partials off: none, no field
    assert all(w["speaker"] is None for m in off.finals for w in m["words"])
    assert off.finals[0]["transcript"] == off.finals[0]["transcript"].lower()  # no punctuation
    # one turn_end per turn: three sentences
    assert on.types.count("turn_end") == 3 and off.types.count("turn_end") == 3


def test_raw_mode_forwards_provider_frames(tmp_path):
    async def main():
        async with sim() as s, router(tmp_path, {"deepgram": s.listen_url}) as r:
            out = await session(listen_url(r, **PCM, parse_json=False), pcm_chunks(3.0),
                                headers={"x-api-key": PROVIDER_KEY}, raw_text=True)
            return out, s.connections[0]

    out, rec = run("uvloop", main)
    assert out.code == 1000
    assert out.messages == rec.sent  # byte-for-byte the simulator's frames, in order
    assert json.loads(out.messages[-1])["type"] == "Metadata"


@pytest.mark.parametrize("close", ["close_stream", "empty"])
def test_finalize_and_end_of_audio_deliver_everything(close, tmp_path):
    async def main():
        script = Script.from_text("one two three four five six", start=0.1, word_s=0.3, gap_s=0.05, pause_s=0.5)
        async with sim(script=script) as s, router(tmp_path, {"deepgram": s.listen_url}) as r:
            # audio ends in the middle of the words: finalize then close must still deliver them all
            out = await session(listen_url(r, **PCM), pcm_chunks(2.2), headers={"x-api-key": PROVIDER_KEY},
                                controls={60: json.dumps({"type": "finalize"})}, close=close)
            return out, s.connections[0]

    out, rec = run("uvloop", main)
    assert out.code == 1000
    assert words_of(out) == ["one", "two", "three", "four", "five", "six"]
    assert "Finalize" in rec.control_types and rec.control_types[-1] == "CloseStream"
    assert rec.empty_frames == 0  # Deepgram closes on empty frames: the router never sends one


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("reset", [False, True])
def test_provider_failure_mid_stream(loop, reset, tmp_path):
    async def main():
        faults = Faults(fail_after_finals=2, fail_code=1011, fail_reason="NET-0001", fail_reset=reset)
        async with sim(faults=faults) as s, router(tmp_path, {"deepgram": s.listen_url}) as r:
            t0 = time.monotonic()
            out = await session(listen_url(r, **PCM), pcm_chunks(8.0), headers={"x-api-key": PROVIDER_KEY},
                                pace=0.002)
            return out, time.monotonic() - t0

    out, _ = run(loop, main)
    assert out.code == 4040
    assert len(out.finals) == 2  # the finals sent before the failure arrive...
    assert out.types[-1] == "error"  # ...then exactly one error frame
    assert out.types.count("error") == 1
    err = out.errors[0]
    assert err["code"] == 4040 and err["provider"] == "deepgram"
    if not reset:
        # Deepgram's own code for the close, and the WebSocket close code in the message
        assert err["provider_code"] == "NET-0001" and "1011" in err["error"]


@pytest.mark.parametrize("loop", LOOPS)
def test_client_vanishing_closes_upstream(loop, tmp_path):
    async def main():
        async with sim() as s, router(tmp_path, {"deepgram": s.listen_url}) as r:
            from websockets.asyncio.client import connect

            ws = await connect(listen_url(r, **PCM), additional_headers={"x-api-key": PROVIDER_KEY}, proxy=None)
            for chunk in pcm_chunks(0.5):
                await ws.send(chunk)
            while not s.connections or s.connections[0].audio_bytes < 16000:
                await asyncio.sleep(0.01)
            t0 = time.monotonic()
            ws.transport.abort()  # no close frame: the TCP link just drops
            rec = s.connections[0]
            await asyncio.wait_for(rec.finished.wait(), 5)
            return rec, rec.closed_at - t0, r

    rec, elapsed, r = run(loop, main)
    assert elapsed < 1.0
    assert rec.control_types[-1] == "CloseStream"  # the provider got its own end-of-stream message
    assert not r.sessions


def test_http_endpoints_and_metrics(tmp_path):
    async def main():
        async with sim() as s, router(tmp_path, {"deepgram": s.listen_url}) as r:
            await session(listen_url(r, **PCM), pcm_chunks(1.0), headers={"x-api-key": PROVIDER_KEY})
            await session(listen_url(r, **PCM), pcm_chunks(0.1))  # unauthorized
            return (await http_request(r.port, "GET", "/healthz"), await http_request(r.port, "GET", "/readyz"),
                    await http_request(r.port, "GET", "/metrics"), await http_request(r.port, "GET", "/nope"),
                    await http_request(r.port, "GET", "/v1/token"), await http_request(r.port, "GET", "/v1/listen"))

    health, ready, metrics, missing, token_get, listen_plain = run("uvloop", main)
    assert health[0] == 200 and ready == (200, {"ready": True, "sessions": 0})
    text = metrics[1]
    assert 'routeraudio_sessions_total{provider="deepgram"} 1' in text
    assert 'routeraudio_closes_total{code="1000",provider="deepgram"} 1' in text
    assert 'routeraudio_errors_total{code="3000",provider="none"} 1' in text
    assert 'routeraudio_upstream_connect_seconds_count{provider="deepgram"} 1' in text
    assert 'routeraudio_audio_seconds_total{provider="deepgram"} 1' in text
    assert missing[0] == 404 and token_get[0] == 405 and listen_plain[0] == 426


def test_limits_frame_size_idle_control_and_sessions_per_key(tmp_path):
    async def main():
        async with sim() as s, router(tmp_path, {"deepgram": s.listen_url}, max_frame_bytes=10_000,
                                      idle_timeout=0.5, max_sessions_per_key=1) as r:
            record, key = r.keys.create("t")
            big = await session(listen_url(r, **PCM), [b"\0" * 10_002], headers={"x-api-key": PROVIDER_KEY})
            idle = await session(listen_url(r, **PCM), [b"\0" * 320], headers={"x-api-key": PROVIDER_KEY},
                                 close=None)
            bad_control = await session(listen_url(r, **PCM), ['{"type":"rewind"}'], headers={"x-api-key": PROVIDER_KEY})
            odd = await session(listen_url(r, **PCM), [b"\0" * 321], headers={"x-api-key": PROVIDER_KEY})
            # the second concurrent session of one key is refused while the first stays up
            from websockets.asyncio.client import connect

            first = await connect(listen_url(r, **PCM), additional_headers={"x-api-key": key}, proxy=None)
            await first.send(b"\0" * 320)
            second = await session(listen_url(r, **PCM), [b"\0" * 320], headers={"x-api-key": key})
            await first.send(json.dumps({"type": "close_stream"}))
            async for _ in first:
                pass
            first_code = first.close_code
            await asyncio.sleep(0.05)
            third = await session(listen_url(r, **PCM), [b"\0" * 320], headers={"x-api-key": key})
            return big, idle, bad_control, odd, second, first_code, third

    big, idle, bad_control, odd, second, first_code, third = run("uvloop", main)
    assert big.code == 1009 and big.errors[0]["code"] == 1009
    assert idle.code == 4008 and "keep_alive" in idle.errors[0]["error"]
    assert bad_control.code == 4000
    assert odd.code == 1007 and "321" in odd.errors[0]["error"]
    assert second.code == 4029 and first_code == 1000 and third.code == 1000


def test_provider_unreachable_and_refusing(tmp_path):
    async def main():
        async with sim(faults=Faults(reject_auth=True)) as s, router(
                tmp_path, {"deepgram": s.listen_url}, upstream_connect_timeout=2.0) as r:
            refused = await session(listen_url(r, **PCM), pcm_chunks(0.2), headers={"x-api-key": PROVIDER_KEY})
        async with router(tmp_path / "b", {"deepgram": "ws://127.0.0.1:9/v1/listen"}) as r:
            unreachable = await session(listen_url(r, **PCM), pcm_chunks(0.2), headers={"x-api-key": PROVIDER_KEY})
        return refused, unreachable

    refused, unreachable = run("uvloop", main)
    assert refused.code == 4040 and refused.errors[0]["provider_code"] == 401
    assert unreachable.code == 4040 and "cannot reach deepgram" in unreachable.errors[0]["error"]


def test_fragmented_audio_and_pings_between_frames(tmp_path):
    """Fragmented binary messages and pings mixed with whole frames: the fast path steps aside and
    nothing is lost or reordered."""
    async def main():
        from websockets.asyncio.client import connect

        async with sim() as s, router(tmp_path, {"deepgram": s.listen_url}) as r:
            async with connect(listen_url(r, **PCM), additional_headers={"x-api-key": PROVIDER_KEY},
                               proxy=None) as ws:
                frames = pcm_chunks(2.0)
                for i, f in enumerate(frames):
                    if i % 7 == 3:
                        await ws.send([f[:100], f[100:400], f[400:]])  # one message in three fragments
                    else:
                        await ws.send(f)
                    if i % 11 == 5:
                        await ws.ping()
                await ws.send(json.dumps({"type": "close_stream"}))
                async for _ in ws:
                    pass
                code = ws.close_code
            return code, s.connections[0]

    code, rec = run("uvloop", main)
    assert code == 1000
    assert rec.audio_bytes == 2 * 16000 * 2
