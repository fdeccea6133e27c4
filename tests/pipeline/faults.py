"""Faults the job tests inject into workers through `ExtractConfig.batch_hook` (see
`clipfeat.pipeline.worker.BatchHook`: hook(k) runs after each batch of shard k is encoded).

A hook runs inside a Ray worker process, which need not be able to import this test module, so
each hook is a closure (cloudpickle sends it by value) that uses only the standard library.
"""

from __future__ import annotations

import os
import signal

from clipfeat.pipeline.worker import BatchHook


def sigkill_once(*, shard: int, marker: str) -> BatchHook:
    """Die as an OOM-killed or preempted worker would (SIGKILL: no cleanup, no exception) the
    first time a batch of `shard` is encoded. Ray restarts the actor with the same hook, so the
    marker file, created atomically, makes it fire once per job."""

    def hook(k: int) -> None:
        if k != shard:
            return
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:  # fired already
            return
        os.kill(os.getpid(), signal.SIGKILL)

    return hook


def raise_in(*, shard: int) -> BatchHook:
    """Raise in every batch of `shard`, as a bug in the worker would: the shard never succeeds."""

    def hook(k: int) -> None:
        if k == shard:
            raise RuntimeError(f"injected fault in shard {k}")

    return hook
