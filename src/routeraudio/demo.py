"""``routeraudio demo``: the router's main job on one machine with no internet.

Starts a provider simulator and the router on loopback (a throw-away data directory: SQLite key
store, generated JWT secret), creates a router key, and streams the bundled 8 kHz mu-law sample
through the router at real-time pace, printing the unified transcripts as they arrive.
"""

from __future__ import annotations

import json
import tempfile
from importlib import resources

SAMPLE_TEXT = ("Hello, this is routeraudio. Your call is routed to the provider you choose, "
               "and the transcript comes back in one format.")


def _print(msg: dict) -> None:
    if msg.get("type") == "transcript":
        print(f"  [{msg['start_time']:5.2f}s - {msg['end_time']:5.2f}s] {msg['transcript']}", flush=True)
    elif msg.get("type") == "turn_end":
        print("  -- turn end --", flush=True)
    else:
        print("  " + json.dumps(msg), flush=True)


async def run_demo(provider: str = "deepgram") -> int:
    from .client import read_audio_file, stream_file
    from .config import ServerConfig
    from .server.app import Router
    from .testing import simulator_class
    from .testing.base import Script

    sim_key = "demo-provider-key"
    script = Script.from_text(SAMPLE_TEXT, start=0.3, word_s=0.28, gap_s=0.08, pause_s=0.5)
    sim = simulator_class(provider)(api_key=sim_key, script=script)
    with tempfile.TemporaryDirectory(prefix="routeraudio-demo-") as data_dir:
        async with sim:
            url = getattr(sim, "listen_url", sim.url)
            cfg = ServerConfig(host="127.0.0.1", port=0, data_dir=data_dir,
                               provider_keys={provider: sim_key}, provider_urls={provider: url})
            router = Router(cfg)
            await router.start()
            _, key = router.keys.create("demo")
            with resources.as_file(resources.files("routeraudio") / "data" / "sample.wav") as path:
                source = read_audio_file(path)
            print(f"router:    ws://127.0.0.1:{router.port}/v1/listen  (key {key[:16]}...)")
            print(f"provider:  {provider} simulator at {url}")
            print(f"streaming: bundled sample, {source.encoding} {source.sample_rate} Hz, real time\n")
            closed = await stream_file(f"ws://127.0.0.1:{router.port}", source, provider=provider, key=key,
                                       on_message=_print)
            await router.shutdown(drain_timeout=1.0)
    print(f"\nsession closed with code {closed.code}" + (f": {closed.reason}" if closed.reason else ""))
    return 0 if closed.code == 1000 else 1
