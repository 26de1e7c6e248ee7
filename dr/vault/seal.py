"""Unseal keys, init, unseal (any threshold), and waiting for a node's state.

After a raft restore from another cluster a node becomes that cluster: it seals itself
about 5-7 s after the restore call, and only the SOURCE cluster's unseal keys open it
(FACTS.md). `Node` works over any `VaultClient` (TCP for `dr restore`, the unix socket
of a drill), so the one unseal path serves restore, drills, `dr demo` and the tests'
servers alike.

The unseal path never assumes a seal configuration: it reads the threshold the node
asks for from `sys/seal-status` and checks that the keys can satisfy it before sending
one. docs/facts.md ("unseal after a forced restore") records why the configuration read
straight after a restore can be the node's OLD one, and how `unseal_after_restore`
waits for the restored one.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dr.errors import UsageError, VaultError
from dr.vault import shamir
from dr.vault.connection import Reply, VaultClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnsealKeys:
    keys: tuple[str, ...]  # base64 or hex, as Vault accepts either
    source: str

    def __repr__(self) -> str:  # never print keys
        return f"UnsealKeys(<{len(self.keys)} hidden>, source={self.source!r})"


UNSEAL_KEY_FIELDS = ("unseal_keys_b64", "keys_base64", "keys", "unseal_keys_hex")
RECOVERY_KEY_FIELDS = ("recovery_keys_b64", "recovery_keys_base64", "recovery_keys_hex", "keys")


def load_unseal_keys(path: Path) -> UnsealKeys:
    """Read the JSON `bao|vault operator init -format=json` prints, or {"keys": [...]}."""
    return _load_keys(path, "unseal", UNSEAL_KEY_FIELDS)


def load_recovery_keys(path: Path) -> UnsealKeys:
    """The recovery keys of an auto-unseal cluster: `recovery_keys_b64` of the init JSON
    (found in the file given as unseal_keys_file too), or {"keys": [...]}."""
    return _load_keys(path, "recovery", RECOVERY_KEY_FIELDS)


def has_recovery_keys(path: Path) -> bool:
    """Whether `path` (readable JSON) holds recovery keys; False on any problem (the
    caller then reports the file's problem in its own words)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and any(
        isinstance(data.get(name), list) and data[name] for name in RECOVERY_KEY_FIELDS[:3]
    )


def _load_keys(path: Path, kind: str, names: tuple[str, ...]) -> UnsealKeys:
    try:
        mode = path.stat().st_mode
        raw = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"{kind} keys file {path} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read {kind} keys file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"{kind} keys file {path} is readable by others; run: chmod 600 {path}")
    try:
        data = json.loads(raw)
    except ValueError:
        raise UsageError(
            f"{kind} keys file {path} is not JSON; expected the output of "
            '`bao operator init -format=json` or {"keys": ["base64", ...]}'
        ) from None
    keys: Any = None
    if isinstance(data, dict):
        for name in names:
            if isinstance(data.get(name), list) and data[name]:
                keys = data[name]
                break
    if not keys or not all(isinstance(k, str) and k for k in keys):
        hint = (
            "it holds recovery keys: the source uses auto-unseal (configure drill.seal)"
            if kind == "unseal" and has_recovery_keys(path)
            else f'expected {names[0]} (from `operator init -format=json`) or {{"keys": [...]}}'
        )
        raise UsageError(f"{kind} keys file {path} holds no {kind} keys; {hint}")
    return UnsealKeys(tuple(keys), str(path))


def decode_key(key: str) -> bytes | None:
    """A key as bytes (Vault prints both hex and base64), None when it is neither."""
    text = key.strip()
    try:
        if len(text) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in text):
            return bytes.fromhex(text)
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        return None


class SourceKey:
    """The source cluster's unseal key, combined from its shares: what opened the node.
    Split again for whatever threshold a node asks (dr/vault/shamir.py). Never printed."""

    def __init__(self, key: bytes, source: str) -> None:
        self._key = key
        self.source = source

    def __repr__(self) -> str:
        return f"SourceKey(<hidden>, source={self.source!r})"

    def shares(self, threshold: int) -> list[str]:
        """`threshold` base64 shares of the key (the key itself for a threshold of 1)."""
        if threshold <= 1:
            return [base64.b64encode(self._key).decode()]
        return [base64.b64encode(s).decode() for s in shamir.split(self._key, threshold, threshold)]


_MAX_CANDIDATES = 64  # key combinations tried against the node before giving up


def candidate_keys(keys: UnsealKeys) -> Iterator[tuple[bytes, tuple[int, ...]]]:
    """(key, 1-based positions of the keys it was made from), most keys first.

    Whole 32-byte keys (a threshold-1 cluster) are candidates one by one. Shares are
    combined all together first (any number at or above the threshold gives the key),
    then in smaller groups, so one wrong share among more than the threshold still
    lets the right ones open the node; the server says which candidate is the key."""
    decoded: list[bytes] = []
    for index, key in enumerate(keys.keys, start=1):
        raw = decode_key(key)
        if raw is None:
            raise UsageError(
                f"unseal key {index} in {keys.source} is neither base64 nor hex; copy it "
                "again from the init output"
            )
        decoded.append(raw)
    lengths = {len(raw) for raw in decoded}
    if len(lengths) != 1:
        raise UsageError(
            f"the unseal keys in {keys.source} are of different kinds ({sorted(lengths)} "
            "bytes): whole keys and shares of different clusters are mixed; keep one "
            "cluster's keys in the file"
        )
    unique: dict[bytes, int] = {}
    for index, raw in enumerate(decoded, start=1):
        unique.setdefault(raw, index)
    items = list(unique.items())
    if lengths == {32}:
        for raw, index in items:
            yield raw, (index,)
        return
    if len(items) < 2:
        raise UsageError(
            f"{keys.source} holds one share of a split key; the node needs at least its "
            "threshold of shares (e.g. 3 of 5): add them to the file"
        )
    by_x: dict[int, tuple[bytes, int]] = {}
    for raw, index in items:
        by_x.setdefault(raw[-1], (raw, index))  # two shares with one x: keep the first
    pool = list(by_x.values())
    seen: set[bytes] = set()
    tried = 0
    for size in range(len(pool), 1, -1):
        for group in itertools.combinations(pool, size):
            secret = shamir.combine([raw for raw, _ in group])
            if secret in seen:
                continue
            seen.add(secret)
            yield secret, tuple(sorted(index for _, index in group))
            tried += 1
            if tried >= _MAX_CANDIDATES:
                return


@dataclass(frozen=True)
class SealConfig:
    """What sys/seal-status says the node needs."""

    sealed: bool
    initialized: bool
    type: str  # shamir | awskms | transit | ...
    threshold: int  # t: keys needed
    shares: int  # n
    progress: int
    cluster_id: str
    nonce: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def of(cls, status: dict[str, Any]) -> SealConfig:
        return cls(
            sealed=bool(status.get("sealed", True)),
            initialized=bool(status.get("initialized", False)),
            type=str(status.get("type", "shamir")),
            threshold=int(status.get("t") or 0),
            shares=int(status.get("n") or 0),
            progress=int(status.get("progress") or 0),
            cluster_id=str(status.get("cluster_id", "")),
            nonce=str(status.get("nonce", "")),
            raw=status,
        )

    @property
    def shamir(self) -> bool:
        return self.type == "shamir"


@dataclass
class InitResult:
    """What `sys/init` returned, in the `bao operator init -format=json` shape (`raw`)."""

    keys_b64: list[str]
    root_token: str
    raw: dict[str, Any] = field(repr=False)

    def __repr__(self) -> str:  # never print keys or tokens
        return f"InitResult(keys=<{len(self.keys_b64)} hidden>, root_token=<hidden>)"


class Node:
    """Unauthenticated sys/ operations on one node (seal status, init, unseal, waits)."""

    def __init__(self, client: VaultClient, *, alive: Callable[[], str | None] | None = None):
        self.client = client
        self.label = client.label
        self.source_key: SourceKey | None = None  # what unsealed it after a restore
        # `alive()` returns why the server is gone (its process exited), else None: waits
        # stop at once instead of running out their timeout.
        self._alive = alive

    def seal_status(self) -> SealConfig:
        return SealConfig.of(self.client.unauthenticated("sys/seal-status"))

    def health_code(self) -> int | None:
        return self.client.health_code()

    # --- init -----------------------------------------------------------------------
    def init(
        self, shares: int = 1, threshold: int = 1, *, timeout: float = 120, recovery: bool = False
    ) -> InitResult:
        """`recovery`: an auto-unseal node gets `shares`/`threshold` RECOVERY keys (its
        barrier key is wrapped by the seal; it unseals itself)."""
        kind = "recovery" if recovery else "secret"
        body = self.client.write(
            "sys/init",
            {f"{kind}_shares": shares, f"{kind}_threshold": threshold},
            "initialize",
            auth=False,
            namespace=None,
            timeout=timeout,
        )
        raw: dict[str, Any] = {
            "unseal_keys_b64": list(body.get("keys_base64") or []),
            "unseal_keys_hex": list(body.get("keys") or []),
            "unseal_shares": shares,
            "unseal_threshold": threshold,
            "recovery_keys_b64": list(body.get("recovery_keys_base64") or []),
            "recovery_keys_hex": list(body.get("recovery_keys") or []),
            "recovery_keys_shares": shares if recovery else 0,
            "recovery_keys_threshold": threshold if recovery else 0,
            "root_token": body.get("root_token", ""),
        }
        return InitResult(raw["unseal_keys_b64"], str(raw["root_token"]), raw)

    def init_and_unseal(self, shares: int = 1, threshold: int = 1) -> InitResult:
        result = self.init(shares, threshold)
        self.unseal(UnsealKeys(tuple(result.keys_b64), "the node's own init"))
        self.wait_active()
        return result

    # --- unseal -----------------------------------------------------------------------
    def unseal(self, keys: UnsealKeys, *, timeout: float = 120) -> SourceKey | None:
        """Unseal with `keys` for whatever threshold the node reports; the key that
        opened it (None when it was not sealed).

        The node is given exactly what it asks for: the threshold it reports (which,
        right after a forced restore, can be its OLD cluster's, see shamir.py), in
        shares of the key combined from `keys`. A combination the node refuses is
        followed by smaller ones (a wrong key among more than the threshold); when none
        opens it, the keys are not this cluster's, which the error says."""
        config = self.seal_status()
        if not config.sealed:
            return None
        if not config.shamir:
            raise VaultError(
                f"Vault at {self.label} uses the {config.type} seal: it unseals itself "
                "through its seal, not with unseal keys; check that its seal is reachable"
            )
        need = max(1, config.threshold)
        tried = 0
        last = ""
        for secret, used in candidate_keys(keys):
            tried += 1
            candidate = SourceKey(secret, keys.source)
            refused = self._submit(candidate.shares(need), timeout)
            if refused is None:
                self._name_strays(keys, used)
                log.info(
                    "Vault at %s unsealed (threshold %d) with the key of %d key(s) from %s",
                    self.label,
                    need,
                    len(used),
                    keys.source,
                )
                return candidate
            last = refused
        raise VaultError(
            f"Vault at {self.label} refused the unseal keys from {keys.source}: no "
            f"combination of its {len(keys.keys)} key(s) ({tried} tried) is this cluster's "
            f"key ({last}); at least one key is wrong or from another cluster, or the file "
            "holds fewer keys than the threshold: use the SOURCE cluster's unseal keys"
        )

    def _submit(self, shares: list[str], timeout: float) -> str | None:
        """Reset the unseal progress, then send `shares`: None when the node unsealed,
        else why it refused them."""
        self._unseal_call({"reset": True}, timeout, "reset the unseal progress")
        for share in shares:
            reply = self._unseal_call({"key": share}, timeout, None)
            if not reply.ok:
                if reply.status == 400:
                    self._unseal_call({"reset": True}, timeout, None)
                    return reply.errors
                raise self.client.error(reply, "unseal")
            if not reply.data().get("sealed", True):
                return None
        status = self.seal_status()
        if not status.sealed:
            return None
        return (
            f"still sealed after {len(shares)} shares (progress {status.progress} of "
            f"{status.threshold})"
        )

    def _unseal_call(self, body: dict[str, Any], timeout: float, what: str | None) -> Reply:
        reply = self.client.send(
            "PUT", "sys/unseal", json=body, auth=False, namespace=None, timeout=timeout
        )
        if what is not None and not reply.ok:
            raise self.client.error(reply, what)
        return reply

    @staticmethod
    def _name_strays(keys: UnsealKeys, used: tuple[int, ...]) -> None:
        """Warn about keys of the file that are not shares of the key that worked."""
        strays = [i for i in range(1, len(keys.keys) + 1) if i not in used]
        if not strays or len(used) < 2:
            return
        shares = [decode_key(keys.keys[i - 1]) or b"" for i in used]
        wrong = [
            i
            for i in strays
            if not shamir.on_polynomial(shares, decode_key(keys.keys[i - 1]) or b"")
        ]
        if wrong:
            log.warning(
                "unseal key(s) %s in %s are not shares of this cluster's key: replace them "
                "before the next incident",
                ", ".join(map(str, wrong)),
                keys.source,
            )

    # --- waiting ------------------------------------------------------------------------
    def wait(
        self, what: str, check: Callable[[], bool], timeout: float, every: float = 0.1
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._alive is not None:
                gone = self._alive()
                if gone:
                    raise VaultError(f"Vault at {self.label} exited while becoming {what}: {gone}")
            try:
                if check():
                    return
            except VaultError:
                pass
            if time.monotonic() > deadline:
                raise VaultError(
                    f"Vault at {self.label} did not become {what} within {timeout:.0f} s "
                    f"(health {self.health_code()})"
                )
            time.sleep(every)

    def wait_sealed(self, timeout: float = 60) -> None:
        self.wait("sealed", lambda: self.seal_status().sealed, timeout)

    def wait_active(self, timeout: float = 120) -> None:
        self.wait("active", lambda: self.health_code() == 200, timeout)


def wait_auto_unsealed(node: Node, cluster_id: str, *, timeout: float = 120) -> None:
    """After a forced restore into an auto-unseal node configured with the SOURCE's seal:
    it opens the restored keyring through the seal by itself (no unseal call) and then
    reports the source's cluster id (measured ~5.5 s; FACTS.md). Waits for exactly
    that: active, with the source's cluster id; a seal it cannot use leaves it sealed,
    and the wait's error says so."""

    def restored() -> bool:
        status = node.seal_status()
        if status.sealed or (cluster_id and status.cluster_id != cluster_id):
            return False
        return node.health_code() == 200

    try:
        node.wait("active with the restored data", restored, timeout, every=0.2)
    except VaultError as exc:
        if node.seal_status().sealed:
            raise VaultError(
                f"Vault at {node.label} stayed sealed after the restore: its seal cannot "
                "open the restored keyring; is it configured with the SOURCE cluster's seal "
                "key (drill.seal)?"
            ) from exc
        raise


def unseal_after_restore(
    node: Node,
    keys: UnsealKeys | None,
    *,
    before: SealConfig,
    expect_reseal: bool,
    reseal_timeout: float = 60,
    active_timeout: float = 120,
) -> bool:
    """After a restore call: wait for the post-restore self-seal (a forced restore from
    another cluster gives the node the source keyring; it seals itself ~5-7 s later),
    unseal with the source keys, wait until active. Returns whether it resealed.

    `before` is the seal status read before the restore call."""
    resealed = False
    if expect_reseal:
        node.wait_sealed(timeout=reseal_timeout)
        resealed = True
    else:
        # Same cluster: the keyring does not change and the node normally stays
        # unsealed; unseal anyway if it did seal.
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            if node.seal_status().sealed:
                resealed = True
                break
            time.sleep(0.25)
    if resealed:
        if keys is None:
            if before.shamir:
                raise UsageError(
                    f"Vault at {node.label} sealed itself after the restore; unseal it with "
                    "the SOURCE cluster's keys (--unseal-keys-file)"
                )
        else:
            node.source_key = node.unseal(keys)
    node.wait_active(timeout=active_timeout)
    return resealed
