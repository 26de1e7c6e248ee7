"""A fake Kubernetes TokenReview API for OpenBao's kubernetes auth method.

OpenBao validates a service-account JWT at login by POSTing a TokenReview to
`kubernetes_host`/apis/authentication.k8s.io/v1/tokenreviews. No cluster runs in the
tests, so this loopback server answers that one call: authenticated for tokens it
issued (`issue()`), not authenticated otherwise. The tokens are real JWTs (ES256 with a
private key; OpenBao parses but does not verify the signature when no
pem_keys are configured and the TokenReview decides) with the legacy service-account
claims OpenBao reads the namespace and name from.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

TOKENREVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


@dataclass
class _Account:
    namespace: str
    name: str
    uid: str


@dataclass
class FakeK8sApi:
    issuer: str = "kubernetes/serviceaccount"
    _key: Any = field(default=None, repr=False)
    _issued: dict[str, _Account] = field(default_factory=dict, repr=False)
    reviews: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _server: http.server.ThreadingHTTPServer | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _signing_key(self) -> Any:
        if self._key is None:
            from cryptography.hazmat.primitives.asymmetric import ec

            self._key = ec.generate_private_key(ec.SECP256R1())
        return self._key

    @property
    def ca_pem(self) -> str:
        """A throwaway self-signed CA (OpenBao requires kubernetes_ca_cert when
        disable_local_ca_jwt is true, even for an http:// host that never uses it)."""
        from tests.stack.certs import self_signed

        return self_signed("fake-k8s-ca")[0].decode()

    def issue(self, namespace: str, name: str) -> str:
        """A service-account JWT this API will report as authenticated."""
        import jwt

        account = _Account(namespace, name, str(uuid.uuid4()))
        now = int(time.time())
        token = jwt.encode(
            {
                "iss": self.issuer,
                "sub": f"system:serviceaccount:{namespace}:{name}",
                "iat": now,
                "kubernetes.io/serviceaccount/namespace": namespace,
                "kubernetes.io/serviceaccount/service-account.name": name,
                "kubernetes.io/serviceaccount/service-account.uid": account.uid,
                "kubernetes.io/serviceaccount/secret.name": f"{name}-token",
            },
            self._signing_key(),
            algorithm="ES256",
        )
        self._issued[token] = account
        return token

    def review(self, body: dict[str, Any]) -> dict[str, Any]:
        token = (body.get("spec") or {}).get("token", "")
        self.reviews.append(body)
        account = self._issued.get(token)
        status: dict[str, Any] = {"authenticated": False}
        if account is not None:
            status = {
                "authenticated": True,
                "user": {
                    "username": f"system:serviceaccount:{account.namespace}:{account.name}",
                    "uid": account.uid,
                    "groups": [
                        "system:serviceaccounts",
                        f"system:serviceaccounts:{account.namespace}",
                        "system:authenticated",
                    ],
                },
                "audiences": (body.get("spec") or {}).get("audiences") or [],
            }
        else:
            status["error"] = "invalid bearer token"
        return {
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": body.get("spec") or {},
            "status": status,
        }

    def start(self) -> FakeK8sApi:
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _send(self, code: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                if self.path.split("?")[0] != TOKENREVIEW_PATH:
                    self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                    return
                self._send(201, api.review(json.loads(raw or b"{}")))

            def do_GET(self) -> None:
                self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeK8sApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def setup_kubernetes(
    adm: Any,
    api: FakeK8sApi,
    *,
    mount: str = "kubernetes",
    role: str = "dr-backup",
    namespace: str = "vault-dr",
    service_account: str = "dr-backup",
    policies: tuple[str, ...] = ("dr-backup",),
    token_ttl: str = "10m",
) -> str:
    """Enable kubernetes auth at auth/`mount` against `api`; write `role`."""
    from tests.stack.vault_auth import enable_auth

    enable_auth(adm, "kubernetes", mount)
    adm.call(
        "POST",
        f"auth/{mount}/config",
        {
            "kubernetes_host": api.host,
            "disable_local_ca_jwt": True,
            "kubernetes_ca_cert": api.ca_pem,
            # The reviewer JWT is sent as the TokenReview's bearer token; none needed here
            # (without it OpenBao sends the login JWT itself).
        },
    )
    adm.call(
        "POST",
        f"auth/{mount}/role/{role}",
        {
            "bound_service_account_names": [service_account],
            "bound_service_account_namespaces": [namespace],
            "token_policies": list(policies),
            "token_ttl": token_ttl,
        },
    )
    return role
