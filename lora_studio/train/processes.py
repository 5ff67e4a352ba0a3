"""Training in several processes (`accelerate launch --multi_gpu`, torchrun): who writes, and stopping together.

Under a launcher every process runs the whole command. Only rank 0 may write the run folder
(events, LoRA files, state: the others would write every line twice), and all of them must stop
at the same step, or the next gradient sync waits forever for the one that stopped.
"""

from __future__ import annotations

import os
from typing import Callable

# The variables accelerate reads a process's rank from (torchrun, then the MPI flavours),
# checked in accelerate 1.15's utils.environment.get_cpu_distributed_information.
RANK_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


def process_rank() -> int:
    """This process's rank among the launched ones; 0 when it was started alone."""
    for name in RANK_VARIABLES:
        if os.environ.get(name, "").strip().isdigit():
            return int(os.environ[name])
    return 0


def is_main_process() -> bool:
    """True in the one process that writes the run folder (rank 0, or the only process)."""
    return process_rank() == 0


def main_process_only(emit: Callable[[dict], None]) -> Callable[[dict], None]:
    """emit on the main process, nothing on the others."""
    if is_main_process():
        return emit
    return lambda event: None


def agreed_stop(accelerator, should_stop: Callable[[], bool]) -> Callable[[], bool]:
    """A should_stop that every process answers alike at the same step; once True it stays True.

    Each process looks for the STOP file itself; if any saw it, all stop (accelerate's trigger is an
    all-reduce, so every process must call this equally often: the training loop does, once a step).
    """
    stopped = False

    def check() -> bool:
        nonlocal stopped
        if stopped:
            return True
        if accelerator.num_processes == 1:
            stopped = should_stop()
            return stopped
        if should_stop():
            accelerator.set_trigger()
        stopped = accelerator.check_trigger()
        return stopped

    return check
