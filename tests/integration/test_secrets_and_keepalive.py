"""No key or token in any log, at DEBUG on every logger; keepalives flow upstream during silence."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from urllib.parse import quote


from routeraudio.providers.deepgram import DeepgramAdapter
from routeraudio.testing.deepgram import DeepgramSimulator

from .harness import PROVIDER_KEY, http_request, listen_url, pcm_chunks, router, run, session

PCM = dict(provider="deepgram", encoding="pcm_s16le", sample_rate=16000)


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def test_no_secret_in_any_log(tmp_path):
    cap = Capture()
    cap.setFormatter(logging.Formatter("%(name)s %(message)s %(exc_text)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(cap)
    root.setLevel(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        logging.getLogger(name).setLevel(logging.NOTSET)
    secrets: list[str] = [PROVIDER_KEY]

    async def main():
        async with DeepgramSimulator(api_key=PROVIDER_KEY) as s, router(tmp_path, {"deepgram": s.listen_url}) as r:
            _, key = r.keys.create("t")
            secrets.append(key)
            chunks = pcm_chunks(0.6)
            await session(listen_url(r, **PCM), chunks, headers={"x-api-key": key})
            await session(listen_url(r, **PCM, api_key=key), chunks)
            await session(listen_url(r, **PCM), chunks, headers={"x-api-key": PROVIDER_KEY})
            await session(listen_url(r, **PCM, api_key=PROVIDER_KEY), chunks)
            _, body = await http_request(r.port, "POST", "/v1/token", {"x-api-key": key})
            secrets.append(body["token"])
            await session(listen_url(r, **PCM, jwt_token=body["token"]), chunks)
            await session(listen_url(r, **PCM, jwt_token=body["token"]), chunks)  # reuse: refused
            bad = key[:-3] + "xyz"
            secrets.append(bad)
            await session(listen_url(r, **PCM), chunks, headers={"x-api-key": bad})
            wrong_provider_key = "wrong-provider-key-123456"
            secrets.append(wrong_provider_key)
            await session(listen_url(r, **PCM), chunks, headers={"x-api-key": wrong_provider_key})
            await http_request(r.port, "POST", "/v1/token", {"x-api-key": bad})

    try:
        run("uvloop", main)
    finally:
        root.removeHandler(cap)
        root.setLevel(old_level)
    text = "\n".join(cap.lines)
    assert "Authorization" in text or "> GET" in text or "listen" in text  # DEBUG logging really ran
    for secret in secrets:
        forms = {secret, quote(secret, safe="")}
        if len(secret) > 30:
            forms.add(secret[8:40])  # a fragment of a long key or token is a leak too
        for form in forms:
            assert form not in text, f"a secret leaked into the logs: {form[:12]}..."


def test_keepalive_sent_upstream_during_silence(tmp_path, monkeypatch):
    fast = dataclasses.replace(DeepgramAdapter.CAPABILITIES, keepalive_interval=0.2)
    monkeypatch.setattr(DeepgramAdapter, "CAPABILITIES", fast)

    async def main():
        async with DeepgramSimulator(api_key=PROVIDER_KEY, net_timeout=0.6) as s, \
                router(tmp_path, {"deepgram": s.listen_url}) as r:
            async def silence(ws):
                for _ in range(6):  # 1.2 s of silence: longer than Deepgram's (shortened) NET-0001 limit
                    await ws.send(json.dumps({"type": "keep_alive"}))
                    await asyncio.sleep(0.2)
            out = await session(listen_url(r, **PCM), pcm_chunks(0.2), headers={"x-api-key": PROVIDER_KEY},
                                after_send=silence)
            return out, s.connections[0]

    out, rec = run("uvloop", main)
    assert out.code == 1000, out.messages
    assert rec.control_types.count("KeepAlive") >= 3
