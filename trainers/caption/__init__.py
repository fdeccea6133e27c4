"""Captioning (COCO, Flickr30k) on cached CLIP grid features: data, the Transformer captioner,
decoding, CIDEr-D for SCST, the pycocoevalcap metrics, the trainer.

    from clipfeat.trainers.caption import main, evaluate
    main(["--features", "coco.zarr", "--data", "DATA/coco"])
    evaluate("results.json", "captions_val2014.json").scores["CIDEr"]
"""

from ..task import Task, lazy_exports

__all__ = ["TASK", "CaptionScores", "evaluate", "main", "CaptionConfig"]

TASK = Task(name="caption", summary="Image captioning (COCO, Flickr30k): Transformer, XE then SCST", package=__name__,
            default_recipe="transformer-xe")


__getattr__ = lazy_exports(__name__, metric=("CaptionScores", "evaluate"), train=("main", "CaptionConfig"))
