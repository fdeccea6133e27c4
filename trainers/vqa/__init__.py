"""VQA v2 on cached CLIP grid features: data, BUTD / MCAN models, the official metric, the trainer.

    from clipfeat.trainers.vqa import main, evaluate
    main(["--features", "coco.zarr", "--data", "DATA/vqa", "--recipe", "mcan-small"])
    evaluate("results.json", "v2_mscoco_val2014_annotations.json").overall
"""

from ..task import Task, lazy_exports

__all__ = ["TASK", "VQAScores", "evaluate", "normalize_answer", "main", "VQAConfig"]

TASK = Task(name="vqa", summary="VQA v2: BUTD or MCAN on grid features", package=__name__, default_recipe="butd-clipfeat")


__getattr__ = lazy_exports(__name__, metric=("VQAScores", "evaluate", "normalize_answer"), train=("main", "VQAConfig"))
