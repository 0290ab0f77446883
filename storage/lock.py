"""Exactly one bot instance per database: an exclusive `flock` on the sibling file `<db>.lock`.

Two bots on one database would both resume every open closure, both act on the same approvals
and both drive Microsoft Graph, so `start_service` takes this lock before it opens the database
and holds it until `Service.stop`.

Why `flock` and not a pid file: the kernel drops the lock when its file descriptor is closed,
which happens however the process ends, SIGKILL and OOM kill included, so a crash never leaves
a stale lock behind that someone must clear by hand. The pid and start time written into the
file are only there to make the refusal say who holds the database.

`flock` locks belong to the open file description, so a second `acquire_instance_lock` in the
same process is refused too. The lock file is never deleted (unlinking a lock file while another
process has it open lets two processes "hold" different inodes). The lock is only as good as the
filesystem's `flock`: keep the database on a local disk, which SQLite's WAL mode needs anyway.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

__all__ = ["InstanceLock", "InstanceLockedError", "acquire_instance_lock", "lock_path_for"]

# A holder writes its pid right after it takes the lock; a refused process that reads the file in
# between sees it empty, so it re-reads a few times before saying the pid is unknown.
_HOLDER_READ_TRIES = 5
_HOLDER_READ_PAUSE = 0.02


def lock_path_for(db_path: Path | str) -> Path:
    """The lock file guarding `db_path`: `<db>.lock` in the same directory."""
    path = Path(db_path)
    return path.with_name(path.name + ".lock")


class InstanceLockedError(RuntimeError):
    """Another process holds the database; `str()` is one line naming the database and holder."""

    def __init__(
        self,
        db_path: Path,
        pid: int | None,
        since: str | None,
        host: str | None,
    ) -> None:
        self.db_path = db_path
        self.pid = pid
        self.since = since
        self.host = host
        holder = "pid unknown" if pid is None else f"pid {pid}"
        if host and host != socket.gethostname():
            holder += f" on {host}"
        if since:
            holder += f", since {since}"
        super().__init__(
            f"another close-account-bot ({holder}) is already running on {db_path}; "
            "run exactly one instance per database"
        )


class InstanceLock:
    """A held instance lock; release it with `release()` or by leaving a `with` block.

    Dropping the object without releasing it keeps the lock until the process exits: the file
    descriptor is a raw one that garbage collection does not close.
    """

    def __init__(self, db_path: Path, lock_path: Path, fd: int) -> None:
        self.db_path = db_path
        self.lock_path = lock_path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        """True until `release()`."""
        return self._fd is not None

    def release(self) -> None:
        """Release the lock (idempotent). The lock file stays; the next holder rewrites it."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # no stale holder for someone reading the file by hand
        except OSError:
            pass
        finally:
            os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self.held else "released"
        return f"<InstanceLock {state} {self.lock_path}>"


def acquire_instance_lock(db_path: Path | str) -> InstanceLock:
    """Take the exclusive lock for `db_path` without waiting, or raise `InstanceLockedError`.

    The lock file is created next to the database (whose directory must exist); the database
    itself is not touched.
    """
    db = Path(os.path.abspath(db_path))
    lock_path = lock_path_for(db)
    # os.open descriptors are close-on-exec (PEP 446): a spawned program never inherits the lock.
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            os.close(fd)
            raise
        try:
            holder = _read_holder(fd)
        finally:
            os.close(fd)
        raise InstanceLockedError(
            db, _int(holder.get("pid")), _str(holder.get("since")), _str(holder.get("host"))
        ) from None
    try:
        _write_holder(fd)
    except BaseException:
        os.close(fd)
        raise
    return InstanceLock(db, lock_path, fd)


def _write_holder(fd: int) -> None:
    since = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    record = {"pid": os.getpid(), "since": since, "host": socket.gethostname()}
    data = (json.dumps(record, sort_keys=True) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def _read_holder(fd: int) -> dict[str, object]:
    for attempt in range(_HOLDER_READ_TRIES):
        if attempt:
            time.sleep(_HOLDER_READ_PAUSE)
        try:
            record = json.loads(os.pread(fd, 4096, 0))
        except ValueError:  # empty or half written: the holder is writing it right now
            continue
        return record if isinstance(record, dict) else {}
    return {}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
