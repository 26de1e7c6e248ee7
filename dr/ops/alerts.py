"""Webhook alerts (docs/alerts.md): a failure, the first success after one, and
(alerts.on_drill) every drill.

Whether a success is a recovery needs the previous result: it is kept in the store
beside the backups (`Layout.state_key(command)`, a small JSON object without secrets),
read before and rewritten after every run of a host with alerts configured. A store
that cannot be read still gets failures posted; a recovery is then not claimed.

The webhook URL is a secret (a Slack incoming webhook URL is its own credential): it
is never logged, never put in a message, and a redirect is not followed (the body
would go to wherever the redirect points). A failing post is a warning; it never
changes the command's result.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import dr
from dr.config import AlertsConfig
from dr.errors import DRError, NotFoundError
from dr.manifest import Layout
from dr.ops.metrics import Outcome
from dr.storage.base import BackupStore
from dr.timesource import iso
from dr.vault.auth import Credential

log = logging.getLogger(__name__)

FAILURE, WARNING, RECOVERED, OK = "failure", "warning", "recovered", "ok"
# Exit codes that mean "done, but look at it": the backup is stored (14, PARTIAL).
WARNING_CODES = frozenset({14})
STATE_FORMAT = 1

Post = Callable[[str, Mapping[str, Any], float], None]


def status_of(outcome: Outcome) -> str:
    if outcome.ok:
        return OK
    return WARNING if outcome.exit_code in WARNING_CODES else FAILURE


def decide(
    status: str, previous: str | None, *, command: str, on_drill: bool, known: bool
) -> str | None:
    """What to post: FAILURE/WARNING for every such run; RECOVERED for the first OK after
    one (only when the previous result is `known`: a store that could not be read claims
    no recovery); OK for a passing drill with alerts.on_drill; else nothing."""
    if status in (FAILURE, WARNING):
        return status
    if known and previous in (FAILURE, WARNING):
        return RECOVERED
    if on_drill and command == "drill":
        return OK
    return None


_TITLES = {
    FAILURE: (":x:", "FAILED"),
    WARNING: (":warning:", "finished with a warning"),
    RECOVERED: (":white_check_mark:", "recovered"),
    OK: (":white_check_mark:", "passed"),
}


def summary_line(kind: str, outcome: Outcome, previous: Mapping[str, Any] | None = None) -> str:
    """One plain-text line naming the cluster, the command, the exit code and the error."""
    _, verb = _TITLES[kind]
    text = f"vault-dr {outcome.command} of {outcome.cluster} {verb}"
    if kind in (FAILURE, WARNING):
        text += f" (exit {outcome.exit_code} {outcome.exit_name}): {outcome.error}"
    else:
        text += f" (exit {outcome.exit_code} {outcome.exit_name})"
        if kind == RECOVERED and previous:
            text += (
                f" after exit {previous.get('exit_code')} {previous.get('exit_name', '')} "
                f"at {previous.get('at', '?')}"
            ).rstrip()
    rto = outcome.details.get("rto_seconds")
    if outcome.command == "drill" and rto is not None:
        text += f"; RTO {float(rto):.1f} s"
    if outcome.backup_id:
        text += f"; backup {outcome.backup_id}"
    return text


def payload(
    fmt: str,
    kind: str,
    outcome: Outcome,
    *,
    host: str,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    line = summary_line(kind, outcome, previous)
    if fmt == "generic":
        return {
            "source": "vault-dr",
            "version": dr.__version__,
            "cluster": outcome.cluster,
            "command": outcome.command,
            "status": kind,
            "exit_code": outcome.exit_code,
            "exit_name": outcome.exit_name,
            "error": outcome.error or None,
            "stage": outcome.stage,
            "backup_id": outcome.backup_id,
            "host": host,
            "at": iso_at(outcome.finished),
            "summary": line,
            "previous": dict(previous) if kind == RECOVERED and previous else None,
            "details": dict(outcome.details),
        }
    icon, _ = _TITLES[kind]
    text = f"{icon} {_slack_escape(line)}"
    fields = [
        f"*cluster:* {_slack_escape(outcome.cluster)}",
        f"*command:* {outcome.command}",
        f"*exit:* {outcome.exit_code} {outcome.exit_name}",
        f"*host:* {_slack_escape(host)}",
    ]
    if outcome.stage:
        fields.append(f"*stage:* {outcome.stage}")
    if outcome.backup_id:
        fields.append(f"*backup:* {outcome.backup_id}")
    return {
        "text": text,  # what notifications and clients without blocks show
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        ],
    }


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn: these three are control characters (<url|label>, &amp;).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def iso_at(unix: float) -> str:
    from datetime import UTC, datetime

    return iso(datetime.fromtimestamp(unix, UTC))


# --- the previous result -------------------------------------------------------------


def state_record(outcome: Outcome, status: str, host: str) -> dict[str, Any]:
    return {
        "format": STATE_FORMAT,
        "cluster": outcome.cluster,
        "command": outcome.command,
        "status": status,
        "exit_code": outcome.exit_code,
        "exit_name": outcome.exit_name,
        "error": outcome.error or None,
        "backup_id": outcome.backup_id,
        "host": host,
        "at": iso_at(outcome.finished),
    }


def read_state(store: BackupStore, key: str) -> tuple[bool, dict[str, Any] | None]:
    """(known, record): (True, None) when there is none yet; (False, None) when the store
    could not be read. Never raises."""
    try:
        data = json.loads(store.get_bytes(key))
    except NotFoundError:
        return True, None
    except Exception as exc:
        log.warning(
            "WARNING: alerts: cannot read the previous %s result (%s); a recovery will "
            "not be reported this time",
            key.rsplit("/", 1)[-1].removesuffix(".json"),
            _short(exc),
        )
        return False, None
    return True, data if isinstance(data, dict) else None


# --- posting -------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx: the body stays here


def post_json(url: str, body: Mapping[str, Any], timeout: float) -> None:
    """POST `body` as JSON; raises on anything but a 2xx.

    urllib.request (stdlib), not requests: the import contract lets only
    dr.vault.connection import requests/urllib3 (pyproject [tool.importlinter]), and one
    POST needs no session. TLS is verified against the system CAs."""
    if not url.lower().startswith(("https://", "http://")):
        raise ValueError("the webhook URL is not an http(s):// URL")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"vault-dr/{dr.__version__}"},
    )
    opener = urllib.request.build_opener(
        _NoRedirect(), urllib.request.HTTPSHandler(context=ssl.create_default_context())
    )
    with opener.open(request, timeout=timeout) as response:
        response.read(4096)


def _short(exc: BaseException) -> str:
    """A failure without the URL in it (urllib's messages do not carry it; a ValueError
    of a malformed URL would)."""
    if isinstance(exc, DRError):
        return exc.message
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return str(reason.strerror if isinstance(reason, OSError) and reason.strerror else reason)
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, http.client.HTTPException | ValueError):
        return type(exc).__name__
    return f"{type(exc).__name__}: {exc}"[:200]


def notify(
    settings: AlertsConfig,
    store: Callable[[], BackupStore] | None,
    layout: Layout,
    outcome: Outcome,
    *,
    post: Post = post_json,
    host: str | None = None,
) -> str | None:
    """Post what `decide` says and record this result as the previous one. Returns the
    kind posted (None: nothing). Never raises; failures are warnings."""
    if settings.webhook is None:
        return None
    host = host or socket.gethostname()
    status = status_of(outcome)
    known, previous = False, None
    opened: BackupStore | None = None
    key = layout.state_key(outcome.command)
    if store is not None:
        try:
            opened = store()
        except Exception as exc:
            log.warning(
                "WARNING: alerts: cannot open the store for the previous result (%s)", _short(exc)
            )
        if opened is not None:
            known, previous = read_state(opened, key)
    previous_status = previous.get("status") if previous else None
    kind = decide(
        status,
        previous_status if isinstance(previous_status, str) else None,
        command=outcome.command,
        on_drill=settings.on_drill,
        known=known,
    )
    if opened is not None:
        try:
            opened.put_bytes(key, json.dumps(state_record(outcome, status, host)).encode())
        except Exception as exc:
            log.warning(
                "WARNING: alerts: cannot store this %s result (%s); the next success "
                "cannot be told to be a recovery",
                outcome.command,
                _short(exc),
            )
    if kind is None:
        return None
    body = payload(settings.format, kind, outcome, host=host, previous=previous)
    _post(settings.webhook, kind, body, settings.timeout, post)
    return kind


def _post(
    webhook: Credential, kind: str, body: Mapping[str, Any], timeout: float, post: Post
) -> None:
    try:
        url = webhook.read()
    except Exception as exc:
        log.warning("WARNING: alerts: %s; no alert was sent", _short(exc))
        return
    try:
        post(url, body, timeout)
    except Exception as exc:
        why = _short(exc).replace(url, "<webhook URL>")
        log.warning(
            "WARNING: alerts: the webhook (%s) failed: %s; the command's result is unchanged",
            webhook.describe(),
            why,
        )
        return
    log.info("alerts: posted the %s alert to the webhook (%s)", kind, webhook.describe())
