"""A small synthetic dataset in the real COCO, Visual Genome, R2R and Flickr30k on-disk layouts.

Each image is a few simple coloured shapes on a plain background; the captions and VQA-style
questions describe exactly what was drawn, so a trainer can learn something real from
features of these images. Used by the tests, the benchmarks and `make demo`.

Files written (the datasets' own names and JSON schemas):

    COCO root/{train2014,val2014}/COCO_{split}_{id:012d}.jpg
         root/annotations/captions_{split}.json                    (COCO captions format)
         root/dataset_coco.json                                    (Karpathy splits: train2014 -> train,
                                                                    val2014 -> val / test / restval in turn)
         root/v2_OpenEnded_mscoco_{split}_questions.json           (VQA v2 questions)
         root/v2_mscoco_{split}_annotations.json                   (VQA v2 annotations)
    VG   root/image_data.json, root/VG_100K/{id}.jpg, root/VG_100K_2/{id}.jpg
    GQA  (with make_vg's `gqa=DIR`) DIR/{train,val,testdev}_balanced_questions.json about the VG images
    R2R  root/connectivity/{scan}_connectivity.json (poses rotated about z, a non-included
         viewpoint), root/v1/scans/{scan}/matterport_skybox_images/{vp}_skybox{0..5}_sami.jpg
         (one viewpoint per scan as the simulator's {vp}_skybox_small.jpg strip instead)
    Flickr30k root/flickr30k-images/{id}.jpg, root/dataset_flickr30k.json (Karpathy's format and
         splits: train, val, test; five captions an image, written like Flickr30k's)

Sizes and JPEG modes vary like the real sets (landscape/portrait, greyscale and CMYK files, an
EXIF-rotated one), so decoding is exercised the way real data exercises it.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field

__all__ = ["COLORS", "SHAPES", "Scene", "make_coco", "make_flickr30k", "make_matterport", "make_vg", "draw_scene",
           "random_scene", "write_gqa"]

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 210, 40),
    "purple": (140, 60, 170),
    "orange": (245, 140, 30),
}
SHAPES = ("circle", "square", "triangle")
SIZES = ((640, 480), (480, 640), (500, 375), (640, 427), (427, 640), (320, 240), (800, 600))
_NUMBERS = ("zero", "one", "two", "three", "four")


@dataclass
class Scene:
    width: int
    height: int
    background: tuple[int, int, int]
    shapes: list[tuple[str, str, tuple[int, int, int, int]]] = field(default_factory=list)  # (shape, colour, box)

    def captions(self) -> list[str]:
        parts = [f"a {c} {s}" for s, c, _ in self.shapes]
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        n = len(self.shapes)
        return [
            f"{listed} on a plain background",
            f"a picture with {_NUMBERS[n]} {'shape' if n == 1 else 'shapes'}: {listed}",
            f"there is {listed} in this image",
            f"{_NUMBERS[n]} simple {'shape' if n == 1 else 'shapes'} drawn on a flat background",
            f"a drawing of {listed}",
        ]

    def questions(self, rng: random.Random) -> list[tuple[str, str, str]]:
        """(question, answer, answer_type) triples in VQA v2 style: colours, counts, presence."""
        first_shape, first_color, _ = self.shapes[0]
        present = {s for s, _, _ in self.shapes}
        colors = {c for _, c, _ in self.shapes}
        absent = [s for s in SHAPES if s not in present]
        area = {"square": 1.0, "circle": 0.785, "triangle": 0.5}  # of the bounding square
        _, biggest_color, _ = max(self.shapes, key=lambda sh: (sh[2][2] - sh[2][0]) ** 2 * area[sh[0]])
        qs = [
            (f"What color is the {first_shape}?", first_color, "other"),
            ("What color is the biggest shape?", biggest_color, "other"),
            ("How many shapes are there?", str(len(self.shapes)), "number"),
            (f"Is there a {rng.choice(sorted(colors))} shape?", "yes", "yes/no"),
            (f"Is there a {rng.choice([c for c in COLORS if c not in colors])} shape?", "no", "yes/no"),
            (f"Is there a {first_shape} in the picture?", "yes", "yes/no"),
        ]
        if absent:
            qs.append((f"Is there a {rng.choice(absent)} in the picture?", "no", "yes/no"))
        return qs

def random_scene(rng: random.Random, width: int, height: int) -> Scene:
    scene = Scene(width, height, background=tuple(rng.randint(225, 255) for _ in range(3)))
    used: set[str] = set()
    for _ in range(rng.randint(1, 3)):
        shape = rng.choice([s for s in SHAPES if s not in used])  # one of each kind: questions stay unambiguous
        used.add(shape)
        side = rng.randint(min(width, height) // 5, min(width, height) // 2)
        x, y = rng.randint(0, width - side), rng.randint(0, height - side)
        scene.shapes.append((shape, rng.choice(list(COLORS)), (x, y, x + side, y + side)))
    return scene


def draw_scene(scene: Scene):
    """The scene as an RGB PIL image."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (scene.width, scene.height), scene.background)
    d = ImageDraw.Draw(img)
    for shape, colour, (x0, y0, x1, y1) in scene.shapes:
        fill = COLORS[colour]
        if shape == "circle":
            d.ellipse((x0, y0, x1, y1), fill=fill)
        elif shape == "square":
            d.rectangle((x0, y0, x1, y1), fill=fill)
        else:
            d.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)
    return img


def _save_jpeg(img, path: str, variant: str) -> None:
    """Write `img` as a JPEG in one of the modes real datasets contain."""
    from PIL import Image

    if variant == "grey":
        img.convert("L").save(path, quality=90)
    elif variant == "cmyk":
        img.convert("CMYK").save(path, quality=90)
    elif variant == "exif-rotated":
        # Stored sideways with EXIF orientation 6 ("rotate 90° CW to display"): a decoder
        # that ignores EXIF sees a portrait image where the scene is landscape.
        exif = Image.Exif()
        exif[0x0112] = 6
        img.transpose(Image.Transpose.ROTATE_90).save(path, quality=90, exif=exif)
    else:
        img.save(path, quality=90)


def _variant(i: int) -> str:
    return {3: "grey", 7: "cmyk", 11: "exif-rotated"}.get(i % 16, "rgb")


def make_coco(
    root: str | os.PathLike,
    *,
    splits: dict[str, int] | None = None,
    seed: int = 0,
    sizes: tuple[tuple[int, int], ...] = SIZES,
) -> dict[str, list[int]]:
    """Write a COCO-2014-layout dataset under `root`; returns split -> image ids.

    splits: images per split folder (default train2014: 48, val2014: 16).
    """
    root = os.fspath(root)
    splits = splits or {"train2014": 48, "val2014": 16}
    rng = random.Random(seed)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    out: dict[str, list[int]] = {}
    karpathy: list[dict] = []
    next_id, qid, ann_id = 9, 1, 1
    for split, count in splits.items():
        os.makedirs(os.path.join(root, split), exist_ok=True)
        images, captions, questions, answers = [], [], [], []
        out[split] = []
        for i in range(count):
            image_id = next_id
            next_id += rng.randint(1, 40)  # sparse ids, like COCO's
            w, h = sizes[rng.randrange(len(sizes))]
            scene = random_scene(rng, w, h)
            name = f"COCO_{split}_{image_id:012d}.jpg"
            _save_jpeg(draw_scene(scene), os.path.join(root, split, name), _variant(i))
            images.append({"id": image_id, "file_name": name, "width": w, "height": h})
            sentences = []
            for c in scene.captions():
                captions.append({"id": ann_id, "image_id": image_id, "caption": c})
                sentences.append({"raw": c, "tokens": _tokens(c),
                                  "imgid": len(karpathy), "sentid": ann_id})
                ann_id += 1
            karpathy.append({"filepath": split, "filename": name, "imgid": len(karpathy), "cocoid": image_id,
                             "split": _karpathy_split(split, i), "sentences": sentences,
                             "sentids": [x["sentid"] for x in sentences]})
            for q, a, atype in scene.questions(rng):
                questions.append({"image_id": image_id, "question": q, "question_id": qid})
                answers.append(_vqa_annotation(image_id, qid, q, a, atype, rng))
                qid += 1
            out[split].append(image_id)
        _dump(os.path.join(root, "annotations", f"captions_{split}.json"), {
            "info": {"description": "clipfeat synthetic COCO"}, "licenses": [], "images": images,
            "annotations": captions,
        })
        _dump(os.path.join(root, f"v2_OpenEnded_mscoco_{split}_questions.json"), {
            "info": {"description": "clipfeat synthetic VQA"}, "task_type": "Open-Ended", "data_type": "mscoco",
            "data_subtype": split, "license": {}, "questions": questions,
        })
        _dump(os.path.join(root, f"v2_mscoco_{split}_annotations.json"), {
            "info": {"description": "clipfeat synthetic VQA"}, "data_type": "mscoco", "data_subtype": split,
            "license": {}, "annotations": answers,
        })
    _dump(os.path.join(root, "dataset_coco.json"), {"dataset": "coco", "images": karpathy})
    return out


def _tokens(caption: str) -> list[str]:
    """Karpathy's tokens of a caption: lowercased words, punctuation dropped."""
    return caption.lower().replace(",", "").replace(":", "").replace(".", "").split()


def _karpathy_split(folder: str, i: int) -> str:
    # Karpathy's split: train2014 is train; val2014 gives 5,000 val, 5,000 test, the rest restval.
    return "train" if folder.startswith("train") else ("val", "test", "restval")[i % 3]


def _vqa_annotation(image_id: int, qid: int, question: str, answer: str, answer_type: str, rng: random.Random) -> dict:
    words = question.split()
    qtype = " ".join(words[:3]).lower().rstrip("?") if answer_type == "other" else " ".join(words[:2]).lower()
    # Ten annotators, as in VQA v2; about one question in four has 1-3 dissenters, so the
    # soft scores (0.3, 0.6, 0.9) and the leave-one-out metric see real disagreement.
    given = [answer] * 10
    if rng.random() < 0.25:
        for j in rng.sample(range(10), rng.randint(1, 3)):
            given[j] = _dissent(answer, answer_type, rng)
    return {
        "question_id": qid, "image_id": image_id, "question_type": qtype, "answer_type": answer_type,
        "multiple_choice_answer": answer,
        "answers": [{"answer": a, "answer_confidence": rng.choice(["yes", "yes", "maybe"]), "answer_id": j + 1}
                    for j, a in enumerate(given)],
    }


def _dissent(answer: str, answer_type: str, rng: random.Random) -> str:
    if answer_type == "yes/no":
        return "no" if answer == "yes" else "yes"
    if answer_type == "number":
        return rng.choice([str(int(answer) + 1), _NUMBERS[int(answer)]])  # off by one, or the word ("two")
    return rng.choice([c for c in COLORS if c != answer] + [f"{answer}ish", answer.upper()])


def make_vg(root: str | os.PathLike, *, count: int = 24, seed: int = 1, sizes: tuple[tuple[int, int], ...] = SIZES,
            gqa: str | os.PathLike | None = None) -> list[int]:
    """Write a Visual Genome layout under `root` (image_data.json + VG_100K{,_2}/); returns ids.
    gqa: also write GQA's balanced question files about these images into that folder."""
    root = os.fspath(root)
    rng = random.Random(seed)
    entries, ids, scenes = [], [], {}
    for part in ("VG_100K", "VG_100K_2"):
        os.makedirs(os.path.join(root, part), exist_ok=True)
    for i in range(count):
        image_id = i + 1 if i < count // 2 else 2_300_000 + i  # VG's two id ranges
        part = "VG_100K_2" if i % 3 == 0 else "VG_100K"
        w, h = sizes[rng.randrange(len(sizes))]
        scenes[image_id] = random_scene(rng, w, h)
        _save_jpeg(draw_scene(scenes[image_id]), os.path.join(root, part, f"{image_id}.jpg"), _variant(i))
        entries.append({
            "width": w, "height": h, "image_id": image_id, "flickr_id": None,
            "url": f"https://cs.stanford.edu/people/rak248/{part}/{image_id}.jpg",
            "coco_id": 9 + i if i % 4 == 0 else None,
        })
        ids.append(image_id)
    _dump(os.path.join(root, "image_data.json"), entries)
    if gqa is not None:
        write_gqa(gqa, scenes, seed=seed + 3)
    return ids


def make_flickr30k(root: str | os.PathLike, *, n_images: int = 36, seed: int = 3,
                   sizes: tuple[tuple[int, int], ...] = SIZES) -> dict[str, list[int]]:
    """Write a Flickr30k layout under `root`; returns Karpathy split -> image ids.

    Ids are sparse and of mixed length, like Flickr's (36979, 1000092795); one image in six is
    val, one in six test, the rest train. Captions are written as Flickr30k's are ("A red
    circle and a blue square on a plain background."); their Karpathy tokens are lowercased
    words without punctuation.
    """
    root = os.fspath(root)
    rng = random.Random(seed)
    os.makedirs(os.path.join(root, "flickr30k-images"), exist_ok=True)
    ids: dict[int, None] = {}  # in the file's order, which is not the ids' order
    while len(ids) < n_images:
        ids[int(10 ** rng.uniform(4.5, 10))] = None  # 5 to 10 digits
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    images, sentid = [], 0
    for i, image_id in enumerate(ids):
        w, h = sizes[rng.randrange(len(sizes))]
        scene = random_scene(rng, w, h)
        name = f"{image_id}.jpg"
        _save_jpeg(draw_scene(scene), os.path.join(root, "flickr30k-images", name), _variant(i))
        split = {4: "val", 5: "test"}.get(i % 6, "train")
        sentences = []
        for c in scene.captions():
            raw = c[0].upper() + c[1:] + "."
            sentences.append({"tokens": _tokens(raw), "raw": raw, "imgid": i, "sentid": sentid})
            sentid += 1
        images.append({"filename": name, "imgid": i, "sentids": [s["sentid"] for s in sentences], "split": split,
                       "sentences": sentences})
        out[split].append(image_id)
    _dump(os.path.join(root, "dataset_flickr30k.json"), {"images": images, "dataset": "flickr30k"})
    return out


def make_matterport(root: str | os.PathLike, *, scans: int = 2, viewpoints: int = 4, face_size: int = 64,
                    seed: int = 2) -> dict[str, list[str]]:
    """Write an R2R / Matterport layout under `root`; returns scan -> included viewpoint ids.

    Viewpoints stand on a line 2 m apart, all connected in sequence; each pose is a rotation
    about z (a different angle per viewpoint) plus the position, as Matterport's poses are.
    Faces are flat colours with a few shapes (face i has i + 1 of them), so a person can tell
    them apart in rendered views; the geometry tests build their scenes analytically.
    """
    import math

    from PIL import Image, ImageDraw

    root = os.fspath(root)
    rng = random.Random(seed)
    os.makedirs(os.path.join(root, "connectivity"), exist_ok=True)
    out: dict[str, list[str]] = {}
    for s in range(scans):
        scan = f"{rng.getrandbits(40):010x}"[:11]
        folder = os.path.join(root, "v1", "scans", scan, "matterport_skybox_images")
        os.makedirs(folder, exist_ok=True)
        names = [f"{rng.getrandbits(128):032x}" for _ in range(viewpoints + 1)]
        entries = []
        for i, vp in enumerate(names):
            a = math.radians(rng.uniform(0, 360))
            pose = [math.cos(a), -math.sin(a), 0.0, 2.0 * i, math.sin(a), math.cos(a), 0.0, 0.5 * s, 0.0, 0.0, 1.0, 1.5,
                    0.0, 0.0, 0.0, 1.0]
            included = i < viewpoints  # the last one is not included: it must not become a row
            link = [included and j < viewpoints and abs(i - j) == 1 for j in range(len(names))]
            entries.append({"image_id": vp, "pose": pose, "included": included, "visible": link, "unobstructed": link,
                            "height": 1.5})
            if not included:
                continue
            faces = []
            for f in range(6):
                img = Image.new("RGB", (face_size, face_size), tuple(rng.randint(40, 220) for _ in range(3)))
                d = ImageDraw.Draw(img)
                for k in range(f + 1):
                    x = face_size * (k + 1) // (f + 2)
                    d.ellipse((x - 4, face_size // 2 - 4, x + 4, face_size // 2 + 4), fill=(255, 255, 255))
                faces.append(img)
            if i == viewpoints - 1:  # the simulator's downsized strip: six faces side by side
                strip = Image.new("RGB", (6 * face_size, face_size))
                for f, img in enumerate(faces):
                    strip.paste(img, (f * face_size, 0))
                strip.save(os.path.join(folder, f"{vp}_skybox_small.jpg"), quality=90)
            else:
                for f, img in enumerate(faces):
                    img.save(os.path.join(folder, f"{vp}_skybox{f}_sami.jpg"), quality=90)
        _dump(os.path.join(root, "connectivity", f"{scan}_connectivity.json"), entries)
        out[scan] = names[:viewpoints]
    return out


def _dump(path: str, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f)


# GQA question types of the synthetic questions, by their VQA answer type and wording:
# (structural, semantic, detailed), as GQA's `types` field names them.
_GQA_TYPES = {"color": ("query", "attr", "color"), "number": ("query", "obj", "count"),
              "yes/no": ("verify", "obj", "exist"), "choose": ("choose", "attr", "chooseAttr")}


def write_gqa(out: str | os.PathLike, scenes: dict[int, Scene], *, seed: int = 4) -> dict[str, list[str]]:
    """Write GQA's balanced question files for Visual Genome images `scenes` (image id -> the
    scene drawn) into `out`: {train,val,testdev}_balanced_questions.json, an image's questions
    in one split (two thirds train, a sixth each val and testdev); returns split -> question ids.

    Records carry GQA's fields (imageId as a string, question, answer, fullAnswer, types
    {structural, semantic, detailed}, isBalanced, groups, equivalent, entailed, semantic,
    annotations); ids are GQA-like strings with leading zeros. Besides the VQA-style questions of
    the scene, each image gets a "choose" question ("Is the circle red or blue?": binary in
    GQA's metric though its answer is a word)."""
    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    rng = random.Random(seed)
    files: dict[str, dict] = {"train": {}, "val": {}, "testdev": {}}
    n = 0
    for i, (image_id, scene) in enumerate(sorted(scenes.items())):
        split = "val" if i % 6 == 1 else "testdev" if i % 6 == 4 else "train"
        shape, color, _ = scene.shapes[0]
        other = rng.choice([c for c in COLORS if c != color])
        pair = [color, other] if rng.random() < 0.5 else [other, color]
        qs = [(q, a, "color" if t == "other" else t) for q, a, t in scene.questions(rng)]
        qs.append((f"Is the {shape} {pair[0]} or {pair[1]}?", color, "choose"))
        for question, answer, kind in qs:
            structural, semantic, detailed = _GQA_TYPES[kind]
            qid = f"{n:08d}" if n % 3 else f"{20_000_000 + n}"  # GQA mixes zero-padded and plain ids
            n += 1
            files[split][qid] = {
                "semantic": [], "entailed": [], "equivalent": [qid], "question": question, "imageId": str(image_id),
                "isBalanced": True, "groups": {"global": None, "local": f"{structural}-{detailed}"}, "answer": answer,
                "semanticStr": "", "annotations": {"answer": {}, "question": {}, "fullAnswer": {}},
                "types": {"structural": structural, "semantic": semantic, "detailed": detailed},
                "fullAnswer": f"The answer is {answer}.",
            }
    for split, questions in files.items():
        _dump(os.path.join(out, f"{split}_balanced_questions.json"), questions)
    return {split: list(q) for split, q in files.items()}
