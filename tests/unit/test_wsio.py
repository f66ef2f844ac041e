"""The audio fast path's framing agrees with websockets' and steps aside for everything else."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from routeraudio.server.wsio import masked_binary_frame, redact, split_binary_frames


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=70000), min_size=1, max_size=4))
def test_frames_roundtrip_through_websockets(payloads):
    wire = b"".join(masked_binary_frame(p) for p in payloads)
    server = ServerProtocol(state=State.OPEN, max_size=None)
    server.receive_data(wire)
    got = [e.data for e in server.events_received()]
    assert got == payloads  # websockets reads our frames as the payloads we framed
    ours, used = split_binary_frames(wire, 1 << 20)
    assert used == len(wire) and ours == payloads


@pytest.mark.parametrize("frame", [
    Frame(Opcode.TEXT, b'{"type":"finalize"}'),
    Frame(Opcode.PING, b"x"),
    Frame(Opcode.CLOSE, b"\x03\xe8"),
    Frame(Opcode.BINARY, b"abc", fin=False),  # a fragment
    Frame(Opcode.CONT, b"abc"),
])
def test_anything_but_whole_binary_frames_is_left_to_websockets(frame):
    audio = masked_binary_frame(b"\x01" * 320)
    other = frame.serialize(mask=True, extensions=[])
    payloads, used = split_binary_frames(audio + other + audio, 1 << 20)
    assert payloads == [b"\x01" * 320] and used == len(audio)


def test_partial_unmasked_and_oversize_frames_stop_the_fast_path():
    audio = masked_binary_frame(os.urandom(1000))
    assert split_binary_frames(audio[:-1], 1 << 20) == ([], 0)
    unmasked = Frame(Opcode.BINARY, b"abc").serialize(mask=False, extensions=[])
    assert split_binary_frames(unmasked, 1 << 20) == ([], 0)
    assert split_binary_frames(audio, 999) == ([], 0)  # websockets then refuses it with 1009
    big = masked_binary_frame(b"\0" * 70000)  # 64-bit length: never an audio frame of ours
    assert split_binary_frames(big, 1 << 20) == ([], 0)


def test_redaction_patterns():
    text = ("GET /v1/listen?provider=x&api_key=router_ab12cd34_s3cr3t&jwt_token=eyJa.eyJb.sig "
            "Authorization: Token dg-key x-api-key: sk-live")
    out = redact(text)
    for secret in ("router_ab12cd34_s3cr3t", "eyJa.eyJb.sig", "dg-key", "sk-live", "s3cr3t"):
        assert secret not in out
