"""Pretrained word vectors (GloVe and friends) for initialising a trainer's word embedding.

The VQA recipes we follow initialise their question embedding this way:

    bottom-up-attention-vqa  glove.6B.300d.txt (tools/create_dictionary.py): words missing from
                             GloVe get zero rows; the padding row stays zero
    mcan-vqa                 spaCy's en_vectors_web_lg (GloVe 840B, 300-d) via `token.vector`;
                             unknown words get spaCy's zero vector
    MMF                      glove.6B.300d through torchtext

`load_vectors(path, words)` reads one file once, keeps only the requested words' vectors and
returns a float32 [len(words), D] matrix (zeros where a word is absent) and how many rows were
found; `init_embedding(embedding, vectors, rows)` copies it into an `nn.Embedding`.

Formats (the first bytes decide, not the file name):

    GloVe text     `word v1 … vD` per line, space-separated (glove.6B.*d.txt, glove.840B.300d.txt).
                   Parsed from the right: the last D fields are the vector, the rest is the word
                   (glove.840B has a few "words" with spaces in them, e.g. '. . .').
                   D is the field count of the first line, minus one.
    word2vec text  the same after a header line `N D` (skipped; D is taken from it). fastText
                   `.vec` files are this format too (a trailing space per line is tolerated).
    .gz            either of the above, gzip-compressed.
    .zip           the official glove.6B.zip: the member named for `dim` (glove.6B.300d.txt for
                   dim=300), or the only member; otherwise a one-line error listing the members.
    spaCy folder   a spaCy model's `vocab/` folder, the model folder above it, or a folder written
                   by `Vectors.to_disk`: `vectors` (a .npy array, no extension), `key2row` (msgpack
                   {key: row}, keys = spaCy's 64-bit string hash), optional `vectors.cfg` (JSON
                   {"mode": …}; only "default" mode is read, floret is refused) and, in older
                   spaCy versions, `keys` (.npy, key i -> row i) instead of `key2row`.
                   Verified against spaCy's source (spacy/vectors.pyx `to_disk`/`from_disk`,
                   spacy/strings.pyx `hash_utf8` = murmurhash's MurmurHash64A, seed 1) and the
                   ids spaCy's docs print for "coffee" and "HelloWorld"; not against a real
                   en_vectors_web_lg download (spaCy is not installed here).
                   `strings.json` is not needed: a word's key is computed from the word.
                   Only the requested rows of `vectors` are read (memory-mapped).

Lookup: exact match on the string given, case-sensitive (both reference codebases look up the
already lower-cased token exactly); no lower-casing, stripping or subword fallback. When a word
occurs twice in a text file the last occurrence wins (as in bottom-up-attention-vqa's `word2emb`
dict). spaCy's `nlp(text).vector` averages the tokens of a string spaCy splits; here each word
is one key, looked up whole. The found count is the number of rows of the result that got a vector.

Text files are streamed once and never held whole (glove.840B.300d.txt is 5.6 GB): every line's
field count is checked (a short line is an error naming its line number); only the requested
words' values are parsed. A tqdm bar over bytes is shown for files over 64 MiB when stderr is a
terminal and `progress` is on.

Errors are `ConfigError`s in one line that name the config key holding the path.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Callable, Sequence

import numpy as np

from .config import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["load_vectors", "init_embedding", "spacy_hash"]

GLOVE_URL = "https://nlp.stanford.edu/projects/glove/"
_PROGRESS_MIN_BYTES = 64 << 20  # smaller files load in about a second: no bar
_BAR_EVERY = 4096  # lines between progress-bar updates
_BUFFER = 1 << 20  # read size; readline through io.BufferedReader is ~2x faster than GzipFile's / ZipExtFile's own


def load_vectors(path: str | os.PathLike, words: Sequence[str], *, dim: int | None = None, key: str = "glove",
                 progress: bool = True) -> tuple[np.ndarray, int]:
    """The vector of each of `words` from the file (or spaCy folder) at `path`.

    Returns (vectors float32 [len(words), D], found): row i is words[i]'s vector, zeros where the
    file has no such word; found = rows that got a vector. `dim`: the expected D (also picks the
    member of a multi-file .zip); None takes D from the file. `key`: the config key that holds
    `path`, named in every error."""
    p = Path(os.fspath(path)).expanduser()
    where = f"{key}={os.fspath(path)}"
    if not p.exists():
        raise ConfigError(f"{where}: file not found; download glove.6B.zip from {GLOVE_URL} or unset {key}")
    if p.is_dir():
        return _load_spacy(p, words, dim=dim, where=where)
    try:
        raw = open(p, "rb", buffering=_BUFFER)
    except OSError as e:
        raise ConfigError(f"{where}: cannot open it ({e.strerror}); fix its permissions or unset {key}") from None
    with raw:
        magic = raw.read(4)
        raw.seek(0)
        if magic[:2] == b"\x1f\x8b":
            size = p.stat().st_size  # the bar follows the compressed bytes read (raw.tell)
            with io.BufferedReader(gzip.GzipFile(fileobj=raw), _BUFFER) as gz:
                return _load_text(gz, words, dim=dim, where=where, total=size, pos=raw.tell,
                                  progress=progress and size >= _PROGRESS_MIN_BYTES, errors=(OSError, EOFError))
        if magic == b"PK\x03\x04":
            try:
                zf = zipfile.ZipFile(raw)
            except zipfile.BadZipFile as e:
                raise ConfigError(f"{where}: not a readable zip ({e}); download it again from {GLOVE_URL}") from None
            with zf:
                info = _zip_member(zf, dim, where, key)
                with io.BufferedReader(zf.open(info), _BUFFER) as member:
                    return _load_text(member, words, dim=dim, where=f"{where}[{info.filename}]",
                                      total=info.file_size, pos=None,
                                      progress=progress and info.file_size >= _PROGRESS_MIN_BYTES,
                                      errors=(zipfile.BadZipFile, OSError, EOFError))
        size = p.stat().st_size
        return _load_text(raw, words, dim=dim, where=where, total=size, pos=None,
                          progress=progress and size >= _PROGRESS_MIN_BYTES, errors=())


def init_embedding(embedding: torch.nn.Embedding, vectors: np.ndarray, rows: slice | Sequence[int]) -> None:
    """Copy `vectors` [R, D] into `embedding.weight[rows]` (R rows: a slice or R row ids), leaving
    every other row as it is. The padding row (`embedding.padding_idx`) may be among `rows` only
    if its vector is all zeros, so it stays zero."""
    import torch

    weight = embedding.weight
    n, d = weight.shape
    if vectors.ndim != 2 or vectors.shape[1] != d:
        raise ValueError(f"vectors are {tuple(vectors.shape)}, the embedding is {n} x {d}: need [R, {d}]")
    if isinstance(rows, slice):
        ids = list(range(*rows.indices(n)))
    else:
        ids = [int(r) for r in rows]
        bad = [r for r in ids if not -n <= r < n]
        if bad:
            raise ValueError(f"rows {bad[:5]} are outside the embedding's {n} rows")
        ids = [r % n for r in ids]
    if len(ids) != len(vectors):
        raise ValueError(f"{len(vectors)} vectors for {len(ids)} rows; give one row per vector")
    if len(set(ids)) != len(ids):
        raise ValueError("rows repeat a row id; give each row once")
    pad = embedding.padding_idx
    if pad is not None and pad in ids and np.any(vectors[ids.index(pad)]):
        raise ValueError(f"rows include the padding row {pad} with a non-zero vector; leave it out of rows")
    index = torch.tensor(ids, dtype=torch.long, device=weight.device)
    with torch.no_grad():
        weight.index_copy_(0, index, torch.as_tensor(vectors, dtype=weight.dtype).to(weight.device))


def spacy_hash(word: str) -> int:
    """spaCy's key for a string (`nlp.vocab.strings[word]`): MurmurHash64A of its UTF-8 bytes,
    seed 1 (spacy/strings.pyx `hash_utf8`; murmurhash's `hash64`). 0 for the empty string."""
    data = word.encode("utf-8")
    if not data:
        return 0
    mask, m, r = (1 << 64) - 1, 0xC6A4A7935BD1E995, 47
    h = (1 ^ (len(data) * m)) & mask
    end = len(data) - len(data) % 8
    for i in range(0, end, 8):
        k = (int.from_bytes(data[i:i + 8], "little") * m) & mask
        k = ((k ^ (k >> r)) * m) & mask
        h = ((h ^ k) * m) & mask
    if end < len(data):  # the 1-7 tail bytes, little-endian
        h = ((h ^ int.from_bytes(data[end:], "little")) * m) & mask
    h = ((h ^ (h >> r)) * m) & mask
    return h ^ (h >> r)


# -- text formats ---------------------------------------------------------------------------------


def _wanted(words: Sequence[str]) -> dict[bytes, list[int]]:
    """UTF-8 bytes of each requested word -> its positions in `words` (a word may repeat)."""
    wanted: dict[bytes, list[int]] = {}
    for i, w in enumerate(words):
        wanted.setdefault(w.encode("utf-8"), []).append(i)
    return wanted


def _zip_member(zf: zipfile.ZipFile, dim: int | None, where: str, key: str) -> zipfile.ZipInfo:
    """The vectors file inside a zip: the one named for `dim` (`…300d.txt`), else the only one."""
    members = [i for i in zf.infolist() if not i.is_dir()]
    names = ", ".join(i.filename for i in members) or "nothing"
    if dim is not None:
        named = [i for i in members if re.search(rf"(?<!\d){dim}d\b", Path(i.filename).name)]
        if len(named) == 1:
            return named[0]
    if len(members) == 1:
        return members[0]
    want = f"no member is named for dim={dim}" if dim is not None else "pass dim to choose one"
    raise ConfigError(f"{where}: the zip holds {names}; {want}, or point {key} at one extracted file")


def _load_text(f: IO[bytes], words: Sequence[str], *, dim: int | None, where: str, total: int,
               pos: Callable[[], int] | None, progress: bool, errors: tuple[type[BaseException], ...]
               ) -> tuple[np.ndarray, int]:
    """Stream GloVe / word2vec text lines from `f`; keep the requested words' vectors."""
    from tqdm.auto import tqdm

    wanted = _wanted(words)
    found: dict[bytes, np.ndarray] = {}
    name = Path(where.split("=", 1)[1]).name  # the file's name (and zip member) on the bar
    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"load {name}",
               disable=not progress or not sys.stderr.isatty(), leave=False)
    d = 0  # vector size; 0 until the first line sets it
    n = 0  # line number (1-based) of `line`
    done = 0  # bytes counted on the bar
    try:
        for n, line in enumerate(f, 1):
            if pos is None:
                done += len(line)
            line = line.rstrip(b" \r\n")
            if not line:
                continue
            spaces = line.count(b" ")
            if d == 0:
                d = _first_line(line, spaces, n, dim, where)
                if d < 0:  # a word2vec header `N D`: the vectors start on the next line
                    d = -d
                    continue
            if spaces == d:  # the common case: a word without spaces
                word = line[:line.find(b" ")]
                if word in wanted:
                    found[word] = _values(line[len(word) + 1:].split(b" "), n, d, where)
            elif spaces > d:  # a word with spaces in it (glove.840B): the last d fields are the vector
                word, *values = line.rsplit(b" ", d)
                if word in wanted:
                    found[word] = _values(values, n, d, where)
            else:
                raise ConfigError(f"{where}: line {n} is malformed: {spaces + 1} fields, expected a word and {d} "
                                  f"numbers; the file may be truncated (download it again from {GLOVE_URL})")
            if n % _BAR_EVERY == 0:
                now = done if pos is None else pos()
                bar.update(now - bar.n)
        bar.update((done if pos is None else pos()) - bar.n)
    except errors as e:
        raise ConfigError(f"{where}: cannot read past line {n} ({type(e).__name__}: {e}); "
                          f"the file may be damaged (download it again from {GLOVE_URL})") from None
    finally:
        bar.close()
    if d == 0:
        raise ConfigError(f"{where}: the file holds no vectors (it is empty); download it again from {GLOVE_URL}")
    out = np.zeros((len(words), d), dtype=np.float32)
    count = 0
    for word, vec in found.items():
        out[wanted[word]] = vec
        count += len(wanted[word])
    return out, count


def _first_line(line: bytes, spaces: int, n: int, dim: int | None, where: str) -> int:
    """The vector size from the first line: D for a GloVe line `word v1 … vD`, -D for a word2vec
    header `N D`. Checks it against `dim`."""
    fields = line.split(b" ")
    header = len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit()
    d = int(fields[1]) if header else spaces
    if d < 1:
        raise ConfigError(f"{where}: line {n} is malformed: one field, expected a word and its vector "
                          f"(or a word2vec header 'N D'); is this a GloVe / word2vec text file?")
    if dim is not None and d != dim:
        raise ConfigError(f"{where}: vectors are {d}-d (line {n}) but dim={dim}; "
                          f"use the {dim}-d file or set the embedding size to {d}")
    return -d if header else d


def _values(fields: list[bytes], n: int, d: int, where: str) -> np.ndarray:
    try:
        return np.array(fields, dtype=np.float32)
    except ValueError as e:
        raise ConfigError(f"{where}: line {n} is malformed: {e} (expected {d} numbers after the word)") from None


# -- spaCy vectors folder -------------------------------------------------------------------------


def _load_spacy(p: Path, words: Sequence[str], *, dim: int | None, where: str) -> tuple[np.ndarray, int]:
    """A spaCy `Vectors.to_disk` folder (or a model / model's vocab folder holding one)."""
    folder = next((q for q in (p, p / "vocab") if (q / "vectors").is_file()), None)
    if folder is None:
        raise ConfigError(f"{where}: a folder, but no spaCy 'vectors' file in it or in its vocab/; "
                          f"give a GloVe .txt/.zip/.gz file or a spaCy model's vocab folder")
    cfg_path = folder / "vectors.cfg"
    if cfg_path.is_file():
        try:
            mode = json.loads(cfg_path.read_text(encoding="utf-8")).get("mode", "default")
        except (ValueError, AttributeError) as e:
            raise ConfigError(f"{where}: {cfg_path.name} is not a JSON object ({e})") from None
        if mode != "default":
            raise ConfigError(f"{where}: spaCy vectors in {mode!r} mode are not supported (only 'default' tables)")
    try:
        table = np.load(folder / "vectors", mmap_mode="r", allow_pickle=False)  # [rows, D], read lazily
    except (ValueError, OSError) as e:
        raise ConfigError(f"{where}: {folder / 'vectors'} is not a .npy array ({e})") from None
    if table.ndim != 2:
        raise ConfigError(f"{where}: {folder / 'vectors'} has shape {table.shape}; expected [rows, D]")
    d = table.shape[1]
    if dim is not None and d != dim:
        raise ConfigError(f"{where}: vectors are {d}-d but dim={dim}; "
                          f"use {dim}-d vectors or set the embedding size to {d}")
    key2row = _spacy_key2row(folder, where)
    rows = [key2row.get(spacy_hash(w)) if w else None for w in words]
    hit = [i for i, r in enumerate(rows) if r is not None]
    out = np.zeros((len(words), d), dtype=np.float32)
    if hit:
        out[hit] = table[[rows[i] for i in hit]]
    return out, len(hit)


def _spacy_key2row(folder: Path, where: str) -> dict[int, int]:
    """{spaCy string hash: row}: from `key2row` (msgpack), or an older folder's `keys` (.npy)."""
    if (folder / "key2row").is_file():
        try:
            import msgpack
        except ImportError:
            raise ConfigError(f"{where}: reading spaCy's key2row needs msgpack; pip install msgpack") from None
        try:
            key2row = msgpack.unpackb((folder / "key2row").read_bytes(), raw=False, strict_map_key=False)
        except (ValueError, msgpack.UnpackException) as e:
            raise ConfigError(f"{where}: {folder / 'key2row'} is not msgpack ({e})") from None
        if not isinstance(key2row, dict):
            raise ConfigError(f"{where}: {folder / 'key2row'} holds a {type(key2row).__name__}, expected a map")
        return key2row
    if (folder / "keys").is_file():
        keys = np.load(folder / "keys", allow_pickle=False)
        return {int(k): i for i, k in enumerate(keys)}
    raise ConfigError(f"{where}: {folder} has 'vectors' but neither 'key2row' nor 'keys'; "
                      "is it a spaCy vectors folder?")
