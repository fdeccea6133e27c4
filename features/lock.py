"""A write lock inside the store, so two jobs never write one store at once.

The lock is the object `clipfeat.lock` at the store root, holding who took it. Local stores
create it atomically (O_EXCL); on object stores (s3, gcs) creation is check-then-write, which
catches the usual mistake (starting a job twice) but not a race within milliseconds.
A lock left by a dead process on this host is reported as stale, with how to clear it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

from .errors import StoreLockedError
from .location import Location

__all__ = ["StoreLock", "LOCK_KEY"]

LOCK_KEY = "clipfeat.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class StoreLock:
    def __init__(self, loc: Location) -> None:
        self.loc = loc
        self.held = False

    def _info(self) -> dict:
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(sys.argv),
        }

    def acquire(self) -> None:
        path = self.loc.path(LOCK_KEY)
        blob = json.dumps(self._info()).encode()
        if self.loc.local:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._refuse()
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
        else:
            if self.loc.fs.exists(path):
                self._refuse()
            self.loc.fs.pipe_file(path, blob)
        self.held = True

    def _refuse(self) -> None:
        where = self.loc.path(LOCK_KEY)
        try:
            info = json.loads(self.loc.fs.cat_file(where))
        except Exception:
            info = {}
        host, pid, since = info.get("host", "?"), info.get("pid", -1), info.get("since", "?")
        if host == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
            raise StoreLockedError(
                f"{self.loc.url} has a stale write lock from pid {pid} on {host} (no longer running); "
                f"if no job is writing the store, delete {where} and rerun"
            )
        raise StoreLockedError(
            f"{self.loc.url} is being written by pid {pid} on {host} since {since}; wait for that job, "
            f"or if it is gone delete {where}"
        )

    def release(self) -> None:
        if self.held:
            try:
                self.loc.fs.rm_file(self.loc.path(LOCK_KEY))
            except FileNotFoundError:
                pass
            self.held = False
