"""GQA on cached CLIP grid features of Visual Genome images: the balanced question files, the
VQA models (BUTD / MCAN) reused, GQA's accuracy (exact match, binary / open), the trainer.

    from clipfeat.trainers.gqa import main, evaluate
    main(["--features", "vg.zarr", "--data", "DATA/gqa"])
    evaluate("predictions_testdev.json", "testdev_balanced_questions.json").accuracy
"""

from ..task import Task, lazy_exports

__all__ = ["TASK", "GQAScores", "evaluate", "main", "GQAConfig"]

TASK = Task(name="gqa", summary="GQA (balanced) on Visual Genome grid features: the VQA models", package=__name__,
            default_recipe="butd")


__getattr__ = lazy_exports(__name__, metric=("GQAScores", "evaluate"), train=("main", "GQAConfig"))
