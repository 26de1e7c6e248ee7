"""Reference for `dr drill`: the bare hvac script of bench/drill_rto.py, as its own process.

    python bench/ref_drill.py --plan PLAN.json --snapshot FILE --workdir DIR

PLAN.json (0600, written by the bench): {"keys_base64": [...], "root_token": "...",
"kv1_mount": "legacy", "paths": ["mount/path", ...]}. Starts a throwaway OpenBao,
inits and unseals it, force-restores the plaintext snapshot, waits for the self-seal,
unseals with the source keys, waits until active and reads every secret with hvac
(bench/drill_rto.py `bare_script`). Prints {"seconds": S}: from the throwaway's start
to the last read (interpreter start-up and imports excluded, as the drill's RTO
excludes its own).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.drill_rto import bare_script  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--snapshot", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args()
    plan = json.loads(args.plan.read_text())
    seconds = bare_script(
        args.snapshot,
        plan["keys_base64"],
        plan["root_token"],
        dict.fromkeys(plan["paths"]),
        plan["kv1_mount"],
        args.workdir,
    )
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main()
