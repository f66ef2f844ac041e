"""``routeraudio serve --workers N``: N processes on one port, a dead worker replaced, a crash loop
stopped, and a clean drain on SIGTERM. Also the key database opened by many workers at once."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from routeraudio.auth import KeyStore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listeners(port: int) -> int:
    """Sockets listening on 127.0.0.1:port (SO_REUSEPORT: one per worker), from /proc/net/tcp."""
    want = f"0100007F:{port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for ln in lines if ln.split()[1] == want and ln.split()[3] == "0A")


def _workers(pid: int) -> set[int]:
    try:
        return {int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def _until(cond, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _serve(tmp_path, port: int, workers: int) -> subprocess.Popen:
    env = dict(os.environ, ROUTERAUDIO_DATA_DIR=str(tmp_path))
    return subprocess.Popen([sys.executable, "-m", "routeraudio", "--log-level", "info", "serve", "--port",
                             str(port), "--workers", str(workers)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc")
def test_dead_worker_is_replaced_and_sigterm_drains_cleanly(tmp_path):
    port = _free_port()
    proc = _serve(tmp_path, port, 2)
    try:
        assert _until(lambda: _listeners(port) == 2), "two workers should listen on the shared port"
        first = _workers(proc.pid)
        assert len(first) == 2
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        assert _until(lambda: _listeners(port) == 2 and victim not in _workers(proc.pid)
                      and len(_workers(proc.pid)) == 2), "the supervisor should start a new worker"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b" 200 " in s.recv(200)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err  # a drained shutdown is a success, whatever the replacements
    assert f"worker {victim} exited with status -9; starting a new one" in err


def test_workers_that_cannot_start_stop_the_supervisor(tmp_path):
    port = _free_port()
    with socket.socket() as taken:  # a listener without SO_REUSEPORT: every worker's bind fails
        taken.bind(("127.0.0.1", port))
        taken.listen()
        proc = _serve(tmp_path, port, 2)
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 1
    assert "worker" in err and "failed" in err  # each worker says why it died
    assert "stopping" in err  # the crash loop ends instead of restarting forever


def _open_store(path: str, barrier) -> None:
    barrier.wait()
    KeyStore(path).close()


def test_many_processes_open_a_new_key_database_at_once(tmp_path):
    ctx = mp.get_context("fork")
    for attempt in range(15):  # the race (without the retry) hit about one round in three here
        path = str(tmp_path / f"keys{attempt}.db")
        barrier = ctx.Barrier(8)
        procs = [ctx.Process(target=_open_store, args=(path, barrier)) for _ in range(8)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        assert [p.exitcode for p in procs] == [0] * 8  # none died of "database is locked"
        store = KeyStore(path)
        _, full = store.create("after")
        assert store.verify(full) is not None
        store.close()
