"""`metric`: the COCO caption evaluation (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SPICE).

Scores come from the `pycocoevalcap` package's own scorers (`Bleu`, `Meteor`, `Rouge`, `Cider`,
`Spice`, after its `PTBTokenizer`), called directly instead of through `COCOEvalCap`, which
needs pycocotools. The semantics are COCOEvalCap's as it is used for published numbers: the
evaluated images are those of the results (one caption each), the references are every
annotation of those images, and scores are keyed with COCOEvalCap's names (`Bleu_1`..`Bleu_4`,
`METEOR`, `ROUGE_L`, `CIDEr`, `SPICE`), as fractions (0.365, quoted as 36.5). `CIDEr` is
pycocoevalcap's `Cider`, i.e. CIDEr-D; its idf is computed over the references of the evaluated
images, so it depends on the evaluated set (a single image always scores 0).

Java decides what can be computed:

- With `java` on PATH, captions are tokenised by Stanford's PTBTokenizer (one java process for
  references and results together) and METEOR is computed, as in the official evaluation.
- Without it, BLEU, ROUGE-L and CIDEr are computed on `simple_tokenize`, a pure-Python tokeniser
  that gives PTBTokenizer's output for ordinary captions; `notes` says so. Numbers are then close
  to, not identical with, published ones.
- SPICE also needs Stanford CoreNLP 3.6.0, which pycocoevalcap downloads on first use; it is
  used only when the jars are already there (see `spice_available`), never downloaded here.

Deliberate departures from COCOEvalCap, which would crash with an assertion or silently misalign
captions: malformed inputs, duplicate result image ids and result images without references raise
a one-line `ValueError` saying what to fix; line breaks inside captions (\\r, \\u2028, form feed,
...), which Java reads as new lines and which would shift every later caption onto the wrong
image, are turned into spaces before PTB tokenisation; a failing optional scorer (METEOR, SPICE)
is reported in `notes` and logged instead of aborting or hanging the evaluation; per-image SPICE
scores are matched to images by id (COCOEvalCap pairs Spice's sorted order with its own).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any

from ..files import load_json

__all__ = [
    "CaptionScores",
    "evaluate",
    "format_scores",
    "simple_tokenize",
    "load_references",
    "java_available",
    "spice_available",
]

log = logging.getLogger(__name__)

METRICS: tuple[str, ...] = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")

# pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS (1.2), reproduced so that `simple_tokenize`
# does not need the package; a test checks they are equal. Applied after `-lowerCase`, so the
# upper-case bracket tokens never match: PTB's "(" stays in the output as "-lrb-".
PTB_PUNCTUATION: tuple[str, ...] = (
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";",
)  # fmt: skip

_RESULTS_FORMAT = 'expected the COCO caption results format: [{"image_id": int, "caption": str}, ...]'
_ANNOTATIONS_FORMAT = (
    'expected the COCO captions format {"images": [...], "annotations": [{"image_id": int, "caption": str, "id": int},'
    " ...]} (a captions_*.json file or its dict) or references {image_id: [caption, ...]}"
)
_SPICE_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
SPICE_SETUP_COMMAND = "python -m pycocoevalcap.spice.get_stanford_models"

JsonSource = str | os.PathLike[str]  # a path to a JSON file


# ---------------------------------------------------------------------------------------------
# The simple tokeniser
# ---------------------------------------------------------------------------------------------

# Kept with their period by PTBTokenizer, even at the end of a caption ("main st." -> "main st."),
# as Stanford PTBTokenizer 3.4.1 was found to do; a test checks them against it when Java is here.
_ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr drs prof profs sen sens rep reps atty lt col gen messrs gov govs adm rev maj sgt cpl pvt capt st ste
    ave pres lieut hon brig cmdr comdr pfc spc supt det mme mlle inc co cos corp pty ltd plc dept bhd assn univ intl sys
    tel est ext sq jr sr bros blvd rd esq etc vs ft mt ph.d jan feb mar apr jun jul aug sep sept oct nov dec
    mon tue tues wed thu thurs fri calif penn ala ariz colo conn ct dak fla ga ind kan kans ky md mich minn mont neb nev
    okla tenn va vt wis wisc wyo
""".split()
)
_NUMBER_ABBREVIATIONS = frozenset({"no", "fig"})  # kept with their period before a number: "no. 5"
# Words PTBTokenizer splits in two.
_SPLIT_WORDS = {
    "cannot": ["can", "not"], "gonna": ["gon", "na"], "wanna": ["wan", "na"], "gotta": ["got", "ta"],
    "gimme": ["gim", "me"], "lemme": ["lem", "me"],
}  # fmt: skip
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_DROP = frozenset(PTB_PUNCTUATION) | {'"'}  # PTB turns '"' into `` or '', both dropped
_CLITIC = re.compile(r"(.+?)(n't|'s|'re|'ve|'ll|'d|'m)")
_KEEPS_PERIOD = re.compile(r"[^\W\d_](?:\.[^\W\d_])*")  # a single letter or an acronym: "t.", "u.s.", "a.m."
_NORMALIZE = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"',
    "\u2026": "...", "\u2013": "--", "\u2014": "--", "\u2015": "--",
    "\u200b": "", "\u200c": "", "\u200d": "", "\ufeff": "",
})  # fmt: skip
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")  # emoji: "untokenizable" for PTBTokenizer, dropped
_TOKEN = re.compile(
    r"""
    (?P<word>
        (?:(?<![\w.])[-+.](?=\d))?                       # sign or leading point of a number: -5, +5, .5
        \w+(?:\.\w+)*                                    # 3.5, u.s, www.example.com, chairs.wait
        (?:(?:[-/]|(?<=\d)[.,:](?=\d)|(?<=[^\W\d_])')\w+)*  # black-and-white, and/or, 1,000, 10:30, o'clock, isn't
    )(?P<period>\.(?P<comma>(?=,))?)?                   # a period is not joined after - / ': "double-doors. go"
    | (?P<clitic>'(?:s|re|ve|ll|d|m)(?!\w))              # "dog 's", "90's"
    | (?P<tag>[#@][^\W\d_]+)                             # "#downtown"
    | (?P<marks>[?!]{2,})                                 # "?!", "!!": tokens PTB keeps
    | (?P<other>\.{2,}|-{2,}|\S)
    """,
    re.VERBOSE,
)


def _split_clitics(word: str) -> list[str]:
    """PTB's contractions: "don't" -> do n't, "man's" -> man 's, "cannot" -> can not."""
    tail: list[str] = []
    while (m := _CLITIC.fullmatch(word)) is not None:
        word = m.group(1)
        tail.insert(0, m.group(2))
    return [*_SPLIT_WORDS.get(word, [word]), *tail]


def simple_tokenize(text: str) -> list[str]:
    """Tokens of `text` as pycocoevalcap's PTBTokenizer (Stanford PTBTokenizer 3.4.1, lower-cased,
    its punctuation list removed) gives them for ordinary captions, without Java.

    Lower-cases; drops . , ; : ? ! - -- ... quotes and lone apostrophes; keeps hyphenated words,
    numbers (3.5, 1,000, 10:30, -5), slashes (and/or), acronyms and common abbreviations with their
    period (u.s., a.m., mr., st.); splits contractions (isn't -> is n't, dog's -> dog 's, cannot ->
    can not); keeps runs like "?!" and symbols (& % $ * + = /) as tokens; and writes brackets as PTB
    does, "(" -> "-lrb-" (kept: PTB's list has them in upper case, compared after lower-casing).

    Agrees with PTBTokenizer on 17,408 of 17,409 R2R navigation instructions. Known differences
    (rare in captions; tests pin them): emoticons (":)" is ":-rrb-" for PTB), URLs, SGML-like "<b>",
    "AT&T"/"R&B" (one token for PTB when upper-case), "'tis", "rock 'n' roll", "y'all", "'90s",
    "No.1" (PTB: "no. 1"), "u.s.-based", "05.-1", and abbreviations missing from `_ABBREVIATIONS`.

    >>> simple_tokenize("A man's hat isn't on the dog (a poodle).")
    ['a', 'man', "'s", 'hat', 'is', "n't", 'on', 'the', 'dog', '-lrb-', 'a', 'poodle', '-rrb-']
    """
    text = _ASTRAL.sub("", text.lower().translate(_NORMALIZE))
    tokens: list[str] = []
    for m in _TOKEN.finditer(text):
        word = m.group("word")
        if word is not None:
            if (
                m.group("period")
                and (
                    m.group("comma") is not None  # "bike.," -> "bike."
                    or word in _ABBREVIATIONS
                    or _KEEPS_PERIOD.fullmatch(word)
                    or (word in _NUMBER_ABBREVIATIONS and re.match(r"\s*\d", text[m.end() :]))
                )
            ):
                tokens.append(word + ".")
            else:
                tokens.extend(_split_clitics(word))
        elif m.group("other") is None:
            tokens.append(m.group("clitic") or m.group("tag") or m.group("marks"))
        else:
            tok = m.group("other")
            if not (tok[0] in ".-" and len(tok) > 1):  # runs of periods or hyphens: "..", "---"
                tokens.append(_BRACKETS.get(tok, tok))
    return [t for t in tokens if t not in _DROP]


# ---------------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------------


def java_available() -> bool:
    """Whether a `java` executable is on PATH (PTB tokenisation, METEOR and SPICE need it)."""
    return shutil.which("java") is not None


def _pycocoevalcap(module: str) -> Any:
    try:
        return importlib.import_module(f"pycocoevalcap.{module}")
    except ImportError as e:
        raise ImportError(f"caption evaluation needs pycocoevalcap ({e}): pip install pycocoevalcap==1.2") from None


def _spice_unavailable() -> str | None:
    """Why SPICE cannot run here, or None when it can."""
    if not java_available():
        return "java not found"
    try:
        stanford = _pycocoevalcap("spice.get_stanford_models")
    except ImportError as e:
        return str(e)
    lib = os.path.join(os.path.dirname(os.path.abspath(stanford.__file__)), stanford.SPICELIB)
    missing = [jar for jar in _SPICE_JARS if not os.path.isfile(os.path.join(lib, jar))]
    if missing:
        return (
            f"Stanford CoreNLP 3.6.0 is not in {lib}; to enable SPICE run `{SPICE_SETUP_COMMAND}` once, with internet"
            " access (it downloads stanford-corenlp-full-2015-12-09.zip from nlp.stanford.edu), or put"
            f" {' and '.join(_SPICE_JARS)} there (Maven Central: edu.stanford.nlp:stanford-corenlp:3.6.0)"
        )
    return None


def spice_available() -> bool:
    """Whether SPICE can run without downloading anything: Java is on PATH and pycocoevalcap's
    `spice/lib/` holds stanford-corenlp-3.6.0.jar and stanford-corenlp-3.6.0-models.jar (what
    `pycocoevalcap.spice.get_stanford_models` downloads)."""
    return _spice_unavailable() is None


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def _is_id(x: object) -> bool:
    return isinstance(x, Integral) and not isinstance(x, bool)


def _examples(ids: Sequence[Any], n: int = 3) -> str:
    ids = sorted(ids)
    return "e.g. " + ", ".join(str(i) for i in ids[:n])


def load_references(annotations: Mapping[Any, Any] | JsonSource) -> dict[int, list[str]]:
    """Image id -> raw reference captions (in file order) of COCO captions annotations.

    `annotations` is a captions_*.json path, its dict, or references already in that form. A
    Mapping with an "annotations" key is read as the COCO format (only "annotations" is used);
    any other Mapping must map int image ids to non-empty lists of caption strings (a JSON file
    cannot hold int keys, so the two never collide). Raises ValueError on anything else.
    """
    data = load_json(annotations, "annotations", _ANNOTATIONS_FORMAT)
    if not isinstance(data, Mapping):
        raise ValueError(f"annotations is a {type(data).__name__}, not a dict; {_ANNOTATIONS_FORMAT}")
    refs: dict[int, list[str]] = {}
    if "annotations" in data:
        anns = data["annotations"]
        if not isinstance(anns, list):
            raise ValueError(f"annotations: 'annotations' is a {type(anns).__name__}, not a list; {_ANNOTATIONS_FORMAT}")
        for i, a in enumerate(anns):
            if not isinstance(a, Mapping) or not _is_id(a.get("image_id")) or not isinstance(a.get("caption"), str):
                raise ValueError(
                    f"annotations entry {i} has no int image_id and string caption: {_short(a)}; {_ANNOTATIONS_FORMAT}"
                )
            refs.setdefault(int(a["image_id"]), []).append(a["caption"])
    else:
        for k, caps in data.items():
            if not _is_id(k):
                hint = " (convert JSON string keys with int())" if isinstance(k, str) and k.strip().isdigit() else ""
                raise ValueError(f"annotations: key {k!r} is not an int image id{hint}; {_ANNOTATIONS_FORMAT}")
            if isinstance(caps, str) or not isinstance(caps, Sequence) or not caps:
                raise ValueError(f"annotations: image {k} has {_short(caps)}, not a non-empty list of captions")
            if not all(isinstance(c, str) for c in caps):
                raise ValueError(f"annotations: image {k} has a reference caption that is not a string: {_short(caps)}")
            refs[int(k)] = list(caps)
    if not refs:
        raise ValueError(f"annotations hold no captions; {_ANNOTATIONS_FORMAT}")
    return refs


def _short(x: Any, n: int = 80) -> str:
    s = repr(x)
    return s if len(s) <= n else s[: n - 3] + "..."


def _read_results(results: Any) -> dict[int, str]:
    """Image id -> caption, in the order of the results."""
    results = load_json(results, "results", _RESULTS_FORMAT)
    if not isinstance(results, list):
        raise ValueError(f"results is a {type(results).__name__}, not a list; {_RESULTS_FORMAT}")
    if not results:
        raise ValueError(f"results is empty: nothing to evaluate; {_RESULTS_FORMAT}")
    captions: dict[int, str] = {}
    first: dict[int, int] = {}
    duplicates: dict[int, tuple[int, int]] = {}
    for i, r in enumerate(results):
        if not isinstance(r, Mapping) or not _is_id(r.get("image_id")) or not isinstance(r.get("caption"), str):
            raise ValueError(f"results entry {i} has no int image_id and string caption: {_short(r)}; {_RESULTS_FORMAT}")
        image_id = int(r["image_id"])
        if image_id in captions:
            duplicates.setdefault(image_id, (first[image_id], i))
            continue
        captions[image_id] = r["caption"]
        first[image_id] = i
    if duplicates:
        image_id = min(duplicates)
        a, b = duplicates[image_id]
        raise ValueError(
            f"results have more than one caption for {len(duplicates)} image ids, e.g. {image_id} (entries {a} and {b});"
            " COCO evaluation expects exactly one caption per image"
        )
    return captions


# ---------------------------------------------------------------------------------------------
# Tokenisation
# ---------------------------------------------------------------------------------------------

# Characters Java reads as line breaks (Python's str.splitlines agrees): PTBTokenizer writes one
# caption per line, so any of them would split a caption and misalign every later one.
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _ptb_tokenize(gts: Mapping[int, list[str]], res: Mapping[int, str]) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """References and results through pycocoevalcap's PTBTokenizer in one java call (one JVM start
    instead of COCOEvalCap's two; the tokeniser works line by line, so the output is the same)."""
    tokenizer = _pycocoevalcap("tokenizer.ptbtokenizer").PTBTokenizer()
    joint: dict[tuple[str, int], list[dict[str, str]]] = {}
    for image_id, caps in gts.items():
        joint[("gts", image_id)] = [{"caption": _LINE_BREAKS.sub(" ", c)} for c in caps]
    for image_id, cap in res.items():
        joint[("res", image_id)] = [{"caption": _LINE_BREAKS.sub(" ", cap)}]
    out = tokenizer.tokenize(joint)
    # PTBTokenizer zips its output lines with the captions: a java failure shows as missing captions
    short = [k for k, caps in joint.items() if len(out.get(k, ())) != len(caps)]
    if short:
        raise RuntimeError(
            f"PTBTokenizer returned no tokens for {len(short)} of {len(joint)} caption groups (java failed?);"
            " check that `java -version` works"
        )
    return {i: out[("gts", i)] for i in gts}, {i: out[("res", i)] for i in res}


def _simple(gts: Mapping[int, list[str]], res: Mapping[int, str]) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    return (
        {i: [" ".join(simple_tokenize(c)) for c in caps] for i, caps in gts.items()},
        {i: [" ".join(simple_tokenize(c))] for i, c in res.items()},
    )


# ---------------------------------------------------------------------------------------------
# Java scorers
# ---------------------------------------------------------------------------------------------


class _Meteor:
    """pycocoevalcap's Meteor (one `java -jar meteor-1.5.jar -stdio` process), started early so the
    JVM loads its paraphrase table while the Python metrics run, and always shut down.

    pycocoevalcap 1.2's Meteor has no `close()`; its `__del__` kills the process but first takes
    the lock that a failed `compute_score` leaves held, which would hang. `close()` kills the
    process, closes the pipes and releases the lock. A watchdog kills a process that stops
    answering, so a protocol hang becomes an error instead of blocking forever.
    """

    def __init__(self) -> None:
        self.scorer = _pycocoevalcap("meteor.meteor").Meteor()
        self.timed_out = False

    def compute(self, gts: dict[int, list[str]], res: dict[int, list[str]], timeout: float) -> tuple[float, list[float]]:
        def kill() -> None:
            self.timed_out = True
            self.scorer.meteor_p.kill()

        watchdog = threading.Timer(timeout, kill)
        watchdog.daemon = True
        watchdog.start()
        try:
            score, scores = self.scorer.compute_score(gts, res)
        except Exception as e:
            if self.timed_out:
                raise RuntimeError(f"no answer within {timeout:g} s") from None
            raise RuntimeError(f"{type(e).__name__}: {e}{self._stderr_tail()}") from None
        finally:
            watchdog.cancel()
        return float(score), [float(s) for s in scores]

    def _stderr_tail(self) -> str:
        p = self.scorer.meteor_p
        if p.poll() is None:
            p.kill()
        p.wait()
        try:
            lines = p.stderr.read().decode(errors="replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return f" (java: {lines[-1].strip()})" if lines else ""

    def close(self) -> None:
        p = self.scorer.meteor_p
        for pipe in (p.stdin, p.stdout, p.stderr):
            try:
                pipe.close()
            except OSError:  # BrokenPipeError flushing stdin of a dead process
                pass
        if p.poll() is None:
            p.kill()
        p.wait()
        if self.scorer.lock.locked():
            self.scorer.lock.release()


def _spice(gts: dict[int, list[str]], res: dict[int, list[str]]) -> tuple[float, list[float]]:
    """pycocoevalcap's Spice; per image (in the order of `gts`) the "All" F-score, where
    COCOEvalCap keeps the whole dict. Spice returns its per-image scores in sorted image id order,
    which COCOEvalCap pairs with its own image order: they are matched by id here."""
    score, scores = _pycocoevalcap("spice.spice").Spice().compute_score(gts, res)
    by_id = dict(zip(sorted(gts), scores))
    return float(score), [float(by_id[i]["All"]["f"]) for i in gts]


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


@dataclass
class CaptionScores:
    """COCO caption scores as fractions (COCOEvalCap's `eval` and `imgToEval`).

    `scores` holds only the metrics computed, keyed and ordered as COCOEvalCap does (`Bleu_1`..
    `Bleu_4`, `METEOR`, `ROUGE_L`, `CIDEr`, `SPICE`); `per_image` the same metrics per image (SPICE:
    the "All" F-score); `tokenizer` is "ptb" or "simple"; `notes` says what was skipped and why.
    """

    scores: dict[str, float]
    per_image: dict[int, dict[str, float]]
    images: int
    tokenizer: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """{"images", "tokenizer", "notes", "Bleu_1", ..., "CIDEr", ...}: unrounded plain floats."""
        return {
            "images": self.images,
            "tokenizer": self.tokenizer,
            "notes": list(self.notes),
            **{k: float(v) for k, v in self.scores.items()},
        }


def _failed(notes: list[str], text: str) -> None:
    """Report a failure that was survived: in `notes`, and logged (notes on what was skipped are not)."""
    notes.append(text)
    log.warning("caption evaluation: %s", text)


def evaluate(
    results: list[dict[str, Any]] | JsonSource,
    annotations: Mapping[Any, Any] | JsonSource,
    *,
    tokenizer: str = "auto",
    spice: str = "auto",
) -> CaptionScores:
    """COCO caption scores of `results` ([{"image_id": int, "caption": str}, ...] or a path to such
    a JSON file) against `annotations` (a captions_*.json path or dict, or references
    {image_id: [caption, ...]} such as `load_references` returns, the fast choice when evaluating
    repeatedly; see `load_references` for how the two dicts are told apart).

    Images evaluated: those of the results, each against all of its reference captions.
    `tokenizer`: "ptb" (Stanford PTBTokenizer, needs Java), "simple" (`simple_tokenize`), or
    "auto" (PTB when Java is found, else simple). `spice`: "on", "off", or "auto" (when
    `spice_available()`). METEOR runs whenever Java is found. A METEOR or auto-SPICE failure is
    reported in `notes` (and logged) and the metric left out; a failure of a requested
    `spice="on"` raises RuntimeError. Raises ValueError, saying what to fix, on malformed inputs,
    duplicate result image ids, result images without references and unavailable requests.
    """
    if tokenizer not in ("auto", "ptb", "simple"):
        raise ValueError(f"tokenizer must be 'auto', 'ptb' or 'simple', not {tokenizer!r}")
    if spice not in ("auto", "on", "off"):
        raise ValueError(f"spice must be 'auto', 'on' or 'off', not {spice!r}")
    java = java_available()
    if tokenizer == "ptb" and not java:
        raise ValueError(
            "tokenizer='ptb' needs Java and `java` is not on PATH: install a Java runtime"
            " (e.g. apt-get install default-jre-headless) or use tokenizer='auto' or 'simple'"
        )
    spice_why = _spice_unavailable() if spice != "off" else None
    if spice == "on" and spice_why is not None:
        raise ValueError(f"spice='on' but SPICE cannot run: {spice_why}")

    refs = load_references(annotations)
    captions = _read_results(results)
    unknown = [i for i in captions if i not in refs]
    if unknown:
        raise ValueError(
            f"{len(unknown)} result image ids are not in the annotations, {_examples(unknown)}; did you pass the right split?"
        )
    gts = {i: refs[i] for i in captions}

    notes: list[str] = []
    if not java:
        notes.append("java not found: PTB tokenizer, METEOR and SPICE skipped; BLEU/ROUGE-L/CIDEr on the simple tokenizer")
    meteor = None
    if java:  # started first: the JVM loads while tokenisation and the Python metrics run
        try:
            meteor = _Meteor()
        except Exception as e:
            _failed(notes, f"METEOR failed to start and is left out: {type(e).__name__}: {e}")
    try:
        used = "simple"
        if java and tokenizer != "simple":
            try:
                gts_t, res_t = _ptb_tokenize(gts, captions)
                used = "ptb"
            except Exception as e:
                if tokenizer == "ptb":
                    raise RuntimeError(f"PTB tokenization failed: {e}") from e
                _failed(notes, f"PTB tokenizer failed ({type(e).__name__}: {e}); scores on the simple tokenizer")
        if used == "simple":
            gts_t, res_t = _simple(gts, captions)
            if java and tokenizer == "simple":
                notes.append("tokenizer='simple': close to, not identical with, the official PTB-tokenized scores")

        scores: dict[str, float] = {}
        per_metric: dict[str, list[float]] = {}

        def run(names: Sequence[str], fn: Callable[[], tuple[Any, Any]]) -> None:
            score, per = fn()
            if len(names) == 1:
                score, per = [score], [per]
            for name, s, p in zip(names, score, per):
                scores[name] = float(s)
                per_metric[name] = [float(x) for x in p]

        bleu = _pycocoevalcap("bleu.bleu").Bleu(4)
        run(METRICS[:4], lambda: bleu.compute_score(gts_t, res_t, verbose=0))
        if meteor is not None:
            try:
                run(["METEOR"], lambda: meteor.compute(gts_t, res_t, timeout=120 + 0.2 * len(gts_t)))
            except Exception as e:
                _failed(notes, f"METEOR failed and is left out: {e}")
        run(["ROUGE_L"], lambda: _pycocoevalcap("rouge.rouge").Rouge().compute_score(gts_t, res_t))
        run(["CIDEr"], lambda: _pycocoevalcap("cider.cider").Cider().compute_score(gts_t, res_t))
        if spice != "off":
            if spice_why is not None:
                if java:  # without java the note above covers SPICE
                    notes.append(f"SPICE skipped: {spice_why}")
            else:
                try:
                    run(["SPICE"], lambda: _spice(gts_t, res_t))
                except Exception as e:
                    if spice == "on":
                        raise RuntimeError(f"SPICE failed: {type(e).__name__}: {e}") from e
                    _failed(notes, f"SPICE failed and is left out: {type(e).__name__}: {e}")
    finally:
        if meteor is not None:
            meteor.close()

    order = [m for m in METRICS if m in scores]
    per_image = {image_id: {m: per_metric[m][k] for m in order} for k, image_id in enumerate(gts)}
    return CaptionScores(
        scores={m: scores[m] for m in order},
        per_image=per_image,
        images=len(gts),
        tokenizer=used,
        notes=notes,
    )


def format_scores(scores: CaptionScores) -> str:
    """A plain-text table: each metric ×100 with two decimals (as papers quote them), the number of
    images and tokenizer, then the notes."""
    n = scores.images
    lines = [f"COCO caption scores  ({n} image{'' if n == 1 else 's'}, {scores.tokenizer} tokenizer)", ""]
    lines.append(f"  {'metric':<8}{'score':>8}")
    lines.extend(f"  {name:<8}{100 * value:8.2f}" for name, value in scores.scores.items())
    if scores.notes:
        lines.append("")
        lines.extend(f"note: {text}" for text in scores.notes)
    return "\n".join(lines)
