"""R2R navigation on cached panorama features: graphs, a batched environment, the EnvDrop-style
follower, the official metrics, the trainer, and a synthetic task for tests and the demo.

    from clipfeat.trainers.nav import main, evaluate
    main(["--features", "r2r.zarr", "--data", "DATA/r2r"])
    evaluate("results.json", "DATA/r2r/R2R_val_unseen.json", "DATA/r2r/connectivity").success_rate
"""

from ..task import Task

__all__ = ["TASK", "NavScores", "evaluate", "main", "NavConfig"]

TASK = Task(name="nav", summary="R2R navigation: an EnvDrop-style follower on 36-view panoramas", package=__name__,
            default_recipe="follower")


def __getattr__(name: str):
    # Imported on first use: listing the tasks (`clipfeat train --help`) imports no metric
    # dependency and no torch; `from clipfeat.trainers.nav import evaluate` imports no torch.
    if name in ("NavScores", "evaluate"):
        from . import metric

        return getattr(metric, name)
    if name in ("main", "NavConfig"):
        from . import train

        return getattr(train, name)
    raise AttributeError(name)
