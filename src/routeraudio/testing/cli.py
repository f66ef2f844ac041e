"""``routeraudio simulate <provider> --port N [--key K]``: run one provider simulator until interrupted.

``main(argv)`` takes the arguments after ``simulate`` (a leading ``simulate`` is tolerated) and returns
the exit status; the package CLI calls it, and so does ``python -m routeraudio.testing``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from . import SIMULATORS, simulator_class
from .base import DEFAULT_SCRIPT_TEXT, Faults, Script


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="routeraudio simulate",
                                description="Run a provider simulator on loopback (no internet needed).")
    p.add_argument("provider", choices=sorted(SIMULATORS))
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: any free port, printed)")
    p.add_argument("--key", default=None,
                   help="the only API key accepted (default: $<PROVIDER>_API_KEY if set, else any key)")
    p.add_argument("--text", default=DEFAULT_SCRIPT_TEXT,
                   help="what the simulated speaker says, looped for as long as audio arrives")
    p.add_argument("--speakers", type=int, default=2, help="speakers taking turns by sentence")
    p.add_argument("--idle-timeout", type=float, default=10.0,
                   help="seconds without audio or keep-alive before the provider's inactivity close")
    p.add_argument("--reject-auth", action="store_true", help="refuse every key")
    p.add_argument("--fail-after-finals", type=int, default=None, metavar="K",
                   help="close with 1011 after K final transcripts")
    return p


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["simulate"]:
        args_list = args_list[1:]
    args = build_parser().parse_args(args_list)
    cls = simulator_class(args.provider)
    key = args.key if args.key is not None else os.environ.get(f"{args.provider.upper()}_API_KEY")
    faults = Faults(reject_auth=args.reject_auth, fail_after_finals=args.fail_after_finals)
    script = Script.from_text(args.text, speakers=max(1, args.speakers), repeat=True)
    kwargs: dict = {"host": args.host, "port": args.port, "script": script, "faults": faults, "api_key": key}
    if args.provider == "deepgram":
        kwargs["net_timeout"] = args.idle_timeout
    sim = cls(**kwargs)
    try:
        asyncio.run(_serve(sim))
    except KeyboardInterrupt:
        pass
    return 0


async def _serve(sim) -> None:
    async with sim:
        url = getattr(sim, "listen_url", sim.url)
        keys = "the configured key only" if getattr(sim, "api_key", None) else "any key"
        print(f"{sim.provider} simulator listening on {url} ({keys}); Ctrl-C to stop", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    raise SystemExit(main())
