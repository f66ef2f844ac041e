"""The command line as users run it: keys management and refusing to start with a weak secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _cli(*args, env_extra=None, timeout=30):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "routeraudio", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_keys_create_list_revoke(tmp_path):
    env = {"ROUTERAUDIO_DATA_DIR": str(tmp_path)}
    created = _cli("keys", "create", "--name", "team-a", "--max-sessions", "5", "--json", env_extra=env)
    assert created.returncode == 0, created.stderr
    info = json.loads(created.stdout)
    assert info["key"].startswith("router_" + info["id"] + "_")
    listed = _cli("keys", "list", env_extra=env)
    assert f"{info['id']}\tactive\tteam-a\tmax_sessions=5" in listed.stdout
    assert info["key"] not in listed.stdout  # the full key is shown once, at creation
    assert _cli("keys", "revoke", info["id"], env_extra=env).returncode == 0
    assert f"{info['id']}\trevoked" in _cli("keys", "list", env_extra=env).stdout
    assert _cli("keys", "revoke", info["id"], env_extra=env).returncode == 1
    raw = (tmp_path / "routeraudio.db").read_bytes()
    assert info["key"].encode() not in raw


def test_serve_refuses_short_secret(tmp_path):
    out = _cli("serve", "--port", "0", env_extra={"ROUTERAUDIO_DATA_DIR": str(tmp_path),
                                                  "ROUTERAUDIO_JWT_SECRET": "too-short-secret"})
    assert out.returncode == 2
    assert "at least 32 bytes" in out.stderr


def test_serve_refuses_bad_config(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("idle_timeout = 'soon'\n")
    out = _cli("serve", "--config", str(cfg), env_extra={"ROUTERAUDIO_DATA_DIR": str(tmp_path)})
    assert out.returncode == 2 and "idle_timeout" in out.stderr
