"""VQA v2 on cached CLIP grid features: data, BUTD / MCAN models, the official metric, the trainer.

    from clipfeat.trainers.vqa import main, evaluate
    main(["--features", "coco.zarr", "--data", "DATA/vqa", "--recipe", "mcan"])
    evaluate("results.json", "v2_mscoco_val2014_annotations.json").overall
"""

from ..task import Task

__all__ = ["TASK", "VQAScores", "evaluate", "normalize_answer", "main", "VQAConfig"]

TASK = Task(name="vqa", summary="VQA v2: BUTD or MCAN on grid features", package=__name__, default_recipe="butd")


def __getattr__(name: str):
    # Imported on first use: listing the tasks (`clipfeat train --help`) imports no metric
    # dependency and no torch; `from clipfeat.trainers.vqa import evaluate` imports no torch.
    if name in ("VQAScores", "evaluate", "normalize_answer"):
        from . import metric

        return getattr(metric, name)
    if name in ("main", "VQAConfig"):
        from . import train

        return getattr(train, name)
    raise AttributeError(name)
