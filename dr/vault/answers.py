"""Vault's error text as one line (shared by the requests client and the pipelined reader).

OpenBao answers errors as `{"errors": ["1 error occurred:\\n\\t* permission denied\\n\\n"]}`;
every user-facing error of this tool is one line, so they are folded here.
"""

from __future__ import annotations

from typing import Any


def one_line(text: str) -> str:
    """Vault's multi-error text ("1 error occurred:\\n\\t* permission denied\\n\\n") as
    one line ("permission denied"): every user-facing error is a single line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith("occurred:"):
        lines = [line.removeprefix("* ") for line in lines[1:]]
    return "; ".join(lines)


def errors_text(doc: Any) -> str:
    """Vault's `errors` list of a decoded answer as one line ('' when there is none)."""
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if isinstance(errors, list) and errors:
        return "; ".join(one_line(str(e)) for e in errors)[:300]
    return ""
