"""One crawl at a time per database: an flock()ed lock file next to it (`<db>.lock`).

Cron, the daemon and a user at a terminal may all start `armswatch crawl` on the same
database; two crawls at once would fetch everything twice and fight over the writer
lock. `fcntl.flock` is released by the kernel when its holder dies, however it dies, so
a killed crawl never leaves a stale lock behind: the next crawl simply gets it. The pid
and start time written into the file are only there to make the "busy" message useful.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2


class LockError(RuntimeError):
    """The lock file cannot be created or locked at all (permissions, missing directory)."""


class LockHeld(LockError):
    """Another live process holds the lock; the message names it."""


def lock_path_for(db: str | Path, suffix: str = ".lock") -> Path:
    """`<db>.lock` beside the database (a string suffix, so `x.db` -> `x.db.lock`)."""
    return Path(str(db).rstrip("/") + suffix)


class ProcessLock:
    """An exclusive inter-process lock on a file, waiting up to `wait` seconds for it.

    `what` names the holder in messages ("crawl", "scheduler"). Use as a context manager
    or call acquire()/release(); the lock is also released if the process dies.
    """

    def __init__(self, path: str | Path, wait: float = 10.0, what: str = "crawl"):
        self.path = Path(path)
        self.wait = max(0.0, wait)
        self.what = what
        self.fd: int | None = None
        self.took_over: str | None = None  # holder info left by a process that died holding it

    def acquire(self) -> ProcessLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LockError(f"cannot create lock file {self.path}: {exc.strerror or exc}") from None
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise LockHeld(f"another {self.what} ({holder}) holds {self.path}") from None
                time.sleep(POLL_SECONDS)
            except OSError as exc:
                os.close(fd)
                raise LockError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
        left = _read_holder(fd, default="")
        if left:
            # Released by the kernel when its holder died: nothing to clean up, but say so.
            self.took_over = left
            logger.info("%s: taking over from a %s that did not exit cleanly (%s)", self.path, self.what, left)
        started = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {started}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)  # an empty file means "released cleanly"
        finally:
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __enter__(self) -> ProcessLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def crawl_lock(db: str | Path, wait: float = 10.0) -> ProcessLock:
    """The lock every crawl of database `db` holds while it runs."""
    return ProcessLock(lock_path_for(db), wait=wait, what="crawl")


def scheduler_lock(db: str | Path) -> ProcessLock:
    """The lock a scheduler daemon holds, so two daemons never drive one database."""
    return ProcessLock(lock_path_for(db, ".schedule.lock"), wait=0, what="scheduler")


def _read_holder(fd: int, default: str = "pid unknown") -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return default
    return text or default
