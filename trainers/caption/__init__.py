"""Captioning (COCO, Flickr30k) on cached CLIP grid features: data, the Transformer captioner,
decoding, CIDEr-D for SCST, the pycocoevalcap metrics, the trainer.

    from clipfeat.trainers.caption import main, evaluate
    main(["--features", "coco.zarr", "--data", "DATA/coco"])
    evaluate("results.json", "captions_val2014.json").scores["CIDEr"]
"""

from ..task import Task

__all__ = ["TASK", "CaptionScores", "evaluate", "main", "CaptionConfig"]

TASK = Task(name="caption", summary="Image captioning (COCO, Flickr30k): Transformer, XE then SCST", package=__name__,
            default_recipe="transformer-xe")


def __getattr__(name: str):
    # Imported on first use: listing the tasks (`clipfeat train --help`) imports no metric
    # dependency and no torch; `from clipfeat.trainers.caption import evaluate` imports no torch.
    if name in ("CaptionScores", "evaluate"):
        from . import metric

        return getattr(metric, name)
    if name in ("main", "CaptionConfig"):
        from . import train

        return getattr(train, name)
    raise AttributeError(name)
