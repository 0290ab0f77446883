"""Exactly one instance per database: the flock on `<db>.lock`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from storage.lock import InstanceLockedError, acquire_instance_lock, lock_path_for

ROOT = Path(__file__).resolve().parent.parent

# A second process that takes the lock, says so and then waits to be killed.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from storage.lock import acquire_instance_lock
    lock = acquire_instance_lock(sys.argv[1])
    print("locked", flush=True)
    time.sleep(120)
    """
)


def test_second_lock_in_the_same_process_is_refused(tmp_path: Path) -> None:
    """A second acquire on the same database fails with one line naming the database and pid."""
    db = tmp_path / "close-account.db"
    with acquire_instance_lock(db):
        with pytest.raises(InstanceLockedError) as refused:
            acquire_instance_lock(db)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"another close-account-bot (pid {os.getpid()}, since ")
    assert message.endswith(f"is already running on {db}; run exactly one instance per database")
    assert refused.value.pid == os.getpid()
    assert refused.value.db_path == db


def test_release_frees_the_lock(tmp_path: Path) -> None:
    """After release() (idempotent) and after a with block, the next acquire succeeds."""
    db = tmp_path / "close-account.db"
    lock = acquire_instance_lock(db)
    assert lock.held
    lock.release()
    lock.release()
    assert not lock.held
    with acquire_instance_lock(db) as again:
        assert again.held
    assert not again.held
    acquire_instance_lock(db).release()


def test_lock_file_is_a_sibling_and_the_database_is_untouched(tmp_path: Path) -> None:
    """The lock lives in `<db>.lock` next to the database and does not create the database."""
    db = tmp_path / "close-account.db"
    with acquire_instance_lock(db) as lock:
        assert lock.lock_path == lock_path_for(db) == tmp_path / "close-account.db.lock"
        assert lock.lock_path.read_text().strip().startswith("{")
        assert not db.exists()
    assert lock_path_for(db).exists()  # never deleted: see the module docstring


def test_relative_path_names_the_absolute_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative database path is reported as the absolute path the bot actually uses."""
    monkeypatch.chdir(tmp_path)
    with acquire_instance_lock("bot.db"):
        with pytest.raises(InstanceLockedError, match=f"running on {tmp_path / 'bot.db'};"):
            acquire_instance_lock(tmp_path / "bot.db")


def test_lock_held_by_a_sigkilled_process_is_free_again(tmp_path: Path) -> None:
    """A lock whose holder is SIGKILLed is released by the kernel, with no stale file to clear."""
    db = tmp_path / "close-account.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "locked"
            with pytest.raises(InstanceLockedError) as refused:
                acquire_instance_lock(db)
            assert refused.value.pid == holder.pid
            assert f"(pid {holder.pid}, since " in str(refused.value)
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=10)
    assert holder.returncode == -signal.SIGKILL
    with acquire_instance_lock(db) as lock:
        assert lock.held
        assert f'"pid": {os.getpid()}' in lock.lock_path.read_text()
