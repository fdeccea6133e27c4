"""A write lock inside the store, so two jobs never write one store at once.

The lock is the object `clipfeat.lock` at the store root, holding who took it. Local stores
create it atomically (O_EXCL); on object stores (s3, gcs) creation is check-then-write, which
catches the usual mistake (starting a job twice) but not a race within milliseconds.
A lock left by a dead process on this host (a killed job) is stale: it is taken over, so
rerunning a killed job resumes it. A lock from another host cannot be checked and is refused
with how to clear it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time

from .errors import StoreLockedError
from .location import Location

__all__ = ["StoreLock", "LOCK_KEY"]

LOCK_KEY = "clipfeat.lock"
log = logging.getLogger("clipfeat.lock")


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
        for attempt in range(2):
            if self._try_create():
                self.held = True
                return
            if attempt == 0 and self._stale():
                log.warning("taking over the stale write lock of a dead job in %s", self.loc.url)
                self.loc.fs.rm_file(self.loc.path(LOCK_KEY))
                continue
            self._refuse()

    def _try_create(self) -> bool:
        path = self.loc.path(LOCK_KEY)
        blob = json.dumps(self._info()).encode()
        if self.loc.local:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            return True
        if self.loc.fs.exists(path):
            return False
        self.loc.fs.pipe_file(path, blob)
        return True

    def _holder(self) -> dict:
        try:
            return json.loads(self.loc.fs.cat_file(self.loc.path(LOCK_KEY)))
        except Exception:  # noqa: BLE001 - unreadable lock: treat the holder as unknown
            return {}

    def _stale(self) -> bool:
        """The holder was a process on this host that no longer runs."""
        info = self._holder()
        pid = info.get("pid")
        return info.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid)

    def _refuse(self) -> None:
        where = self.loc.path(LOCK_KEY)
        info = self._holder()
        host, pid, since = info.get("host", "?"), info.get("pid", -1), info.get("since", "?")
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
