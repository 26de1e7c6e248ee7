"""The fast read path's request bytes: token and namespace headers, no injection."""

from __future__ import annotations

import pytest

from dr.errors import UsageError
from dr.vault.endpoint import Endpoint
from dr.vault.pipelined import ReadPool, Target


def pool(namespace: str | None = None) -> ReadPool:
    target = Target.of(Endpoint(addr="http://127.0.0.1:8200"), None)
    return ReadPool(target, "s.tok", 1, 1, 5, namespace=namespace)


def test_namespace_header_per_request_or_from_the_pool() -> None:
    root = pool().request("GET", "app/data/a b")
    assert root.startswith(b"GET /v1/app/data/a%20b HTTP/1.1\r\n")
    assert b"X-Vault-Token: s.tok\r\n" in root and b"X-Vault-Namespace" not in root
    nested = pool().request("GET", "app/data/x", "team-a/sub/")
    assert b"X-Vault-Namespace: team-a/sub\r\n" in nested and nested.endswith(b"\r\n\r\n")
    default = pool("team-a").request("LIST", "sys/namespaces")
    assert b"X-Vault-Namespace: team-a\r\n" in default
    assert b"X-Vault-Namespace" not in pool("team-a").request("GET", "sys/mounts", "")
    unicode = pool().request("GET", "x", "équipe/")
    assert "X-Vault-Namespace: équipe\r\n".encode() in unicode


def test_line_breaks_cannot_inject_headers() -> None:
    with pytest.raises(UsageError):
        pool().request("GET", "x", "a\r\nX-Evil: 1")
    with pytest.raises(UsageError):
        ReadPool(Target.of(Endpoint(addr="http://h:1"), None), "t\r\nX: y", 1, 1, 5)
