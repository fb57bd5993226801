"""Tests for the built-in embedders and the embedder factory."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataknobs_data.vector.embedders import (
    Embedder,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    get_embedder,
)

SAMPLE_TEXTS = [
    "Parse a string representing a date according to a format.",
    "Return the number of bytes written to the socket.",
    "HTTPServer handles parse_date and readLines requests.",
    "",
    "Ünïcödé text — with punctuation!!! 42",
]

# sha256 of HashingEmbedder(384).embed(SAMPLE_TEXTS).tobytes().  If an
# intentional algorithm change breaks this, bump HashingEmbedder's
# model_version and update the digest: old stored vectors are incompatible.
GOLDEN_SHA256 = "18db6c8e1d255e495b5bf909fddcdf3f7f08a0c749b537bba85d23ccf0df3f8f"

_SUBPROCESS_SCRIPT = """
import sys
from dataknobs_data.vector.embedders import HashingEmbedder
texts = sys.stdin.read().split("\\x1e")
sys.stdout.write(HashingEmbedder(384).embed(texts).tobytes().hex())
"""

HAS_SENTENCE_TRANSFORMERS = importlib.util.find_spec("sentence_transformers") is not None


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


def _embed_in_subprocess(hash_seed: str) -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    proc = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS_SCRIPT],
        input="\x1e".join(SAMPLE_TEXTS),
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        check=True,
        timeout=60,
    )
    return bytes.fromhex(proc.stdout)


def test_identical_bytes_across_processes_with_different_hash_seeds() -> None:
    first = _embed_in_subprocess("1")
    second = _embed_in_subprocess("12345")
    here = HashingEmbedder(384).embed(SAMPLE_TEXTS).tobytes()
    assert first == second == here


def test_output_matches_golden_digest() -> None:
    data = HashingEmbedder(384).embed(SAMPLE_TEXTS).tobytes()
    assert hashlib.sha256(data).hexdigest() == GOLDEN_SHA256


@pytest.mark.parametrize("dims", [8, 64, 384, 1000])
def test_shape_dtype_contiguity_and_unit_norm(dims: int) -> None:
    emb = HashingEmbedder(dims)
    out = emb.embed(SAMPLE_TEXTS)
    assert out.shape == (len(SAMPLE_TEXTS), dims)
    assert out.dtype == np.float32
    assert out.flags["C_CONTIGUOUS"]
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)

    one = emb.embed_one(SAMPLE_TEXTS[0])
    assert one.shape == (dims,)
    assert one.dtype == np.float32
    assert one.flags["C_CONTIGUOUS"]


def test_embed_one_and_batch_composition_do_not_change_results() -> None:
    emb = HashingEmbedder()
    batch = emb.embed(SAMPLE_TEXTS)
    for i, text in enumerate(SAMPLE_TEXTS):
        assert emb.embed_one(text).tobytes() == batch[i].tobytes()
    # A fresh instance (cold caches) and a reversed batch give the same rows.
    reversed_batch = HashingEmbedder().embed(SAMPLE_TEXTS[::-1])[::-1]
    assert reversed_batch.tobytes() == batch.tobytes()


@pytest.mark.parametrize("text", ["", "   \n\t", "the and of a", "!!! ... ???", "a b c"])
def test_featureless_text_gives_the_same_finite_unit_vector(text: str) -> None:
    emb = HashingEmbedder(64)
    vec = emb.embed_one(text)
    assert np.all(np.isfinite(vec))
    assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-6)
    assert vec.tobytes() == emb.embed_one("").tobytes()
    assert vec.tobytes() != emb.embed_one("socket").tobytes()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=8))
def test_any_text_gives_finite_unit_vectors(texts: list[str]) -> None:
    out = HashingEmbedder(16).embed(texts)
    assert out.shape == (len(texts), 16)
    assert np.all(np.isfinite(out))
    if texts:
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_related_texts_score_higher_than_unrelated() -> None:
    emb = HashingEmbedder()
    query = emb.embed_one("parse a date string")
    related = emb.embed_one(
        "Parse a string containing a date in ISO 8601 format and return a date object."
    )
    unrelated = emb.embed_one("Send the buffered bytes over the network socket and close it.")
    assert _cos(query, related) > _cos(query, unrelated) + 0.2
    assert _cos(query, unrelated) < 0.15


def test_identifier_parts_match_plain_words() -> None:
    emb = HashingEmbedder()
    query = emb.embed_one("parse date")
    assert _cos(query, emb.embed_one("parse_date")) > 0.4
    assert _cos(query, emb.embed_one("parseDate")) > 0.4
    assert _cos(query, emb.embed_one("flush_buffer")) < 0.15


def test_inflections_share_signal_through_character_trigrams() -> None:
    emb = HashingEmbedder()
    query = emb.embed_one("parsing")
    assert _cos(query, emb.embed_one("parser")) > _cos(query, emb.embed_one("socket")) + 0.1


def test_dimension_changes_the_space() -> None:
    assert HashingEmbedder(64).embed_one("date").shape == (64,)
    assert HashingEmbedder(128).embed_one("date").shape == (128,)


@pytest.mark.parametrize("dims", [7, 0, -384, 8.0, True, "384", None])
def test_invalid_dimensions_raise_value_error(dims: object) -> None:
    with pytest.raises(ValueError, match="dimensions must be an int >= 8"):
        HashingEmbedder(dims)  # type: ignore[arg-type]


def test_bare_string_and_non_string_items_are_rejected() -> None:
    emb = HashingEmbedder()
    with pytest.raises(TypeError, match="embed_one"):
        emb.embed("a whole sentence")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        emb.embed(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        emb.embed_one(None)  # type: ignore[arg-type]


def test_empty_batch() -> None:
    out = HashingEmbedder(32).embed([])
    assert out.shape == (0, 32)
    assert out.dtype == np.float32


def test_metadata_and_protocol() -> None:
    emb = HashingEmbedder(128)
    assert isinstance(emb, Embedder)
    assert emb.model_name == "dataknobs-hashing"
    assert emb.model_version == "1"
    assert emb.dimensions == 128
    assert HashingEmbedder().dimensions == 384


# ------------------------------------------------------------------ get_embedder


def test_get_embedder_hashing_forms() -> None:
    default = get_embedder("hashing")
    assert isinstance(default, HashingEmbedder)
    assert default.dimensions == 384
    assert get_embedder("hashing:768").dimensions == 768
    assert get_embedder("  hashing:16 ").dimensions == 16


@pytest.mark.parametrize(
    "spec",
    ["", "hash", "Hashing", "hashing:", "hashing:abc", "sentence-transformers", "openai:x"],
)
def test_get_embedder_rejects_unknown_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="valid forms") as info:
        get_embedder(spec)
    assert "sentence-transformers:<name-or-path>" in str(info.value)


def test_get_embedder_hashing_dimension_is_validated() -> None:
    with pytest.raises(ValueError, match=">= 8"):
        get_embedder("hashing:4")


@pytest.mark.skipif(HAS_SENTENCE_TRANSFORMERS, reason="sentence-transformers is installed")
def test_sentence_transformers_missing_gives_install_hint() -> None:
    hint = 'pip install "dataknobs-data[embeddings]"'
    with pytest.raises(ImportError, match="dataknobs-data") as info:
        SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    assert hint in str(info.value)
    with pytest.raises(ImportError) as info:
        get_embedder("sentence-transformers:all-MiniLM-L6-v2")
    assert hint in str(info.value)


def test_sentence_transformer_rejects_empty_name() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        SentenceTransformerEmbedder("")
