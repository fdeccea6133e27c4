"""COCO captioning on cached CLIP grid features: data, the Transformer captioner, decoding,
CIDEr-D for SCST, the pycocoevalcap metrics, the trainer.

    from clipfeat.trainers.caption import main, evaluate
    main(["--features", "coco.zarr", "--data", "DATA/coco"])
    evaluate("results.json", "captions_val2014.json").scores["CIDEr"]
"""

from .metric import CaptionScores, evaluate

__all__ = ["CaptionScores", "evaluate", "main", "CaptionConfig"]


def __getattr__(name: str):
    # the trainer imports torch; keep `from clipfeat.trainers.caption import evaluate` light
    if name in ("main", "CaptionConfig"):
        from . import train

        return getattr(train, name)
    raise AttributeError(name)
