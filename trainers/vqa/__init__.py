"""VQA v2 on cached CLIP grid features: data, BUTD / MCAN models, the official metric, the trainer.

    from clipfeat.trainers.vqa import main, evaluate
    main(["--features", "coco.zarr", "--data", "DATA/vqa", "--set", "model=mcan"])
    evaluate("results.json", "v2_mscoco_val2014_annotations.json").overall
"""

from .metric import VQAScores, evaluate, normalize_answer

__all__ = ["VQAScores", "evaluate", "normalize_answer", "main", "VQAConfig"]


def __getattr__(name: str):
    # the trainer imports torch; keep `from clipfeat.trainers.vqa import evaluate` light
    if name in ("main", "VQAConfig"):
        from . import train

        return getattr(train, name)
    raise AttributeError(name)
