"""GloVe / word2vec / spaCy word vectors: each on-disk format written in tmp_path the way the real
files are, exact lookup with zeros for absent words, the one-line errors, copying into an
nn.Embedding, and a timed load of a 200k x 300 file."""

from __future__ import annotations

import gzip
import json
import sys
import time
import zipfile

import numpy as np
import pytest
import torch

from clipfeat.trainers import glove
from clipfeat.trainers.config import ConfigError
from clipfeat.trainers.glove import init_embedding, load_vectors, spacy_hash

# A glove.6B-style table: lower-cased words, 4-d, values written with 5 decimals as GloVe does.
TABLE = {
    "the": [0.41800, 0.24968, -0.41242, 0.12170],
    ",": [0.01334, 0.23682, -0.16899, 0.40951],
    "cat": [0.45281, -0.50108, -0.53714, -0.01570],
    "dog": [0.11008, -0.38781, -0.57615, -0.27714],
}


def _text(table: dict[str, list[float]], trailing: str = "") -> str:
    return "".join(f"{w} {' '.join(f'{v:.5f}' for v in vec)}{trailing}\n" for w, vec in table.items())


def _vec(word: str) -> np.ndarray:
    return np.asarray(TABLE[word], dtype=np.float32)


def _error(excinfo, key: str = "glove") -> str:
    """The error's message, checked to be one line that names the config key."""
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.startswith(f"{key}="), msg
    return msg


@pytest.fixture
def glove_txt(tmp_path):
    path = tmp_path / "glove.6B.4d.txt"
    path.write_text(_text(TABLE), encoding="utf-8")
    return path


def test_glove_text_rows_zeros_and_found_count(glove_txt):
    words = ["<pad>", "cat", "the", "unicorn", ",", "cat"]
    vecs, found = load_vectors(glove_txt, words, dim=4)
    assert vecs.dtype == np.float32 and vecs.shape == (6, 4)
    for i, w in enumerate(words):
        expected = _vec(w) if w in TABLE else np.zeros(4, np.float32)
        np.testing.assert_array_equal(vecs[i], expected)
    assert found == 4  # cat, the, ",", cat again: rows that got a vector


def test_dim_is_inferred_and_lookup_is_exact(glove_txt):
    vecs, found = load_vectors(str(glove_txt), ["The", "CAT", "dog", " dog"])
    assert vecs.shape == (4, 4) and found == 1  # no lower-casing, no stripping
    np.testing.assert_array_equal(vecs[2], _vec("dog"))
    assert not vecs[[0, 1, 3]].any()


def test_840b_words_with_spaces_parse_from_the_right(tmp_path):
    # glove.840B.300d.txt has a few "words" with spaces, e.g. '. . .' and 'at name@domain.com'.
    path = tmp_path / "glove.840B.3d.txt"
    path.write_text(", -0.08 0.002 -0.3\n"
                    ". . . 0.1 0.2 0.3\n"
                    "at name@domain.com 0.4 0.5 0.6\n"
                    "at 0.7 0.8 0.9\n"
                    "café 1.0 1.5 2.0\n", encoding="utf-8")
    vecs, found = load_vectors(path, [". . .", ".", "at name@domain.com", "at", "café"], dim=3)
    np.testing.assert_allclose(vecs, [[0.1, 0.2, 0.3], [0, 0, 0], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9], [1.0, 1.5, 2.0]])
    assert found == 4


def test_the_last_occurrence_of_a_word_wins(tmp_path):
    path = tmp_path / "dup.txt"
    path.write_text("a 1 2\nb 3 4\na 5 6\n", encoding="utf-8")
    vecs, found = load_vectors(path, ["a"])
    np.testing.assert_array_equal(vecs, [[5, 6]])
    assert found == 1


def test_zip_picks_the_member_named_for_dim(tmp_path):
    # glove.6B.zip holds glove.6B.{50,100,200,300}d.txt; here 2/3/4-d members.
    path = tmp_path / "glove.6B.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for d in (2, 3, 4):
            zf.writestr(f"glove.6B.{d}d.txt", _text({w: v[:d] for w, v in TABLE.items()}))
    vecs, found = load_vectors(path, ["dog", "bird"], dim=3)
    np.testing.assert_array_equal(vecs, [_vec("dog")[:3], np.zeros(3)])
    assert found == 1
    vecs, _ = load_vectors(path, ["dog"], dim=4)
    np.testing.assert_array_equal(vecs[0], _vec("dog"))

    with pytest.raises(ConfigError) as e:
        load_vectors(path, ["dog"])
    msg = _error(e)
    assert "glove.6B.2d.txt, glove.6B.3d.txt, glove.6B.4d.txt" in msg and "dim" in msg
    with pytest.raises(ConfigError) as e:
        load_vectors(path, ["dog"], dim=300)
    assert "no member is named for dim=300" in _error(e)


def test_zip_with_one_member_needs_no_dim(tmp_path):
    path = tmp_path / "vectors.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("glove.twitter.27B.4d.txt", _text(TABLE))
    vecs, found = load_vectors(path, ["the"])
    np.testing.assert_array_equal(vecs[0], _vec("the"))
    assert found == 1


def test_gzip_text(tmp_path):
    path = tmp_path / "glove.6B.4d.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(_text(TABLE))
    vecs, found = load_vectors(path, ["cat", "the", "emu"], dim=4)
    np.testing.assert_array_equal(vecs, [_vec("cat"), _vec("the"), np.zeros(4)])
    assert found == 2


def test_word2vec_header_is_skipped(tmp_path):
    # word2vec / fastText .vec text: a header `N D`, then one word per line (fastText leaves a
    # trailing space on each line).
    path = tmp_path / "wiki.en.vec"
    path.write_text(f"{len(TABLE)} 4\n" + _text(TABLE, trailing=" "), encoding="utf-8")
    vecs, found = load_vectors(path, ["dog", "4", "the"], dim=4)
    np.testing.assert_array_equal(vecs, [_vec("dog"), np.zeros(4), _vec("the")])
    assert found == 2
    with pytest.raises(ConfigError) as e:
        load_vectors(path, ["dog"], dim=300)
    assert "vectors are 4-d (line 1) but dim=300" in _error(e)


def test_missing_file_names_the_key_and_the_download(tmp_path):
    path = tmp_path / "glove.6B.300d.txt"
    with pytest.raises(ConfigError) as e:
        load_vectors(path, ["the"], key="vqa.glove")
    assert _error(e, "vqa.glove") == (f"vqa.glove={path}: file not found; download glove.6B.zip from "
                                      "https://nlp.stanford.edu/projects/glove/ or unset vqa.glove")


def test_dim_mismatch(glove_txt):
    with pytest.raises(ConfigError) as e:
        load_vectors(glove_txt, ["the"], dim=300)
    assert _error(e) == (f"glove={glove_txt}: vectors are 4-d (line 1) but dim=300; "
                         "use the 300-d file or set the embedding size to 4")


@pytest.mark.parametrize("lines, bad, words", [
    (["a 1 2 3", "b 4 5 6", "c 7 8"], 3, []),  # a short line (not even requested)
    (["a 1 2 3", "b 4 5 6", "c 7 8 9", "d 1.5 2.5"], 4, ["a"]),  # a truncated last line
    (["a 1 2 3", "", "b 4 x 6"], 3, ["b"]),  # a non-number in a requested row; blank lines count
    (["a"], 1, []),  # no vector at all
])
def test_malformed_line_names_its_number(tmp_path, lines, bad, words):
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_vectors(path, words)
    assert f"line {bad} is malformed" in _error(e)


def test_empty_and_damaged_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ConfigError) as e:
        load_vectors(empty, ["a"])
    assert "holds no vectors" in _error(e)
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(gzip.compress(_text(TABLE).encode() * 50)[:-30])
    with pytest.raises(ConfigError) as e:
        load_vectors(cut, ["a"])
    assert "cannot read past line" in _error(e)


def test_progress_bar_over_bytes(glove_txt, monkeypatch, capsys):
    monkeypatch.setattr(glove, "_PROGRESS_MIN_BYTES", 0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    vecs, found = load_vectors(glove_txt, ["cat"])
    assert found == 1
    assert "load glove.6B.4d.txt" in capsys.readouterr().err
    load_vectors(glove_txt, ["cat"], progress=False)
    assert capsys.readouterr().err == ""


# -- spaCy vectors folders (Vectors.to_disk: `vectors` .npy without extension, `key2row` msgpack) --


def test_spacy_hash_matches_spacys_documented_ids():
    assert spacy_hash("coffee") == 3197928453018144401  # spaCy docs: nlp.vocab.strings["coffee"]
    assert spacy_hash("HelloWorld") == 15578876784678163569  # spaCy docs: the Matcher's match_id
    assert spacy_hash("") == 0


def _spacy_folder(folder, table, *, mode="default", old_keys=False):
    msgpack = pytest.importorskip("msgpack")  # spaCy's (srsly's) format; installed here with ray
    folder.mkdir(parents=True)
    data = np.asarray(list(table.values()), dtype=np.float32)
    with open(folder / "vectors", "wb") as f:
        np.save(f, data, allow_pickle=False)
    keys = [spacy_hash(w) for w in table]
    if old_keys:
        with open(folder / "keys", "wb") as f:
            np.save(f, np.asarray(keys, dtype=np.uint64), allow_pickle=False)
    else:
        (folder / "key2row").write_bytes(msgpack.packb({k: i for i, k in enumerate(keys)}))
    (folder / "vectors.cfg").write_text(json.dumps({"mode": mode}))
    (folder / "strings.json").write_text(json.dumps(sorted(table)))


@pytest.mark.parametrize("old_keys", [False, True])
def test_spacy_vectors_folder(tmp_path, old_keys):
    _spacy_folder(tmp_path / "en_vectors_web_lg" / "vocab", TABLE, old_keys=old_keys)
    for path in (tmp_path / "en_vectors_web_lg" / "vocab", tmp_path / "en_vectors_web_lg"):
        vecs, found = load_vectors(path, ["dog", "unk", "the", ""], dim=4, key="mcan.spacy")
        np.testing.assert_array_equal(vecs, [_vec("dog"), np.zeros(4), _vec("the"), np.zeros(4)])
        assert found == 2
    with pytest.raises(ConfigError) as e:
        load_vectors(tmp_path / "en_vectors_web_lg", ["dog"], dim=300, key="mcan.spacy")
    assert "vectors are 4-d but dim=300" in _error(e, "mcan.spacy")


def test_spacy_floret_and_non_vector_folders_are_refused(tmp_path):
    _spacy_folder(tmp_path / "floret", TABLE, mode="floret")
    with pytest.raises(ConfigError) as e:
        load_vectors(tmp_path / "floret", ["dog"])
    assert "'floret' mode are not supported" in _error(e)
    (tmp_path / "other").mkdir()
    with pytest.raises(ConfigError) as e:
        load_vectors(tmp_path / "other", ["dog"])
    assert "no spaCy 'vectors' file" in _error(e)


# -- init_embedding ------------------------------------------------------------------------------


def test_init_embedding_keeps_the_padding_row_zero():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(6, 4, padding_idx=0)  # row 0 = padding, as the VQA models build it
    before = emb.weight.detach().clone()
    vecs = np.arange(12, dtype=np.float32).reshape(3, 4) + 0.25
    init_embedding(emb, vecs, [1, 3, 5])
    w = emb.weight.detach()
    assert not w[0].any()
    np.testing.assert_array_equal(w[[1, 3, 5]].numpy(), vecs)
    assert torch.equal(w[[2, 4]], before[[2, 4]])
    assert emb.weight.requires_grad

    vecs = np.ones((5, 4), dtype=np.float32)
    init_embedding(emb, vecs, slice(1, None))
    assert not emb.weight[0].any() and torch.equal(emb.weight[1:].detach(), torch.ones(5, 4))


def test_init_embedding_checks_rows_and_shapes():
    emb = torch.nn.Embedding(4, 3, padding_idx=0)
    init_embedding(emb, np.zeros((4, 3), np.float32), slice(None))  # a zero padding row may be copied
    with pytest.raises(ValueError, match="padding row 0"):
        init_embedding(emb, np.ones((4, 3), np.float32), slice(None))
    with pytest.raises(ValueError, match=r"need \[R, 3\]"):
        init_embedding(emb, np.ones((2, 5), np.float32), [1, 2])
    with pytest.raises(ValueError, match="2 vectors for 3 rows"):
        init_embedding(emb, np.ones((2, 3), np.float32), slice(1, None))
    with pytest.raises(ValueError, match="outside"):
        init_embedding(emb, np.ones((1, 3), np.float32), [4])


def test_loaded_vectors_into_an_embedding(glove_txt):
    vocab = ["<pad>", "the", "cat", "unicorn"]  # id 0 = padding
    vecs, found = load_vectors(glove_txt, vocab[1:], dim=4)
    emb = torch.nn.Embedding(len(vocab), 4, padding_idx=0)
    init_embedding(emb, vecs, slice(1, None))
    assert found == 2 and not emb.weight[0].any() and not emb.weight[3].any()
    assert torch.equal(emb.weight[2].detach(), torch.from_numpy(_vec("cat")))


@pytest.mark.slow
def test_load_time_200k_by_300(tmp_path, capsys):
    """A glove.6B.300d-sized row format (≈2.5 KB a line), 200k lines (≈490 MB); 20k words asked,
    half of them present. Prints the time; does not assert one."""
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((64, 300)).astype(np.float32)
    text = [" ".join(f"{v:.5f}" for v in r) for r in rows]
    path = tmp_path / "big.300d.txt"
    with open(path, "w", encoding="utf-8", buffering=1 << 20) as f:
        for i in range(200_000):
            f.write(f"w{i} {text[i % 64]}\n")
    words = [f"w{i}" for i in range(0, 400_000, 20)]
    t = time.perf_counter()
    vecs, found = load_vectors(path, words, dim=300, progress=False)
    seconds = time.perf_counter() - t
    assert found == 10_000
    np.testing.assert_allclose(vecs[1], np.round(rows[20 % 64], 5), atol=1e-6)  # w20
    assert not vecs[10_000:].any()
    with capsys.disabled():
        print(f"\nglove: 200k x 300 ({path.stat().st_size / 2**20:.0f} MiB) loaded in {seconds:.2f} s")
