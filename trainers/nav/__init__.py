"""R2R navigation on cached panorama features: graphs, a batched environment, the EnvDrop-style
follower, the official metrics, the trainer, and a synthetic task for tests and the demo.

    from clipfeat.trainers.nav import main, evaluate
    main(["--features", "r2r.zarr", "--data", "DATA/r2r"])
    evaluate("results.json", "DATA/r2r/R2R_val_unseen.json", "DATA/r2r/connectivity").success_rate
"""

from ..task import Task, lazy_exports

__all__ = ["TASK", "NavScores", "evaluate", "main", "NavConfig"]

TASK = Task(name="nav", summary="R2R navigation: an EnvDrop-style follower on 36-view panoramas", package=__name__,
            default_recipe="follower")


__getattr__ = lazy_exports(__name__, metric=("NavScores", "evaluate"), train=("main", "NavConfig"))
