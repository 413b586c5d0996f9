"""Shared test configuration: a guard that fails any test reaching beyond 127.0.0.1."""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("no_proxy", "127.0.0.1,localhost")
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_var, None)


class ExternalNetworkBlocked(RuntimeError):
    """A test tried to reach a host other than this machine."""


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address):
        raise ExternalNetworkBlocked(f"test tried to connect to {address!r}; tests may only reach 127.0.0.1")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address):
        raise ExternalNetworkBlocked(f"test tried to connect to {address!r}; tests may only reach 127.0.0.1")
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    h = host.decode() if isinstance(host, bytes) else host
    if h not in (None, "localhost") and not _is_local((h, 0)):
        raise ExternalNetworkBlocked(f"test tried to resolve {h!r}; tests may only reach 127.0.0.1")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.getaddrinfo = _guarded_getaddrinfo


@pytest.fixture(scope="session")
def project_root():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shared_data(project_root):
    """``../shared/data`` beside the checkout; tests that need it skip, saying so, when absent."""
    p = project_root.parent / "shared" / "data"
    if not p.is_dir():
        pytest.skip(f"real development data not found at {p} (see shared/data/README.md)")
    return p
