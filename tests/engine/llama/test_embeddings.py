"""Embeddings on the real engine (SmolLM2-135M): the pooled vectors equal llama.cpp's own
pooling (computed in a child process, so no second OpenMP pool runs in this one), across
batch boundaries too; they make semantic sense; texts of many requests share batches,
generation keeps stepping meanwhile, and a cancelled request frees its cells."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator

import llama_cpp
import numpy as np
import numpy.typing as npt
import pytest

from gemserve.engine.llama import LlamaEngine, embedding
from gemserve.errors import InvalidEmbeddingInput
from tests.support.generation import QUESTIONS, poll_engine, request, run
from tests.support.llama import default_spec, make_engine

pytestmark = pytest.mark.engine

# Near-paraphrases, and a text about something else. Checked on the bundled model: the
# paraphrase's cosine is 0.84-0.96 and the unrelated text's 0.63-0.78.
TRIPLES = [
    (
        "The cat sat on the mat.",
        "A cat was sitting on the rug.",
        "Stock markets fell sharply after the interest rate decision.",
    ),
    (
        "How do I bake bread at home?",
        "What is a simple recipe for homemade bread?",
        "The spacecraft entered orbit around Jupiter.",
    ),
    (
        "I love playing football with my friends.",
        "Playing soccer with friends is my favourite thing.",
        "The invoice is due at the end of the month.",
    ),
]
POOLING = {"mean": llama_cpp.LLAMA_POOLING_TYPE_MEAN, "last": llama_cpp.LLAMA_POOLING_TYPE_LAST}

_REFERENCE = """
import json, sys, llama_cpp
args = json.load(sys.stdin)
n = args["batch"]
llm = llama_cpp.Llama(args["path"], embedding=True, pooling_type=args["pooling"], n_ctx=n,
                      n_batch=n, n_ubatch=n, n_threads=2, verbose=False)
print(json.dumps(llm.embed(args["texts"], normalize=True)))
"""


def llama_cpp_reference(
    texts: list[str], pooling: str = "mean", batch: int = 1024
) -> npt.NDArray[np.float64]:
    """llama-cpp-python's own embedding call (llama.cpp pools in its graph), in a child."""
    args = {
        "path": str(default_spec().gguf_path()),
        "pooling": POOLING[pooling],
        "texts": texts,
        "batch": batch,
    }
    out = subprocess.run(
        [sys.executable, "-c", _REFERENCE],
        input=json.dumps(args),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return np.array(json.loads(out.stdout))


def cosines(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> list[float]:
    return [float(x @ y / np.linalg.norm(x) / np.linalg.norm(y)) for x, y in zip(a, b, strict=True)]


async def test_vectors_are_unit_length_and_the_models_size(engine: LlamaEngine) -> None:
    result = await engine.embed(["Hello there.", "A second, longer text to embed."])
    size = engine.capabilities().embedding_dimensions
    assert size == 576
    assert result.vectors.shape == (2, size)
    assert result.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    tokens = [
        len(await engine.tokenize(t)) for t in ("Hello there.", "A second, longer text to embed.")
    ]
    assert result.tokens == tuple(tokens)  # SmolLM2's vocabulary adds no BOS


async def test_mean_pooling_equals_llama_cpps_own(engine: LlamaEngine) -> None:
    """Short texts (several per batch) and one longer than the engine's 256-token batch,
    which gemserve pools over two decodes and llama.cpp (a 1024-token batch) over one."""
    texts = [
        *TRIPLES[0],
        " ".join(f"sentence number {i} about rivers and lakes." for i in range(30)),
    ]
    ours = await engine.embed(texts)
    assert ours.tokens[-1] > 256
    reference = llama_cpp_reference(texts)
    assert min(cosines(ours.vectors, reference)) > 0.998


async def test_last_token_pooling_equals_llama_cpps_own() -> None:
    engine = make_engine(slots=1, embedding_pooling="last")
    await engine.start()
    try:
        texts = list(TRIPLES[1])
        ours = await engine.embed(texts)
    finally:
        await engine.close()
    assert min(cosines(ours.vectors, llama_cpp_reference(texts, "last"))) > 0.998


async def test_a_text_alone_and_in_a_batch_get_the_same_vector(engine: LlamaEngine) -> None:
    alone = await engine.embed([TRIPLES[2][0]])
    batched = await engine.embed([*TRIPLES[0], TRIPLES[2][0], *TRIPLES[1]])
    assert cosines(alone.vectors, batched.vectors[3:4])[0] > 0.9999


async def test_paraphrases_are_closer_than_unrelated_texts(engine: LlamaEngine) -> None:
    result = await engine.embed([text for triple in TRIPLES for text in triple])
    v = result.vectors
    for i in range(0, len(v), 3):
        paraphrase, unrelated = float(v[i] @ v[i + 1]), float(v[i] @ v[i + 2])
        assert paraphrase > unrelated + 0.1, (TRIPLES[i // 3], paraphrase, unrelated)


async def test_token_ids_embed_like_their_text(engine: LlamaEngine) -> None:
    text = "Token ids are embedded as they are."
    ids = await engine.tokenize(text)
    result = await engine.embed([text, ids])
    assert cosines(result.vectors[:1], result.vectors[1:])[0] > 0.9999


@pytest.mark.parametrize(
    ("inputs", "index", "fragment"),
    [
        (["fine", "word " * 600], 1, "embeds at most 512 tokens"),
        (["fine", []], 1, "nothing to embed"),
        ([[1, 2, 49152]], 0, "not in the vocabulary"),
        ([[-1]], 0, "not in the vocabulary"),
    ],
)
async def test_inputs_it_cannot_embed_are_named_by_index(
    engine: LlamaEngine, inputs: list[str | list[int]], index: int, fragment: str
) -> None:
    with pytest.raises(InvalidEmbeddingInput, match=fragment) as info:
        await engine.embed(inputs)
    assert info.value.index == index


async def test_requests_share_batches_and_generation_keeps_stepping(engine: LlamaEngine) -> None:
    stats = engine.stats().extra
    steps_before = stats["embedding_decode_steps"]
    texts_before = stats["embedding_texts"]
    generation = asyncio.create_task(run(engine, request(QUESTIONS[0][0])))
    calls = [engine.embed([f"Text {i}: {t}" for t in TRIPLES[i % 3]]) for i in range(8)]
    results = await asyncio.gather(*calls)
    text, _ = await generation
    assert "paris" in text.lower()
    assert all(r.vectors.shape == (3, 576) for r in results)
    stats = engine.stats().extra
    assert stats["embedding_texts"] - texts_before == 24
    # 24 short texts (about 15 tokens each) fit a few 256-token batches, not 24 decodes.
    assert stats["embedding_decode_steps"] - steps_before <= 4


async def test_a_cancelled_request_frees_its_cells(engine: LlamaEngine) -> None:
    before = engine.stats().extra["embedding_texts"]
    long_texts = ["paragraph " * 200] * 20
    task = asyncio.create_task(engine.embed(long_texts))
    await poll_engine(lambda: engine.stats().extra["embedding_active"] > 0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await poll_engine(
        lambda: (
            engine.stats().extra["embedding_active"] == 0
            and engine.stats().extra["embedding_queued"] == 0
        )
    )
    assert engine.stats().extra["embedding_texts"] - before < 20  # it did not run to the end
    after = await engine.embed(["still works"])
    assert after.vectors.shape == (1, 576)


@pytest.fixture
async def fresh_engine() -> AsyncIterator[LlamaEngine]:
    engine = make_engine(slots=1)
    await engine.start()
    yield engine
    await engine.close()


async def test_the_embedding_context_is_made_on_first_use(fresh_engine: LlamaEngine) -> None:
    assert fresh_engine.stats().extra["embedding_decode_steps"] == 0
    await fresh_engine.embed(["first"])
    assert fresh_engine.stats().extra["embedding_decode_steps"] == 1


async def test_statsz_counts_the_sequences_each_decode_packs(engine: LlamaEngine) -> None:
    """Three short texts of one request go in one decode of three sequences: the counters
    a packing investigation reads (sequences per decode) say so."""
    before = engine.stats().extra
    await engine.embed(["one", "two", "three"])
    after = engine.stats().extra
    assert after["embedding_decode_steps"] - before["embedding_decode_steps"] == 1
    assert after["embedding_sequences_decoded"] - before["embedding_sequences_decoded"] == 3
    assert after["embedding_threads"] >= 1


async def test_the_lm_head_is_skipped_without_changing_a_vector(
    fresh_engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """setup's build compiles gemserve's eval callback into libllama: the bundled model's
    embedding decodes end at the embeddings' node, before the LM head (the callback counts
    each), and give the vectors of the whole graph (an engine whose libllama lacks the
    callback runs it)."""
    texts = [*TRIPLES[0], *TRIPLES[1]]
    short = await fresh_engine.embed(texts)
    stats = fresh_engine.stats().extra
    assert stats["embedding_skips_output_head"] == 1.0
    # Every decode ended at the embeddings' node: the probe's short decode, and this one.
    assert stats["embedding_output_heads_skipped"] == stats["embedding_decode_steps"] + 1

    monkeypatch.setattr(embedding, "head_skipping_callback", lambda: None)
    whole_graph = make_engine(slots=1)
    await whole_graph.start()
    try:
        whole = await whole_graph.embed(texts)
        assert whole_graph.stats().extra["embedding_skips_output_head"] == 0.0
        assert whole_graph.stats().extra["embedding_output_heads_skipped"] == 0.0
    finally:
        await whole_graph.close()
    # Identical on one context (the probe checks that); across two engines the thread
    # governor may pick other thread counts, so allow float32 rounding, nothing more.
    assert np.allclose(short.vectors, whole.vectors, rtol=0, atol=1e-6)
