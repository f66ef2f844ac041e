"""Whole-router load harness: N concurrent real-time streams through the router, side by side with
the same streams sent straight to the provider simulator and (optionally) through nginx.

    python bench/load.py --profiles telephony --streams 100,500,1000 --seconds 20
    python bench/load.py --profiles telephony,pcm16k,browser,pcm44k --streams 100 --nginx
    python bench/load.py --profiles telephony --streams 400 --workers 2

Every stream is a real WebSocket client sending a fixture at real-time pace in 20 ms frames; a
provider simulator behind the router plays a scripted transcript. Three process kinds run:
the simulator (one process), the router (``routeraudio serve``; N workers with ``--workers``),
and ``--clients`` load-generator processes. All share CLOCK_MONOTONIC, so the client's send time of
a frame and the simulator's receive time of the same audio are comparable.

Profiles: ``telephony`` (8 kHz mu-law) and ``pcm16k`` go unchanged to Deepgram; ``browser`` (WebM/Opus)
is decoded to 16 kHz PCM for Speechmatics; ``pcm44k`` (44.1 kHz s16le) is resampled to 24 kHz for
OpenAI Realtime, which takes PCM at 24 kHz only. The direct baseline of every profile goes to the
Deepgram-protocol sink, which takes each format as is; ``--nginx`` runs for unconverted profiles only.

Measured per profile and N (JSON + markdown + PNG under --out):
- forward latency: client send of a frame -> simulator receipt of the audio it carries (matched by
  byte position when forwarded unchanged, by audio seconds when converted), p50/p99/max; the same
  streams sent straight to the simulator give the baseline, and "added" is router minus baseline;
- return latency: simulator send of a final -> client receipt (k-th final of a stream), likewise;
- router CPU: ms of CPU (utime+stime of the router processes) per second of audio streamed;
- router RSS per connection, idle (connected, upstream open, no audio) and active;
- lost audio (bytes or seconds the simulator received vs sent) and lost finals (sent vs received);
- with --nginx: the direct streams relayed by nginx (proxy_pass + upgrade headers), and the
  router's CPU per stream as a ratio to nginx's;
- with --uvrelay: the same through a raw uvloop TCP relay (bytes in, bytes out, no WebSocket parsing:
  the floor of the router's own stack), and the router's CPU as a ratio to it.
Bounded: every phase has a deadline and the whole run stops by itself; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent
FRAME_MS = 20
SAMPLE_EVERY = 5  # latency samples: every 5th frame (100 ms) of every stream

# profile -> client encoding and rate, the provider behind the router (bench/loadgen.py's sink speaks a
# minimal Deepgram, Speechmatics or OpenAI Realtime), and whether the router converts: WebM/Opus ->
# 16 kHz PCM for Speechmatics; 44.1 kHz PCM resampled to 24 kHz for OpenAI, which takes PCM at 24 kHz only.
PROFILES = {
    "telephony": dict(encoding="pcm_mulaw", rate=8000, provider="deepgram", converted=False),
    "pcm16k": dict(encoding="pcm_s16le", rate=16000, provider="deepgram", converted=False),
    "browser": dict(encoding="webm", rate=48000, provider="speechmatics", converted=True),
    "pcm44k": dict(encoding="pcm_s16le", rate=44100, provider="openai", converted=True),
}
# --pin: (relay CPUs, harness CPUs). The router (or nginx) runs on the last CPU, the load generators
# and the sink on the others, so that neither steals the other's core; None: the OS schedules.
PIN: tuple[set[int], set[int]] | None = None


def _pin_relay():
    if PIN is not None:
        os.sched_setaffinity(0, PIN[0])


def _pin_harness(pid: int) -> None:
    if PIN is not None:
        os.sched_setaffinity(pid, PIN[1])


SCRIPT = "Hello, how are you today? I am calling about my order. It was supposed to arrive on Monday."


# -- fixtures ---------------------------------------------------------------------------------------
def make_frames(profile: str, seconds: float) -> tuple[list[bytes], list[float]]:
    """The client's frames and the audio seconds each one ends at."""
    p = PROFILES[profile]
    n = int(seconds * 1000 / FRAME_MS)
    if p["encoding"] in ("pcm_mulaw", "pcm_s16le"):
        rate = p["rate"]
        per = rate * FRAME_MS // 1000
        samples = [int(8000 * math.sin(2 * math.pi * 220 * i / rate) * (0.6 + 0.4 * math.sin(i / rate)))
                   for i in range(per * n)]
        if p["encoding"] == "pcm_s16le":
            import struct

            raw = struct.pack(f"<{len(samples)}h", *samples)
            frames = [raw[i * per * 2:(i + 1) * per * 2] for i in range(n)]
        else:
            frames = [bytes(_mulaw(s) for s in samples[i * per:(i + 1) * per]) for i in range(n)]
        return frames, [(i + 1) * FRAME_MS / 1000 for i in range(n)]
    # webm: a MediaRecorder-like stream cut into the packets' own 20 ms blocks
    import io

    import av
    import numpy as np

    t = np.arange(int(48000 * seconds)) / 48000
    pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16).reshape(1, -1)
    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as out:
        st = out.add_stream("libopus", rate=48000, layout="mono")
        fr = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        fr.sample_rate = 48000
        for pkt in list(st.encode(fr)) + list(st.encode(None)):
            out.mux(pkt)
    data = buf.getvalue()
    # split so that each client frame carries about one 20 ms packet (as MediaRecorder timeslices do)
    step = max(1, len(data) // n)
    frames = [data[i:i + step] for i in range(0, len(data), step)]
    # the audio each prefix of the stream really carries (complete Opus packets), not a byte estimate
    from routeraudio.audio import AudioMeter

    meter = AudioMeter("webm", 48000, 1)
    ends = []
    for f in frames:
        meter.feed(f)
        ends.append(meter.duration)
    return frames, ends


def _mulaw(s: int) -> int:
    sign = 0x80 if s < 0 else 0
    s = min(abs(s), 32635) + 132
    exp = max(0, s.bit_length() - 8)
    mant = (s >> (exp + 3)) & 0x0F
    return ~(sign | (exp << 4) | mant) & 0xFF


# -- provider sink process -------------------------------------------------------------------------
SINK_PATHS = {"deepgram": "/v1/listen", "speechmatics": "/v2", "openai": "/v1/realtime"}


def sim_main(provider: str, port_file: str, stats_file: str, seconds: float) -> None:
    import uvloop

    from loadgen import Sink

    async def main():
        sink = Sink(provider)
        port = await sink.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        Path(port_file).write_text(f"ws://127.0.0.1:{port}{SINK_PATHS[provider]}")
        await stop.wait()
        out: dict = {}
        for rec in sink.records:
            out.setdefault(rec["key"], []).append(rec)
        Path(stats_file).write_text(json.dumps(out))

    uvloop.run(main())


# -- client processes -------------------------------------------------------------------------------
def client_main(mode: str, url: str, profile: str, keys: list[str], seconds: float, start_at: float,
                result_file: str, loop_kind: str) -> None:
    """Run len(keys) streams from this process on one 20 ms ticker; ``mode``: router or direct."""
    import uvloop

    from loadgen import masked_frames, open_client, text_frame

    frames, ends = make_frames(profile, seconds)
    wire = masked_frames(frames)
    p = PROFILES[profile]
    host_port, _, path = url.removeprefix("ws://").partition("/")
    host, port = host_port.split(":")
    path = "/" + path

    async def main():
        conns = []
        for key in keys:
            if mode == "router":
                q = {"provider": p["provider"], "encoding": p["encoding"], "sample_rate": p["rate"]}
                conns.append(await open_client(host, int(port), f"{path}?{urlencode(q)}", {"x-api-key": key}))
            else:
                q = {"model": "nova-3", "channels": 1}
                if p["encoding"] != "webm":
                    q.update(encoding={"pcm_mulaw": "mulaw", "pcm_s16le": "linear16"}[p["encoding"]],
                             sample_rate=p["rate"])
                conns.append(await open_client(host, int(port), f"{path}?{urlencode(q)}",
                                               {"Authorization": f"Token {key}"}))
        tx = [[] for _ in conns]
        groups = 10  # streams are spread over 10 phases 2 ms apart, as independent callers would be
        cum = 0
        for i, f in enumerate(wire):
            cum += len(frames[i])
            for g in range(groups):
                delay = start_at + i * FRAME_MS / 1000 + g * FRAME_MS / 1000 / groups - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sample = i % SAMPLE_EVERY == 0 or i == len(wire) - 1
                for k in range(g, len(conns), groups):
                    c = conns[k]
                    if c.transport.is_closing():
                        continue
                    c.transport.write(f)
                    if sample:
                        tx[k].append((time.monotonic(), cum, ends[i]))
        end_msg = text_frame(json.dumps({"type": "close_stream"} if mode == "router" else {"type": "CloseStream"}))
        for c in conns:
            if not c.transport.is_closing():
                c.transport.write(end_msg)
        try:
            await asyncio.wait_for(asyncio.gather(*(c.closed for c in conns)), 30)
        except TimeoutError:
            pass
        out = [{"key": k, "tx": tx[i], "finals_rx": c.finals_rx, "close": c.close_code,
                "bytes_sent": cum, "seconds_sent": ends[-1]} for i, (k, c) in enumerate(zip(keys, conns))]
        Path(result_file).write_text(json.dumps(out))

    (uvloop.run if loop_kind == "uvloop" else asyncio.run)(main())


# -- processes and accounting ------------------------------------------------------------------------
def proc_cpu(pids: list[int]) -> float:
    """utime + stime seconds of these processes."""
    return sum(proc_cpu_split(pids))


def proc_cpu_split(pids: list[int]) -> tuple[float, float]:
    """(utime, stime) seconds of these processes: user space, and the kernel (mostly socket calls)."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(fields[11]) / tick
            system += int(fields[12]) / tick
        except (OSError, IndexError):
            pass
    return user, system


def proc_rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def worker_sessions(pids: list[int]) -> list[int]:
    """Established client connections each worker holds (half of its sockets: the other half go
    upstream), from psutil; [] when psutil is not installed."""
    try:
        import psutil
    except ImportError:
        return []
    counts = []
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:
            continue
        counts.append(sum(1 for c in conns if c.status == "ESTABLISHED") // 2)
    return counts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str = "/healthz", timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                if b"200" in s.recv(100):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port}")


def start_router(sim_url: str, provider: str, workers: int, loop_kind: str, data_dir: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    import routeraudio

    pkg_parent = str(Path(routeraudio.__file__).resolve().parent.parent)
    env = dict(os.environ, ROUTERAUDIO_DATA_DIR=data_dir,
               PYTHONPATH=os.pathsep.join(filter(None, [pkg_parent, os.environ.get("PYTHONPATH")])), ROUTERAUDIO_MAX_SESSIONS_PER_KEY="100000",
               ROUTERAUDIO_IDLE_TIMEOUT="120", ROUTERAUDIO_PACE_LEAD_SECONDS="0",
               **{f"ROUTERAUDIO_{provider.upper()}_URL": sim_url})
    proc = subprocess.Popen([sys.executable, "-m", "routeraudio", "--log-level", "warning", "serve",
                             "--port", str(port), "--workers", str(workers), "--loop", loop_kind],
                            env=env, stdout=subprocess.DEVNULL, preexec_fn=_pin_relay)
    wait_http(port)
    if workers > 1:
        wait_workers_listening(proc.pid, workers, port)
    return proc, port


def wait_workers_listening(pid: int, workers: int, port: int, timeout: float = 20.0) -> None:
    """Until every worker has bound the shared port: a client that connects earlier can only reach
    the workers already listening (SO_REUSEPORT spreads over the bound sockets), which would skew
    the spread measured. Needs psutil; without it, a fixed grace period."""
    try:
        import psutil
    except ImportError:
        time.sleep(3.0)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listening = 0
        for child in children(pid):
            try:
                conns = psutil.Process(child).net_connections(kind="tcp")
            except psutil.Error:
                continue
            listening += any(c.status == "LISTEN" and c.laddr.port == port for c in conns)
        if listening >= workers:
            return
        time.sleep(0.1)
    raise RuntimeError(f"only {listening} of {workers} workers listen on port {port}")


NGINX_CONF = """
worker_processes 1;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
  uwsgi_temp_path {dir}; scgi_temp_path {dir};
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host $host;
      proxy_buffering off;
      proxy_read_timeout 300s;
    }}
  }}
}}
"""


def ensure_nginx() -> str:
    path = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(path).exists():
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "nginx-light"], check=False,
                       stdout=subprocess.DEVNULL, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if not Path(path).exists():
            subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
            subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "nginx-light"], check=True,
                           stdout=subprocess.DEVNULL, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return path


def uvrelay_main(upstream_port: int, port_file: str) -> None:
    import uvloop

    from loadgen import serve_uvloop_relay

    async def main():
        port = await serve_uvloop_relay(upstream_port)
        Path(port_file).write_text(str(port))
        await asyncio.Event().wait()

    uvloop.run(main())


def start_uvrelay(sim_port: int, tmp: str) -> tuple[subprocess.Popen, int]:
    """The raw uvloop TCP relay (loadgen.serve_uvloop_relay) in a process of its own."""
    port_file = Path(tmp) / "uvrelay.port"
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import load; load.uvrelay_main({sim_port}, {str(port_file)!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], preexec_fn=_pin_relay)
    deadline = time.monotonic() + 15
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline:
            raise RuntimeError("the uvloop relay did not start")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


def start_nginx(sim_port: int, tmp: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = Path(tmp) / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=tmp, port=port, upstream=sim_port))
    proc = subprocess.Popen([ensure_nginx(), "-c", str(conf), "-g", "daemon off;"], preexec_fn=_pin_relay)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, port


# -- one measurement -------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def run_once(mode: str, profile: str, n: int, seconds: float, clients: int, loop_kind: str,
             workers: int = 1, relay_kind: str | None = None) -> dict:
    """mode: 'router' or 'direct' (straight to the simulator, or through ``relay_kind``: 'nginx', or
    'uvloop' for a raw byte relay on the router's own event loop, the floor of its stack)."""
    p = PROFILES[profile]
    provider = p["provider"] if mode == "router" else "deepgram"  # direct: the Deepgram-protocol sink
    tmp = tempfile.mkdtemp(prefix="ra-load-")
    ctx = mp.get_context("spawn")
    port_file, stats_file = f"{tmp}/sim.url", f"{tmp}/sim.json"
    sim = ctx.Process(target=sim_main, args=(provider, port_file, stats_file, seconds), daemon=True)
    sim.start()
    _pin_harness(sim.pid)
    deadline = time.monotonic() + 20
    while not Path(port_file).exists():
        if time.monotonic() > deadline:
            raise RuntimeError("simulator did not start")
        time.sleep(0.05)
    sim_url = Path(port_file).read_text()
    relay = None
    cpu_pids: list[int] = []
    if mode == "router":
        relay, port = start_router(sim_url, provider, workers, loop_kind, tmp)
        target = f"ws://127.0.0.1:{port}/v1/listen"
        cpu_pids = [relay.pid] + children(relay.pid)
    elif relay_kind:
        sim_port = int(sim_url.rsplit(":", 1)[1].split("/")[0])
        relay, port = (start_nginx if relay_kind == "nginx" else start_uvrelay)(sim_port, tmp)
        target = sim_url.replace(f":{sim_port}", f":{port}")
        time.sleep(0.3)
        cpu_pids = [relay.pid] + children(relay.pid)
    else:
        target = sim_url
    rss_before = proc_rss(cpu_pids)
    keys = [f"bench{profile}{i:05d}" for i in range(n)]
    if mode == "router":
        keys = [k.replace("bench", "benchkey") for k in keys]  # BYOK: any non-router_ key goes upstream
    # all clients connect first, then start streaming together
    ramp = max(2.0, n / 400)
    start_at = time.monotonic() + ramp + 1.0
    per = math.ceil(n / clients)
    procs = []
    for c in range(clients):
        share = keys[c * per:(c + 1) * per]
        if share:
            pr = ctx.Process(target=client_main, args=(mode, target, profile, share, seconds, start_at,
                                                       f"{tmp}/client{c}.json", loop_kind), daemon=True)
            pr.start()
            _pin_harness(pr.pid)
            procs.append(pr)
    time.sleep(max(0.0, start_at - time.monotonic()) - 0.2)
    rss_idle = proc_rss(cpu_pids)
    cpu0 = proc_cpu_split(cpu_pids)
    harness_pids = [sim.pid] + [pr.pid for pr in procs]
    harness0 = proc_cpu(harness_pids)
    t0 = time.monotonic()
    time.sleep(seconds / 2)
    rss_active = proc_rss(cpu_pids)
    spread = worker_sessions(children(relay.pid)) if (relay is not None and mode == "router" and workers > 1) else []
    time.sleep(max(0.0, t0 + seconds * 0.9 - time.monotonic()))
    harness_cpu = (proc_cpu(harness_pids) - harness0) / (time.monotonic() - t0)
    for pr in procs:
        pr.join(timeout=seconds + 60)
        if pr.is_alive():
            pr.kill()
    cpu1 = proc_cpu_split(cpu_pids)
    worker_cpu = {pid: proc_cpu([pid]) for pid in children(relay.pid)} if relay and workers > 1 else {}
    if relay is not None:
        relay.send_signal(signal.SIGTERM)
        try:
            relay.wait(30)
        except subprocess.TimeoutExpired:
            relay.kill()
    os.kill(sim.pid, signal.SIGTERM)
    sim.join(30)
    sim_stats = json.loads(Path(stats_file).read_text()) if Path(stats_file).exists() else {}
    results = []
    for c in range(len(procs)):
        f = Path(f"{tmp}/client{c}.json")
        if f.exists():
            results += json.loads(f.read_text())
    shutil.rmtree(tmp, ignore_errors=True)
    out = analyse(mode, profile, n, seconds, results, sim_stats, sum(cpu1) - sum(cpu0), rss_before, rss_idle,
                  rss_active, worker_cpu)
    out["cpu_user_s"], out["cpu_system_s"] = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    out["harness_cores"] = harness_cpu  # load generators + sink, in cores, while streaming
    out["sessions_per_worker"] = spread
    return out


def analyse(mode, profile, n, seconds, results, sim_stats, cpu, rss_before, rss_idle, rss_active,
            worker_cpu) -> dict:
    p = PROFILES[profile]
    fwd, ret = [], []
    lost_audio = lost_finals = errors = 0
    converted = p["converted"] and mode == "router"
    for r in results:
        if "error" in r:
            errors += 1
            continue
        conns = sim_stats.get(r["key"], [])
        if not conns:
            errors += 1
            continue
        s = conns[-1]
        rx = s["rx"]
        if converted:
            bps = s["sample_rate"] * 2  # converted audio goes up as s16le at the rate the sink was told
            expected = r["seconds_sent"] * bps
            if s["bytes"] < expected - bps * 0.01:  # within a resampler block / Opus pre-skip
                lost_audio += 1
            targets = [(t, sec * bps - bps * 0.01) for t, _b, sec in r["tx"]]
        else:
            if s["bytes"] != r["bytes_sent"]:
                lost_audio += 1
            targets = [(t, b) for t, b, _sec in r["tx"]]
        j = 0
        for t_send, need in targets:
            while j < len(rx) and rx[j][1] < need:
                j += 1
            if j < len(rx):
                fwd.append((rx[j][0] - t_send) * 1000)
        tx = s["finals_tx"]
        rxf = r["finals_rx"]
        if len(rxf) < len(tx):
            lost_finals += len(tx) - len(rxf)
        ret += [(b - a) * 1000 for a, b in zip(tx, rxf)]
        if r["close"] != 1000 and mode == "router":
            errors += 1
    audio_s = n * seconds
    return {
        "mode": mode, "profile": profile, "streams": n, "seconds": seconds,
        "forward_ms": {"p50": pct(fwd, 50), "p99": pct(fwd, 99), "max": max(fwd) if fwd else None,
                       "samples": len(fwd)},
        "return_ms": {"p50": pct(ret, 50), "p99": pct(ret, 99), "max": max(ret) if ret else None,
                      "samples": len(ret)},
        "cpu_s": cpu, "cpu_ms_per_audio_s": 1000 * cpu / audio_s if audio_s else None,
        "rss_idle_per_conn_kib": (rss_idle - rss_before) / n / 1024 if n else None,
        "rss_active_per_conn_kib": (rss_active - rss_before) / n / 1024 if n else None,
        "lost_audio_streams": lost_audio, "lost_finals": lost_finals, "errors": errors,
        "worker_cpu_s": list(worker_cpu.values()),
    }


# -- report ----------------------------------------------------------------------------------------
def sub(a, b):
    return None if a is None or b is None else a - b


def fmt(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


def report(rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"load-{stamp}.json").write_text(json.dumps(rows, indent=1))
    lines = ["| profile | loop | N | fwd added p50/p99/max ms | ret added p50/p99 ms | router CPU ms/audio-s |"
             " router user/system s | harness cores | CPU ratio vs nginx / uvloop relay | RSS idle/active KiB/conn |"
             " lost audio/finals | errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['profile']} | {r['loop']} | {r['streams']} | {fmt(r['fwd_added']['p50'])}/"
            f"{fmt(r['fwd_added']['p99'])}/{fmt(r['fwd_added']['max'])} | {fmt(r['ret_added']['p50'])}/"
            f"{fmt(r['ret_added']['p99'])} | {fmt(r['router']['cpu_ms_per_audio_s'], 3)} | "
            f"{fmt(r['router'].get('cpu_user_s'))}/{fmt(r['router'].get('cpu_system_s'))} | "
            f"{fmt(r['router'].get('harness_cores'))} | "
            f"{fmt(r.get('cpu_ratio_vs_nginx'))} / {fmt(r.get('cpu_ratio_vs_uvrelay'))} | "
            f"{fmt(r['router']['rss_idle_per_conn_kib'], 1)}/"
            f"{fmt(r['router']['rss_active_per_conn_kib'], 1)} | {r['router']['lost_audio_streams']}/"
            f"{r['router']['lost_finals']} | {r['router']['errors']} |")
    md = "\n".join(lines) + "\n"
    (out / f"load-{stamp}.md").write_text(md)
    print(md)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        for (prof, loop) in sorted({(r["profile"], r["loop"]) for r in rows}):
            sel = sorted((r for r in rows if r["profile"] == prof and r["loop"] == loop), key=lambda r: r["streams"])
            ns = [r["streams"] for r in sel]
            a1.plot(ns, [r["fwd_added"]["p99"] or 0 for r in sel], marker="o", label=f"{prof} {loop}")
            a2.plot(ns, [r["router"]["cpu_ms_per_audio_s"] or 0 for r in sel], marker="o", label=f"{prof} {loop}")
        a1.set(xlabel="concurrent streams", ylabel="p99 added forward latency (ms)")
        a2.set(xlabel="concurrent streams", ylabel="router CPU (ms per audio second)")
        a1.axhline(10, color="grey", linestyle=":")
        a1.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / f"load-{stamp}.png", dpi=90)
    except ImportError:
        print("(matplotlib not installed: no plot)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", default="telephony")
    ap.add_argument("--streams", default="50,100")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--loops", default="uvloop")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--nginx", action="store_true")
    ap.add_argument("--uvrelay", action="store_true",
                    help="also relay the direct streams through a raw uvloop byte relay (the stack's floor)")
    ap.add_argument("--pin", action="store_true",
                    help="router/nginx on the last CPU, load generators and sink on the others")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    if args.pin:
        global PIN
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            ap.error("--pin needs at least 2 CPUs")
        PIN = ({cpus[-1]}, set(cpus[:-1]))
    rows = []
    for profile in args.profiles.split(","):
        for loop_kind in args.loops.split(","):
            for n in [int(x) for x in args.streams.split(",")]:
                print(f"-- {profile} {loop_kind} N={n}", flush=True)
                base = run_once("direct", profile, n, args.seconds, args.clients, loop_kind)
                routed = run_once("router", profile, n, args.seconds, args.clients, loop_kind, args.workers)
                row = {"profile": profile, "loop": loop_kind, "streams": n, "workers": args.workers, "pinned": args.pin,
                       "direct": base, "router": routed,
                       "fwd_added": {k: sub(routed["forward_ms"][k], base["forward_ms"][k]) for k in ("p50", "p99", "max")},
                       "ret_added": {k: sub(routed["return_ms"][k], base["return_ms"][k]) for k in ("p50", "p99", "max")}}
                if args.nginx and not PROFILES[profile]["converted"]:
                    ng = run_once("direct", profile, n, args.seconds, args.clients, loop_kind, relay_kind="nginx")
                    row["nginx"] = ng
                    row["cpu_ratio_vs_nginx"] = (routed["cpu_s"] / ng["cpu_s"]) if ng["cpu_s"] else None
                if args.uvrelay and not PROFILES[profile]["converted"]:
                    uv = run_once("direct", profile, n, args.seconds, args.clients, loop_kind, relay_kind="uvloop")
                    row["uvrelay"] = uv
                    row["cpu_ratio_vs_uvrelay"] = (routed["cpu_s"] / uv["cpu_s"]) if uv["cpu_s"] else None
                ok = (row["fwd_added"]["p99"] is not None and row["fwd_added"]["p99"] <= 10
                      and routed["lost_audio_streams"] == 0 and routed["lost_finals"] == 0 and routed["errors"] == 0)
                row["within_target"] = ok
                if args.workers > 1:
                    row["worker_cpu_s"] = routed["worker_cpu_s"]
                    row["sessions_per_worker"] = routed["sessions_per_worker"]
                    print("per worker: cpu s", [round(c, 2) for c in routed["worker_cpu_s"]],
                          "sessions", routed["sessions_per_worker"], flush=True)
                print(json.dumps({k: row[k] for k in ("fwd_added", "ret_added", "within_target")}),
                      f"router cpu {fmt(routed['cpu_ms_per_audio_s'], 3)} ms/s", flush=True)
                rows.append(row)
    report(rows, Path(args.out))
    for profile in args.profiles.split(","):
        for loop_kind in args.loops.split(","):
            good = [r["streams"] for r in rows if r["profile"] == profile and r["loop"] == loop_kind and r["within_target"]]
            print(f"largest N within target ({profile}, {loop_kind}): {max(good) if good else 'none'}")
    return 0


if __name__ == "__main__":
    try:
        import routeraudio  # noqa: F401  - the installed package
    except ImportError:  # a source tree built in place
        sys.path.insert(0, str(HERE.parent / "src"))
    raise SystemExit(main())
