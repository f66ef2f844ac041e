"""The audio fast path's framing agrees with websockets' and steps aside for everything else."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from routeraudio.server.wsio import (binary_frame, masked_binary_frame, redact, relay_binary_frames,
                                    split_binary_frames, split_data_frames, text_frame)


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


def _payloads_of(wire: bytes) -> list[bytes]:
    server = ServerProtocol(state=State.OPEN, max_size=None)
    server.receive_data(wire)
    return [e.data for e in server.events_received()]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=6), st.binary(max_size=20))
def test_relayed_frames_carry_the_same_payloads_under_new_keys(payloads, tail):
    wire_in = b"".join(masked_binary_frame(p) for p in payloads)
    other = Frame(Opcode.TEXT, b'{"type":"finalize"}').serialize(mask=True, extensions=[])
    out, frames, nbytes, used = relay_binary_frames(wire_in + other + tail, 1 << 20, 1 << 40)
    assert (frames, nbytes, used) == (len(payloads), sum(map(len, payloads)), len(wire_in))
    assert len(out) == used
    assert _payloads_of(out) == payloads
    # every frame was re-masked with a key of its own (the client's key is not reused)
    pos = 0
    for p in payloads:
        hdr = 2 if len(p) < 126 else 4
        assert out[pos:pos + hdr] == wire_in[pos:pos + hdr]
        assert out[pos + hdr:pos + hdr + 4] != wire_in[pos + hdr:pos + hdr + 4]
        pos += hdr + 4 + len(p)


def test_relay_stops_at_the_budget_and_at_an_empty_frame():
    a, b, c = (masked_binary_frame(bytes([i]) * 100) for i in (1, 2, 3))
    out, frames, nbytes, used = relay_binary_frames(a + b + c, 1 << 20, 150)
    assert (frames, nbytes, used) == (2, 200, len(a + b))  # the frame that reaches the budget goes too
    assert _payloads_of(out) == [b"\x01" * 100, b"\x02" * 100]
    empty = masked_binary_frame(b"")  # end of audio: the session's per-frame path handles it
    assert relay_binary_frames(a + empty + b, 1 << 20, 1 << 40)[1:] == (1, 100, len(a))
    assert split_binary_frames(a + empty + b, 1 << 20) == ([b"\x01" * 100, b"", b"\x02" * 100], len(a + empty + b))
    assert relay_binary_frames(a, 99, 1 << 40) == (b"", 0, 0, 0)  # over the size limit: websockets says 1009


def test_masked_frames_use_fresh_keys_and_accept_any_bytes_like():
    frames = [masked_binary_frame(memoryview(b"abc")), masked_binary_frame(bytearray(b"abc")),
              masked_binary_frame(b"abc")]
    assert all(_payloads_of(f) == [b"abc"] for f in frames)
    assert len({f[2:6] for f in frames}) == 3


def _client_reads(wire: bytes) -> list[str | bytes]:
    from websockets.client import ClientProtocol
    from websockets.uri import parse_uri

    client = ClientProtocol(parse_uri("ws://x/"), state=State.OPEN, max_size=None)
    client.receive_data(wire)
    events = client.events_received()
    assert client.parser_exc is None
    return [e.data.decode() if e.opcode is Opcode.TEXT else e.data for e in events]


_messages = st.lists(st.one_of(st.text(max_size=300), st.binary(max_size=300),
                               st.binary(min_size=65536, max_size=70000)), min_size=1, max_size=5)


@settings(max_examples=150, deadline=None)
@given(_messages)
def test_server_frames_roundtrip_through_websockets(messages):
    wire = b"".join(text_frame(m, False) if isinstance(m, str) else binary_frame(m, False) for m in messages)
    assert _client_reads(wire) == messages  # websockets, as the provider's peer, reads what we sent
    assert split_data_frames(wire, 1 << 20) == (messages, len(wire))
    masked = b"".join(text_frame(m, True) if isinstance(m, str) else binary_frame(m, True) for m in messages)
    assert [e if isinstance(e, bytes) else e.decode() for e in _payloads_of(masked)] == \
        [m.encode() if isinstance(m, str) else m for m in messages]


@pytest.mark.parametrize("other", [
    Frame(Opcode.PING, b"x").serialize(mask=False, extensions=[]),
    Frame(Opcode.CLOSE, b"\x03\xe8").serialize(mask=False, extensions=[]),
    Frame(Opcode.TEXT, b"ab", fin=False).serialize(mask=False, extensions=[]),  # a fragment
    Frame(Opcode.TEXT, b'{"a":1}').serialize(mask=True, extensions=[]),  # servers must not mask
    Frame(Opcode.TEXT, b"\xff\xfe").serialize(mask=False, extensions=[]),  # not UTF-8: websockets sends 1007
    Frame(Opcode.BINARY, b"x" * 2000).serialize(mask=False, extensions=[]),  # over the limit: 1009
    text_frame('{"partial":', False)[:-3],  # incomplete
])
def test_provider_frames_the_fast_path_leaves_to_websockets(other):
    first = text_frame('{"type":"Results"}', False)
    messages, used = split_data_frames(first + other + first, 1000)
    assert messages == ['{"type":"Results"}'] and used == len(first)


def test_redaction_patterns():
    text = ("GET /v1/listen?provider=x&api_key=router_ab12cd34_s3cr3t&jwt_token=eyJa.eyJb.sig "
            "Authorization: Token dg-key x-api-key: sk-live")
    out = redact(text)
    for secret in ("router_ab12cd34_s3cr3t", "eyJa.eyJb.sig", "dg-key", "sk-live", "s3cr3t"):
        assert secret not in out
