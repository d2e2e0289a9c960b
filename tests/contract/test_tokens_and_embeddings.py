"""countTokens and embeddings against a live gemserve, driven by the official Python SDK
(``models.count_tokens``, ``models.embed_content``), the JS SDK
(``js/tokens_and_embeddings.mjs``), the ``openai`` SDK (``embeddings.create``) and curl."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.support.contract import API_KEY, MODEL, run_js_example
from tests.support.server import LiveServer
from tests.support.tokenizer import Tokenizer

pytestmark = pytest.mark.contract

EMBEDDING_MODEL = "gemini-embedding-001"  # an alias of the default model
SIZE = 576  # SmolLM2-135M's hidden size
# Near-paraphrases, and a text about something else (see tests/engine/llama/test_embeddings.py).
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
]


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> genai.Client:
    return genai.Client(
        api_key=API_KEY, http_options=types.HttpOptions(base_url=live_server.base_url)
    )


@pytest.fixture(scope="module")
def oai(live_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(api_key=API_KEY, base_url=f"{live_server.base_url}/v1beta/openai/")


def prompt_tokens(client: genai.Client, contents: Any) -> int:
    config = types.GenerateContentConfig(temperature=0.0, max_output_tokens=1)
    response = client.models.generate_content(model=MODEL, contents=contents, config=config)
    count = response.usage_metadata.prompt_token_count
    assert count is not None
    return count


def unit(values: Any) -> npt.NDArray[np.float64]:
    vector = np.array(values, dtype=np.float64)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)
    return vector


# ----- countTokens ----------------------------------------------------------------------------


def test_count_tokens_equals_the_prompt_of_a_generation(
    client: genai.Client, tokenizer: Tokenizer
) -> None:
    counted = client.models.count_tokens(model=MODEL, contents="Name a colour.")
    assert counted.total_tokens == prompt_tokens(client, "Name a colour.")
    assert counted.total_tokens == tokenizer.prompt_tokens("Name a colour.")


def test_count_tokens_of_a_conversation(client: genai.Client) -> None:
    history = [
        types.Content(role="user", parts=[types.Part(text="My name is Ana.")]),
        types.Content(role="model", parts=[types.Part(text="Hello Ana! How can I help?")]),
        types.Content(role="user", parts=[types.Part(text="What is my name?")]),
    ]
    counted = client.models.count_tokens(model=MODEL, contents=history)
    assert counted.total_tokens == prompt_tokens(client, history)


def test_count_tokens_counts_an_uploaded_document(client: genai.Client, tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    path.write_text("The secret word is pelican.\n")
    uploaded = client.files.upload(file=path, config={"mime_type": "text/plain"})
    contents = [uploaded, "What is the secret word?"]
    counted = client.models.count_tokens(model=MODEL, contents=contents)
    alone = client.models.count_tokens(model=MODEL, contents="What is the secret word?")
    assert counted.total_tokens == prompt_tokens(client, contents)
    assert counted.total_tokens > alone.total_tokens


def test_count_tokens_errors_are_sdk_errors(client: genai.Client) -> None:
    with pytest.raises(genai_errors.ClientError) as info:
        client.models.count_tokens(model="no-such-model", contents="hi")
    assert info.value.code == 404
    with pytest.raises(genai_errors.ClientError) as info:
        client.models.count_tokens(
            model=MODEL, contents=[types.Part.from_bytes(data=b"\x89PNG", mime_type="image/png")]
        )
    assert info.value.code == 400
    assert "contents[0].parts[0].inline_data" in str(info.value.message)


# ----- embeddings: the Python SDK --------------------------------------------------------------


def test_embed_content_one_and_several(client: genai.Client) -> None:
    one = client.models.embed_content(model=EMBEDDING_MODEL, contents="Hello world")
    assert one.embeddings is not None
    (embedding,) = one.embeddings
    assert len(unit(embedding.values)) == SIZE
    several = client.models.embed_content(
        model=f"models/{EMBEDDING_MODEL}", contents=["Hello world", "Goodbye", "Third text"]
    )
    assert several.embeddings is not None
    vectors = [unit(e.values) for e in several.embeddings]
    assert len(vectors) == 3
    assert float(vectors[0] @ unit(embedding.values)) == pytest.approx(1.0, abs=1e-4)


def test_output_dimensionality_truncates_and_renormalises(client: genai.Client) -> None:
    full = client.models.embed_content(model="text-embedding-004", contents="Truncate me")
    short = client.models.embed_content(
        model="text-embedding-004",
        contents="Truncate me",
        config=types.EmbedContentConfig(output_dimensionality=64),
    )
    assert full.embeddings is not None
    assert short.embeddings is not None
    head = np.array(full.embeddings[0].values[:64])
    cut = unit(short.embeddings[0].values)
    assert cut.shape == (64,)
    assert np.allclose(cut, head / np.linalg.norm(head), atol=1e-5)


def test_task_types_and_titles_are_taken(client: genai.Client) -> None:
    query = client.models.embed_content(
        model=EMBEDDING_MODEL,
        contents="how do cats purr",
        config=types.EmbedContentConfig(task_type="RETRIEVAL_QUERY"),
    )
    document = client.models.embed_content(
        model=EMBEDDING_MODEL,
        contents="Cats purr by vibrating their vocal folds.",
        config=types.EmbedContentConfig(task_type="RETRIEVAL_DOCUMENT", title="Cats"),
    )
    plain = client.models.embed_content(model=EMBEDDING_MODEL, contents="how do cats purr")
    assert query.embeddings
    assert document.embeddings
    assert plain.embeddings
    # The task's prompt is part of what was embedded.
    assert float(unit(query.embeddings[0].values) @ unit(plain.embeddings[0].values)) < 0.9999


def test_paraphrases_are_closer_than_unrelated_texts(client: genai.Client) -> None:
    for triple in TRIPLES:
        response = client.models.embed_content(model=EMBEDDING_MODEL, contents=list(triple))
        assert response.embeddings is not None
        a, b, c = (unit(e.values) for e in response.embeddings)
        assert float(a @ b) > float(a @ c) + 0.1, triple


def test_embedding_errors_are_400s(client: genai.Client) -> None:
    with pytest.raises(genai_errors.ClientError) as info:
        client.models.embed_content(
            model=EMBEDDING_MODEL,
            contents="hi",
            config=types.EmbedContentConfig(output_dimensionality=SIZE + 1),
        )
    assert info.value.code == 400
    assert "requests[0].output_dimensionality" in str(info.value.message)
    with pytest.raises(genai_errors.ClientError) as info:
        client.models.embed_content(model=EMBEDDING_MODEL, contents="word " * 5000)
    assert info.value.code == 400
    assert "requests[0].content" in str(info.value.message)


# ----- embeddings: the openai SDK ------------------------------------------------------------


def test_openai_embeddings_base64_by_default_and_float(oai: openai.OpenAI) -> None:
    texts = ["Hello world", "Goodbye"]
    default = oai.embeddings.create(model=EMBEDDING_MODEL, input=texts)
    floats = oai.embeddings.create(model=EMBEDDING_MODEL, input=texts, encoding_format="float")
    assert default.object == "list"
    assert [d.index for d in default.data] == [0, 1]
    for a, b in zip(default.data, floats.data, strict=True):
        assert len(a.embedding) == SIZE
        assert np.allclose(unit(a.embedding), unit(b.embedding), atol=1e-6)
    assert default.usage.prompt_tokens == default.usage.total_tokens > 0
    assert default.model == EMBEDDING_MODEL


def test_openai_dimensions_and_errors(oai: openai.OpenAI) -> None:
    short = oai.embeddings.create(model=EMBEDDING_MODEL, input="Hello", dimensions=32)
    assert len(unit(short.data[0].embedding)) == 32
    with pytest.raises(openai.BadRequestError) as info:
        oai.embeddings.create(model=EMBEDDING_MODEL, input=["fine", ""])
    assert "input[1]" in info.value.message
    with pytest.raises(openai.NotFoundError):
        oai.embeddings.create(model="no-such-model", input="hi")


# ----- curl ------------------------------------------------------------------------------------


def _curl(live_server: LiveServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [
            "curl", "-s", "-X", "POST", f"{live_server.base_url}{path}",
            "-H", f"x-goog-api-key: {API_KEY}", "-H", "Content-Type: application/json",
            "-d", json.dumps(body),
        ],
        capture_output=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_count_tokens_and_embed_content(live_server: LiveServer, tokenizer: Tokenizer) -> None:
    counted = _curl(
        live_server,
        f"/v1beta/models/{MODEL}:countTokens",
        {
            "generateContentRequest": {
                "model": f"models/{MODEL}",
                "contents": [{"role": "user", "parts": [{"text": "Name a colour."}]}],
                "systemInstruction": {"parts": [{"text": "Be brief."}]},
            }
        },
    )
    expected = tokenizer.prompt_tokens("Name a colour.", system="Be brief.")
    assert counted == {
        "totalTokens": expected,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": expected}],
    }
    embedded = _curl(
        live_server,
        f"/v1beta/models/{EMBEDDING_MODEL}:embedContent",
        {
            "model": f"models/{EMBEDDING_MODEL}",
            "content": {"parts": [{"text": "What is the meaning of life?"}]},
        },
    )
    assert len(unit(embedded["embedding"]["values"])) == SIZE


# ----- the JS SDK --------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_sdk_count_tokens_and_embed_content(live_server: LiveServer) -> None:
    seen = run_js_example(live_server.base_url, "tokens_and_embeddings.mjs")
    assert seen["counted"] == seen["promptTokens"] > 0
    a, b, c = (unit(v) for v in seen["embeddings"])
    assert len(a) == SIZE
    assert float(a @ b) > float(a @ c) + 0.1
    assert seen["shortLength"] == 64
    assert seen["badStatus"] == 400
    assert "output_dimensionality" in seen["badMessage"]
