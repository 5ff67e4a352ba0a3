"""The one GPU lock of a studio home: held by the worker for its whole life, and by the CLI's heavy commands.

An OS lock (flock / msvcrt) rather than "file exists + pid alive": the kernel drops it when the process
dies however it dies, so a killed holder never leaves a lock behind, and no pid is ever signalled to test
it. The file stays; it only records who holds it (pid, since when, worker or cli, and the job it runs),
so a refused command can say what the GPU is busy with.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from lora_studio import paths
from lora_studio.errors import UserError

LOCK_NAME = "worker.lock"
WORKER, CLI = "worker", "cli"
# Windows locks byte ranges and refuses reads of a locked one: lock a byte past the record's text.
_LOCK_OFFSET = 1024


def lock_path() -> Path:
    """The lock file of this studio home."""
    return paths.data_home() / LOCK_NAME


def _try_lock(fd: int) -> bool:
    if os.name == "nt":
        import msvcrt

        os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _unlock(fd: int) -> None:
    if os.name == "nt":
        import msvcrt

        os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


def _open_lock_file() -> int:
    path = lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


@dataclass
class Holder:
    """Who holds (or, if it was killed, last held) the lock, as its record says."""

    pid: int
    since: str = ""
    kind: str = WORKER  # "worker" or "cli"
    job: str = ""       # the job it runs now; empty while a worker waits for jobs


def holder() -> Holder | None:
    """The lock's record, or None when it is empty (a clean release clears it)."""
    try:
        lines = lock_path().read_text(encoding="utf-8").split("\n")
    except OSError:
        return None
    if not lines[0].strip().isdigit():
        return None
    lines += [""] * 4
    return Holder(int(lines[0].strip()), lines[1].strip(), lines[2].strip() or WORKER, lines[3].strip())


def holder_pid() -> int | None:
    """The pid of the process that holds (or last held) the lock."""
    record = holder()
    return record.pid if record else None


def lock_is_held() -> bool:
    """True while a live process holds the lock (tested by trying to take it for an instant)."""
    fd = _open_lock_file()
    try:
        if _try_lock(fd):
            _unlock(fd)
            return False
        return True
    finally:
        os.close(fd)


def busy_error(record: Holder | None) -> UserError:
    """What a refused heavy command tells the user: who has the GPU and what to do."""
    if record is None or record.kind == WORKER:
        doing = f"is running {record.job}" if record and record.job else "holds the GPU (waiting for jobs)"
        return UserError(f"the studio's worker {doing}", "use --queue to add this to its queue, or wait")
    doing = f"is running {record.job}" if record.job else "is running"
    return UserError(f"another lora-studio command (pid {record.pid}) {doing}", "wait for it to finish")


class GpuLock:
    """The lock, held while one process uses the GPU; acquire() refuses while another holds it."""

    def __init__(self, kind: str = WORKER):
        self.kind = kind
        self.fd: int | None = None
        self.since = ""

    def acquire(self, wait_s: float = 2.0, job: str = "") -> int | None:
        """Take the lock or raise UserError; returns the pid of a dead holder whose record was left."""
        fd = _open_lock_file()
        # A short wait: lock_is_held() in the studio takes the lock for an instant to test it.
        deadline = time.monotonic() + wait_s
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                os.close(fd)
                record = holder()
                if self.kind == WORKER:
                    if record and record.kind == CLI:
                        raise UserError(f"a lora-studio command (pid {record.pid}) is using the GPU",
                                        "queued jobs start when it finishes")
                    pid = f" (pid {record.pid})" if record else ""
                    raise UserError(f"another worker is already running{pid}",
                                    "jobs are queued for it; there is never more than one worker per studio")
                raise busy_error(record)
            time.sleep(0.1)
        stale = holder_pid()  # a pid still written there belongs to a process that died holding it
        self.fd, self.since = fd, time.strftime("%Y-%m-%d %H:%M:%S")
        self.set_job(job)
        return stale if stale != os.getpid() else None

    def set_job(self, job: str) -> None:
        """Record the job now running (empty: none), for the message of a refused command."""
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.write(self.fd, f"{os.getpid()}\n{self.since}\n{self.kind}\n{job}\n".encode())

    def release(self) -> None:
        """Clear the record (a clean exit leaves no stale pid) and drop the lock."""
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        _unlock(self.fd)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "GpuLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
