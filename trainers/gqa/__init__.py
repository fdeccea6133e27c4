"""GQA on cached CLIP grid features of Visual Genome images: the balanced question files, the
VQA models (BUTD / MCAN) reused, GQA's accuracy (exact match, binary / open), the trainer.

    from clipfeat.trainers.gqa import main, evaluate
    main(["--features", "vg.zarr", "--data", "DATA/gqa"])
    evaluate("predictions_testdev.json", "testdev_balanced_questions.json").accuracy
"""

from ..task import Task

__all__ = ["TASK", "GQAScores", "evaluate", "main", "GQAConfig"]

TASK = Task(name="gqa", summary="GQA (balanced) on Visual Genome grid features: the VQA models", package=__name__,
            default_recipe="butd")


def __getattr__(name: str):
    # Imported on first use: listing the tasks (`clipfeat train --help`) imports no metric
    # dependency and no torch; `from clipfeat.trainers.gqa import evaluate` imports no torch.
    if name in ("GQAScores", "evaluate"):
        from . import metric

        return getattr(metric, name)
    if name in ("main", "GQAConfig"):
        from . import train

        return getattr(train, name)
    raise AttributeError(name)
