"""COCO and Flickr30k captions over a feature store: the annotation files, the vocabulary,
batches of images.

Two sources (`--data`):
  * Karpathy's splits, `dataset_coco.json` or `dataset_flickr30k.json` (the file, or a folder
    holding one of them):
        {"dataset": "coco", "images": [{"split": train|restval|val|test, "filepath", "filename",
                                        "cocoid", "sentences": [{"raw", "tokens"}]}]}
        {"dataset": "flickr30k", "images": [{"split": train|val|test, "filename": "1000092795.jpg",
                                             "sentences": [{"raw", "tokens"}]}]}
    An image's store key is its `cocoid` (COCO), or the file name's integer stem (Flickr30k,
    as `clipfeat extract --dataset flickr30k` keys it).
  * the official files `annotations/captions_{train,val}2014.json` (COCO captions format),
    each file a split named after it (train2014, val2014), or regrouped by `split_file`, a JSON
    object {split name: [COCO image ids]} (e.g. Karpathy's split as id lists).

Samples are images (store rows; key = the image id); a training batch reads each image once
and trains on `seq_per_img` of its captions, so the encoder runs once per image.

Token ids: PAD 0, BOS 1, EOS 2, UNK 3, then the words with count >= min_count in the training
captions (most frequent first). A caption is stored as [L] = max_len words (cut), EOS, PAD….
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from clipfeat.features import FeatureStore

from ..config import ConfigError
from ..grids import RowBatches, Vocab, read_grids, store_rows
from .metric import simple_tokenize

__all__ = ["BOS", "EOS", "KARPATHY_FILES", "PAD", "UNK", "Batches", "CaptionSplit", "RawSplit", "WordIds", "build_vocab",
           "encode_split", "load_splits", "pick_splits"]

KARPATHY_FILES = ("dataset_coco.json", "dataset_flickr30k.json")  # the Karpathy split files read
PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]


@dataclass
class RawSplit:
    name: str
    image_ids: list[int]
    raw: list[list[str]]  # reference captions per image, as written (the metric tokenises them)
    tokens: list[list[list[str]]]  # the same, tokenised (Karpathy's tokens, or simple_tokenize)


def load_splits(data: str | Path, split_file: str = "") -> dict[str, RawSplit]:
    """All splits of the source at `data` (see the module docstring), by name."""
    path = Path(data)
    found = [path] if path.is_file() else [path / n for n in KARPATHY_FILES if (path / n).is_file()]
    if len(found) > 1:
        raise ConfigError(f"{data} holds both {' and '.join(KARPATHY_FILES)}; point --data at one of them")
    if found:
        if split_file:
            raise ConfigError(f"split_file regroups the official captions files; {found[0].name} has its own splits")
        return _karpathy(found[0])
    files = sorted(path.glob("annotations/captions_*.json")) + sorted(path.glob("captions_*.json"))
    if not files:
        raise ConfigError(f"{data}: no dataset_coco.json or dataset_flickr30k.json (Karpathy splits) and no "
                          "annotations/captions_*.json; point --data at one of them")
    per_file = {f.stem.removeprefix("captions_"): _coco_captions(f) for f in files}
    if not split_file:
        return {name: _raw(name, refs) for name, refs in per_file.items()}
    try:
        groups = json.loads(Path(split_file).read_text())
        groups = {str(k): [int(i) for i in v] for k, v in groups.items()}
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise ConfigError(f"split_file {split_file}: expected a JSON object {{split: [image ids]}} ({e})") from None
    refs = {i: caps for part in per_file.values() for i, caps in part.items()}
    out = {}
    for name, ids in groups.items():
        missing = [i for i in ids if i not in refs]
        if missing:
            raise ConfigError(f"split_file: {len(missing)} ids of split {name} have no captions in {data}, e.g. {missing[0]}")
        out[name] = _raw(name, {i: refs[i] for i in ids})
    return out


def _karpathy(path: Path) -> dict[str, RawSplit]:
    try:
        data = json.loads(path.read_text())
        flickr = data.get("dataset", path.stem.removeprefix("dataset_")) == "flickr30k"  # else COCO
        by_split: dict[str, list[dict]] = {}
        for im in data["images"]:
            by_split.setdefault(im["split"], []).append(im)
        return {
            name: RawSplit(name, [int(Path(im["filename"]).stem) if flickr else int(im["cocoid"]) for im in ims],
                           [[s["raw"] for s in im["sentences"]] for im in ims],
                           [[list(s["tokens"]) for s in im["sentences"]] for im in ims])
            for name, ims in by_split.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # JSONDecodeError is a ValueError
        raise ConfigError(f"{path} is not in Karpathy's dataset_coco.json / dataset_flickr30k.json format ({e!r})") from None


def _coco_captions(path: Path) -> dict[int, list[str]]:
    try:
        refs: dict[int, list[str]] = {}
        for a in json.loads(path.read_text())["annotations"]:
            refs.setdefault(int(a["image_id"]), []).append(a["caption"])
        return refs
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is not in the COCO captions format ({e!r})") from None


def _raw(name: str, refs: dict[int, list[str]]) -> RawSplit:
    ids = sorted(refs)
    return RawSplit(name, ids, [refs[i] for i in ids], [[simple_tokenize(c) for c in refs[i]] for i in ids])


def pick_splits(splits: dict[str, RawSplit], names: Sequence[str], what: str) -> RawSplit:
    """The named splits merged into one (train + restval), with an error naming what exists."""
    missing = [n for n in names if n not in splits]
    if missing:
        raise ConfigError(f"{what}: split {missing[0]!r} is not in the data; it has {', '.join(sorted(splits))}")
    parts = [splits[n] for n in names]
    return RawSplit("+".join(names), [i for p in parts for i in p.image_ids], [r for p in parts for r in p.raw],
                    [t for p in parts for t in p.tokens])


def build_vocab(train: RawSplit, min_count: int = 5) -> Vocab:
    counts = Counter(w for caps in train.tokens for c in caps for w in c)
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    if not words:
        raise ConfigError(f"no word occurs {min_count}+ times in the training captions; lower --set min_word_count")
    return Vocab(SPECIALS + words)


class WordIds:
    """Ids for CIDEr: the vocabulary's ids for its words, fresh ids (never emitted by the model)
    for every other reference word, so a rare reference word counts as itself, not as UNK."""

    def __init__(self, vocab: Vocab) -> None:
        self.itos = list(vocab.itos)
        self.stoi = dict(vocab.stoi)
        for s in SPECIALS:  # a reference word spelled like a special token is still a word
            del self.stoi[s]

    def __call__(self, words: Sequence[str]) -> list[int]:
        out = []
        for w in words:
            i = self.stoi.get(w)
            if i is None:
                i = self.stoi[w] = len(self.itos)
                self.itos.append(w)
            out.append(i)
        return out


@dataclass
class CaptionSplit:
    """A split encoded against the store and the vocabulary; arrays indexed by image."""

    name: str
    image_ids: np.ndarray  # [I] int64 image ids (COCO ids, Flickr30k file stems)
    rows: np.ndarray  # [I] int64 store rows
    raw: list[list[str]]  # reference captions per image (for the metric and the results file)
    refs: list[list[list[int]]]  # references as WordIds ids (full length, for CIDEr)
    cap_ptr: np.ndarray  # [I+1] CSR offsets into caps
    caps: np.ndarray  # [C, max_len+1] int64 training targets: words, EOS, PAD
    skipped: int  # images dropped because they have no features in the store

    def __len__(self) -> int:
        return len(self.image_ids)


def encode_split(raw: RawSplit, store: FeatureStore, vocab: Vocab, word_ids: WordIds, *, max_len: int,
                 strict: bool) -> CaptionSplit:
    """Map images to store rows and captions to ids. Images not in the store (or failed / not
    yet extracted) are counted and skipped, or fail with `strict`."""
    keep, rows = store_rows(store, raw.image_ids)
    skipped = len(raw.image_ids) - len(keep)
    if skipped and strict:
        raise ConfigError(f"{skipped} of {len(raw.image_ids)} {raw.name} images have no features in {store.url}; "
                          "extract them or drop --strict to skip them")
    caps = [c for j in keep for c in raw.tokens[j]]
    arr = np.zeros((len(caps), max_len + 1), dtype=np.int64)
    for k, words in enumerate(caps):
        ids = [vocab.stoi.get(w, UNK) for w in words[:max_len]]
        arr[k, : len(ids)] = ids
        arr[k, len(ids)] = EOS
    return CaptionSplit(
        name=raw.name,
        image_ids=np.array([raw.image_ids[j] for j in keep], dtype=np.int64),
        rows=rows,
        raw=[raw.raw[j] for j in keep],
        refs=[[word_ids(c) for c in raw.tokens[j]] for j in keep],
        cap_ptr=np.concatenate([[0], np.cumsum([len(raw.tokens[j]) for j in keep])]).astype(np.int64),
        caps=arr,
        skipped=skipped,
    )


class Batches(RowBatches):
    """Batches of images: {"idx" [B], "grid" [B, N, C] f16, "mask" [B, N] | None, "pos" [B, N, 4],
    "pooled" [B, D] (with `pooled`), and for training "captions" [B, S, L]}: S = seq_per_img
    captions per image, drawn without replacement (cycled when an image has fewer).

    Training order: `shard_shuffle` over the images' rows; captions drawn by a generator seeded
    with (seed, epoch): an epoch's batches are a function of (seed, epoch), so resume is exact.
    """

    def __init__(self, split: CaptionSplit, store: FeatureStore, *, batch_size: int, shuffle: bool,
                 seq_per_img: int = 5, seed: int = 0, buffer_shards: int = 4, pooled: bool = False) -> None:
        super().__init__(split, store, batch_size=batch_size, shuffle=shuffle, seed=seed, buffer_shards=buffer_shards)
        self.seq_per_img, self.pooled = seq_per_img, pooled

    def __call__(self, epoch: int = 0) -> Iterator[dict]:
        order = self.order(epoch)
        rng = np.random.default_rng([self.seed, epoch]) if self.shuffle else None
        for s in range(0, len(order), self.batch_size):
            yield self.load(order[s : s + self.batch_size], rng)

    def load(self, idx: np.ndarray, rng: np.random.Generator | None = None) -> dict:
        batch = {"idx": torch.from_numpy(idx), **read_grids(self.store, self.split.rows[idx], pooled=self.pooled)}
        if rng is not None:
            batch["captions"] = torch.from_numpy(self._captions(idx, rng))
        return batch

    def _captions(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        sp, S = self.split, self.seq_per_img
        picks = []
        for i in idx:
            start, n = sp.cap_ptr[i], sp.cap_ptr[i + 1] - sp.cap_ptr[i]
            perm = rng.permutation(n)
            picks.append(start + np.resize(perm, S))  # without replacement; cycled if n < S
        return sp.caps[np.stack(picks)]  # [B, S, L]
