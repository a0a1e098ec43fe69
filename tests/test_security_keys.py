"""API key store, authenticator and bind policy (no server needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inference_server.security.api_keys import ApiKeyStore, key_label, parse_keys
from inference_server.security.auth_interceptor import (
    CLUSTER_SECRET_HEADER,
    HOP_HEADER,
    Authenticator,
    Unauthenticated,
)
from inference_server.security.bind_policy import bind_refusal, is_loopback

ROOT = Path(__file__).resolve().parents[1]


def test_key_file_skips_comments_blank_lines_and_labels() -> None:
    text = "# agents\nalpha-key  prod agent\n\n  beta-key # staging\n#gamma\n"
    assert parse_keys(text) == {"alpha-key", "beta-key"}


def test_store_reloads_the_file_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("old-key\n")
    store = ApiKeyStore(path, poll_interval_s=0.0)
    assert store.accepts("old-key") and not store.accepts("new-key")
    path.write_text("new-key\n")
    os.utime(path, ns=(time.time_ns() + 10**9,) * 2)  # mtime granularity of some filesystems
    assert store.accepts("new-key") and not store.accepts("old-key")


def test_store_keeps_last_keys_when_the_file_vanishes(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("k1\n")
    store = ApiKeyStore(path, poll_interval_s=0.0)
    path.unlink()
    assert store.accepts("k1")


def test_env_keys_are_accepted_alongside_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("file-key\n")
    store = ApiKeyStore(path, " env-a, env-b ", poll_interval_s=0.0)
    assert all(store.accepts(k) for k in ("file-key", "env-a", "env-b"))
    assert not store.accepts("env-c") and len(store) == 3


def test_missing_key_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--api-keys-file"):
        ApiKeyStore(tmp_path / "nope")


def auth(keys: str = "good", secret: str = "s3cret") -> Authenticator:
    return Authenticator(ApiKeyStore(None, keys), secret)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ((), "missing API key"),
        ((("authorization", "Bearer bad"),), "invalid or revoked API key"),
        ((("authorization", "Basic good"),), "malformed authorization"),
        ((("authorization", "Bearer good"), (HOP_HEADER, "n1")), "cluster secret"),
        (((HOP_HEADER, "n1"), (CLUSTER_SECRET_HEADER, "guess")), "cluster secret"),
        (((CLUSTER_SECRET_HEADER, "guess"),), "cluster secret"),
    ],
)
def test_refusals_name_the_problem(metadata: tuple, message: str) -> None:
    with pytest.raises(Unauthenticated, match=message):
        auth().check(metadata)


def test_callers_are_labelled() -> None:
    assert auth().check((("authorization", "Bearer good"),)) == key_label("good")
    assert auth().check(((HOP_HEADER, "n1"), (CLUSTER_SECRET_HEADER, "s3cret"))) == "cluster"
    assert auth(keys="", secret="").check(()) == "anonymous"


def test_hops_need_the_secret_even_without_api_keys() -> None:
    with pytest.raises(Unauthenticated):
        auth(keys="").check(((HOP_HEADER, "n1"),))


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host) and bind_refusal(host, False, False) is None


def test_public_host_needs_keys_or_explicit_override() -> None:
    assert "--allow-unauthenticated" in bind_refusal("0.0.0.0", False, False)
    assert bind_refusal("0.0.0.0", True, False) is None
    assert bind_refusal("10.1.2.3", False, True) is None


def test_cli_refuses_a_public_host_without_keys() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ORPHEUS_ACCEPTED_API_KEYS"}
    proc = subprocess.run(
        [sys.executable, "-m", "inference_server", "--host", "0.0.0.0", "--port", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "no API keys are configured" in proc.stderr
