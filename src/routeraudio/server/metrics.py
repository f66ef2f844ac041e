"""Counters and gauges in Prometheus text exposition format (``GET /metrics``)."""

from __future__ import annotations

from collections import defaultdict


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"


class Metrics:
    """A handful of labelled series; cheap enough to update per session, never per audio frame."""

    HELP = {
        "routeraudio_sessions_total": ("counter", "Listen sessions started, per provider."),
        "routeraudio_sessions_active": ("gauge", "Listen sessions open now, per provider."),
        "routeraudio_audio_seconds_total": ("counter", "Seconds of client audio consumed, per provider."),
        "routeraudio_upstream_connect_seconds_sum": ("counter", "Total time to open upstream sessions."),
        "routeraudio_upstream_connect_seconds_count": ("counter", "Upstream sessions opened."),
        "routeraudio_closes_total": ("counter", "Client sessions closed, per provider and close code."),
        "routeraudio_errors_total": ("counter", "Client sessions ended by an error, per provider and close code."),
        "routeraudio_tokens_minted_total": ("counter", "JWTs minted by POST /v1/token."),
    }

    def __init__(self) -> None:
        self._values: dict[str, dict[tuple, float]] = defaultdict(lambda: defaultdict(float))

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        self._values[name][tuple(sorted(labels.items()))] += value

    def set(self, name: str, value: float, **labels: str) -> None:
        self._values[name][tuple(sorted(labels.items()))] = value

    def get(self, name: str, **labels: str) -> float:
        return self._values.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        for name, (kind, text) in self.HELP.items():
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in sorted(self._values.get(name, {}).items()):
                lines.append(f"{name}{_labels(labels)} {value:g}")
        return "\n".join(lines) + "\n"
