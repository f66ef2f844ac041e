"""Command line: ``routeraudio serve | keys | stream | simulate | demo``. Parses and calls, nothing more."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time

from .config import PROVIDERS, ServerConfig
from .errors import ParameterError


def _loop_policy(name: str) -> None:
    if name == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _run(coro, loop: str = "uvloop"):
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


# -- serve ------------------------------------------------------------------------------------------
async def _serve(cfg: ServerConfig, sock=None, reuse_port: bool = False, ready_fd: int | None = None) -> int:
    from .server.app import Router

    router = Router(cfg)
    await router.start(sock=sock, reuse_port=reuse_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger("routeraudio.server").info(
        "routeraudio listening on %s:%d (pid %d)", cfg.host, router.port, os.getpid())
    print(f"routeraudio listening on ws://{cfg.host}:{router.port}/v1/listen", flush=True)
    await stop.wait()
    router.ready = False
    await router.shutdown()
    return 0


def cmd_serve(args) -> int:
    cfg = ServerConfig.load(args.config)
    if args.host:
        cfg.host = args.host
    if args.port is not None:
        cfg.port = args.port
    cfg.secret_bytes()  # refuse a bad secret before forking or listening
    if args.workers <= 1:
        return _run(_serve(cfg), args.loop)
    from .auth import KeyStore

    KeyStore(cfg.database).close()  # create the database once, before the workers open it together
    return _supervise(cfg, args.workers, args.loop)


#: a worker that dies this soon after it started counts towards a crash loop
WORKER_MIN_UPTIME = 5.0
#: this many such deaths in a row stop the supervisor (exit status 1) instead of restarting forever
WORKER_CRASH_LOOP = 5


def _worker(cfg: ServerConfig, loop: str) -> None:
    """The body of a forked worker process; never returns."""
    code = 1
    try:
        code = _run(_serve(cfg, reuse_port=True), loop)
    except BaseException:  # a worker must say why it died before it goes
        logging.getLogger("routeraudio.server").exception("worker %d failed", os.getpid())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _supervise(cfg: ServerConfig, n: int, loop: str) -> int:
    """N worker processes share the port through SO_REUSEPORT; the kernel spreads connections. A
    worker that dies is logged and replaced (a crash loop stops everything); SIGTERM/SIGINT are
    passed on, each worker drains, and the exit status is 1 if any of them failed."""
    log = logging.getLogger("routeraudio.server")
    workers: dict[int, float] = {}  # pid -> start time
    stopping = False

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _worker(cfg, loop)
        workers[pid] = time.monotonic()

    def forward(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(workers):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    for _ in range(n):
        spawn()
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    rapid = 0
    while workers:
        try:
            pid, st = os.wait()
        except ChildProcessError:
            break
        started = workers.pop(pid, None)
        if started is None:
            continue
        code = os.waitstatus_to_exitcode(st)
        if stopping:
            status |= code != 0
            continue
        rapid = rapid + 1 if time.monotonic() - started < WORKER_MIN_UPTIME else 0
        if rapid >= WORKER_CRASH_LOOP:
            log.error("worker %d exited with status %d; %d workers died within %.0f s of starting: "
                      "stopping", pid, code, rapid, WORKER_MIN_UPTIME)
            status = 1
            forward(signal.SIGTERM, None)
            continue
        log.error("worker %d exited with status %d; starting a new one", pid, code)
        time.sleep(min(0.5 * rapid, 2.0))  # no tight loop when workers die at once
        if not stopping:
            spawn()
    return status


# -- keys -------------------------------------------------------------------------------------------
def cmd_keys(args) -> int:
    from .auth import KeyStore

    cfg = ServerConfig.load(args.config)
    store = KeyStore(cfg.database)
    try:
        if args.keys_cmd == "create":
            record, full = store.create(args.name or "", args.max_sessions)
            if args.json:
                print(json.dumps({"id": record.id, "key": full, "name": record.name}))
            else:
                print(full)
                print(f"id {record.id}: store this key now, it is not shown again", file=sys.stderr)
        elif args.keys_cmd == "list":
            for k in store.list():
                state = "revoked" if k.revoked else "active"
                print(f"{k.id}\t{state}\t{k.name}\tmax_sessions={k.max_sessions or '-'}")
        elif args.keys_cmd == "revoke":
            if not store.revoke(args.id):
                print(f"no active key with id {args.id}", file=sys.stderr)
                return 1
            print(f"revoked {args.id}")
    finally:
        store.close()
    return 0


# -- stream -----------------------------------------------------------------------------------------
def _print_message(msg: dict) -> None:
    kind = msg.get("type")
    if kind == "transcript":
        tag = "~" if msg.get("is_partial") else "="
        print(f"[{msg['start_time']:7.2f}-{msg['end_time']:7.2f}] {tag} {msg['transcript']}", flush=True)
    elif kind == "turn_end":
        print("            -- turn end --", flush=True)
    else:
        print(json.dumps(msg), flush=True)


def cmd_stream(args) -> int:
    from .client import read_audio_file, stream_file

    source = read_audio_file(args.file, args.encoding, args.sample_rate, args.channels)
    params = {k: getattr(args, k) for k in ("model", "language", "diarize", "partial_results", "endpointing",
                                            "punctuate") if getattr(args, k) is not None}
    key = args.key or os.environ.get("ROUTERAUDIO_API_KEY")
    closed = _run(stream_file(args.url, source, provider=args.provider, key=key, speed=args.speed,
                              on_message=_print_message, **params), "uvloop")
    if closed.code != 1000:
        print(f"closed with {closed.code}: {closed.reason}", file=sys.stderr)
        return 1
    return 0


# -- simulate / demo --------------------------------------------------------------------------------
def cmd_simulate(args) -> int:
    from .testing.cli import main as simulator_main

    return simulator_main(args.sim_args)


def cmd_demo(args) -> int:
    from .demo import run_demo

    return _run(run_demo(args.provider), "uvloop")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="routeraudio", description="Streaming speech-to-text router.")
    p.add_argument("--log-level", default=os.environ.get("ROUTERAUDIO_LOG_LEVEL", "INFO"))
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="run the router")
    s.add_argument("--config", help="TOML file (also ROUTERAUDIO_CONFIG)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    s.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    s.set_defaults(func=cmd_serve)

    k = sub.add_parser("keys", help="manage router API keys")
    k.add_argument("--config")
    ksub = k.add_subparsers(dest="keys_cmd", required=True)
    kc = ksub.add_parser("create")
    kc.add_argument("--name")
    kc.add_argument("--max-sessions", type=int)
    kc.add_argument("--json", action="store_true")
    ksub.add_parser("list")
    kr = ksub.add_parser("revoke")
    kr.add_argument("id")
    k.set_defaults(func=cmd_keys)

    st = sub.add_parser("stream", help="stream a file through a router and print transcripts")
    st.add_argument("file")
    st.add_argument("--provider", required=True, choices=PROVIDERS)
    st.add_argument("--url", default="ws://127.0.0.1:8080")
    st.add_argument("--key", help="router or provider key (default: $ROUTERAUDIO_API_KEY)")
    st.add_argument("--encoding")
    st.add_argument("--sample-rate", type=int)
    st.add_argument("--channels", type=int, default=1)
    st.add_argument("--speed", type=float, default=1.0)
    st.add_argument("--model")
    st.add_argument("--language")
    st.add_argument("--diarize", action="store_const", const=True)
    st.add_argument("--partial-results", dest="partial_results", action="store_const", const=True)
    st.add_argument("--punctuate", choices=("true", "false"))
    st.add_argument("--endpointing", type=int)
    st.set_defaults(func=cmd_stream)

    sim = sub.add_parser("simulate", help="run a provider simulator on loopback (routeraudio simulate PROVIDER -h)",
                         add_help=False)
    sim.add_argument("sim_args", nargs=argparse.REMAINDER)
    sim.set_defaults(func=cmd_simulate)

    d = sub.add_parser("demo", help="router + simulator + a bundled sample, all on loopback")
    d.add_argument("--provider", default="deepgram", choices=PROVIDERS)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    from .server.wsio import install_redaction

    if args.log_level.upper() != "DEBUG":  # connection open/close chatter is for debugging
        logging.getLogger("websockets").setLevel(logging.WARNING)
        logging.getLogger("routeraudio.server.ws").setLevel(logging.WARNING)

    install_redaction()
    try:
        return args.func(args)
    except ParameterError as exc:
        print(f"routeraudio: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
