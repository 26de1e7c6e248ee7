"""`dr keygen --from-printed` on a real terminal: it prompts, and stops at the end of the
key without waiting for an empty line. (Piped input is covered in test_keys.py.)"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from dr.crypto.x25519 import X25519Identity, read_identity


def test_typing_on_a_terminal_stops_at_the_end_of_the_key(tmp_path: Path) -> None:
    identity = X25519Identity.generate()
    out = tmp_path / "typed.key"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dr", "keygen", "--from-printed", "--out", str(out)],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(slave)
    try:
        for line in identity.printed().splitlines():
            os.write(master, line.encode() + b"\n")
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            readable, _, _ = select.select([master], [], [], 0.1)
            if readable:  # drain the terminal's echo so the child never blocks on it
                try:
                    os.read(master, 4096)
                except OSError:
                    break
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert proc.returncode == 0, stderr
    assert "Type the key as printed" in stderr
    assert identity.recipient in stdout
    assert read_identity(out).public_key == identity.public_key
