"""Run under a launcher (accelerate launch / torchrun): train, stopped by rank 0 alone, then resume.

Each process writes what it saw to REPORT_DIR/rank<N>.json, so the test can compare the processes:
steps taken, events emitted, and a digest of its LoRA weights (DDP must keep them identical).

    python two_process_run.py CONFIG.json RUN_DIR REPORT_DIR STOP_AFTER
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path


def lora_digest(unet) -> str:
    """A hash of the LoRA weights as this process holds them."""
    from lora_studio.train.network import lora_state

    state = lora_state(unet, None)
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].float().numpy().tobytes())
    return digest.hexdigest()


def main() -> None:
    from lora_studio.config import config_from_dict
    from lora_studio.models.load import load_base
    from lora_studio.train.loop import train
    from lora_studio.train.processes import process_rank

    values, run_dir, report_dir, stop_after = json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]), \
        Path(sys.argv[3]), int(sys.argv[4])
    config = config_from_dict(values)
    rank = process_rank()
    base = load_base(config.base_model)
    digests = []  # the LoRA weights after every step of the resumed part, read inside should_stop
    first, second = [], []
    # Only rank 0 sees the stop request (as if only it had looked at the STOP file in time).
    result_one = train(config, run_dir, first.append, base=base,
                       should_stop=lambda: rank == 0 and sum(e["type"] == "step" for e in first) >= stop_after)
    result_two = train(config, run_dir, second.append, base=base, resume=True,
                       should_stop=lambda: digests.append(lora_digest(base.unet)) or False)
    report = {"rank": rank, "first": {k: result_one[k] for k in ("steps", "stopped", "total_steps")},
              "second": {k: result_two[k] for k in ("steps", "stopped", "total_steps")},
              "events_first": first, "events_second": second, "digests": digests}
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
