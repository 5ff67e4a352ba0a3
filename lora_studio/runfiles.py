"""A run folder is the interface between processes: events.jsonl, STOP, job.toml.

Both sides use these helpers: the CLI and the worker append events and look for STOP; the UI
reads events from an offset and creates STOP. Plain files survive a crash of either side.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

EVENTS = "events.jsonl"
STOP = "STOP"


def append_event(run_dir: Path, event: dict) -> dict:
    """Append one event as a JSON line (with a wall-clock 'time'), flushed so a tail sees it now."""
    event = {"time": round(time.time(), 3), **event}
    with open(Path(run_dir) / EVENTS, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(event, ensure_ascii=False) + "\n")
        fh.flush()
    return event


def read_events(run_dir: Path, offset: int = 0) -> tuple[list[dict], int]:
    """Events appended since byte offset, and the new offset; a half-written last line waits."""
    path = Path(run_dir) / EVENTS
    if not path.is_file():
        return [], offset
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    events = []
    consumed = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        consumed += len(line)
        if line.strip():
            events.append(json.loads(line))
    return events, offset + consumed


def request_stop(run_dir: Path) -> None:
    """Ask the run to stop cleanly after its current step."""
    (Path(run_dir) / STOP).write_text(time.strftime("%Y-%m-%d %H:%M:%S"), encoding="utf-8")


def stop_requested(run_dir: Path) -> bool:
    """True once someone created the STOP file."""
    return (Path(run_dir) / STOP).exists()


def clear_stop(run_dir: Path) -> None:
    """Remove a STOP file (before resuming)."""
    (Path(run_dir) / STOP).unlink(missing_ok=True)
