"""Wire shapes of embedding batches: the ``models/{model}:asyncBatchEmbedContent`` body (what
``client.batches.create_embeddings`` / ``batches.createEmbeddings`` send, either casing) and
each request's stored response.

The body is ``{batch: {displayName, inputConfig: {requests: {requests: [{request, metadata}]}}
| {file_name}}}``, each ``request`` an ``EmbedContentRequest`` (``content``, ``taskType``,
``title``, ``outputDimensionality``). The batch is then the same operation as a generate
batch (``protocol/classic/batches.py``) with the ``EmbedContentBatch`` ``@type``: the output is
``inlinedResponses.inlinedResponses`` (``[{response: {embedding: {values}}, metadata}]``; the
SDKs rename it ``inlined_embed_content_responses`` because the responses hold ``embedding``)
or ``responsesFile``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import Field, StrictStr

from gemserve.errors import InvalidArgument
from gemserve.protocol.classic.batches import InlinedRequest, InputConfig, batch_source
from gemserve.protocol.classic.embed import embed_content_response
from gemserve.protocol.common import ProtoInt, WireModel, validate_body


class EmbedContentBatch(WireModel):
    display_name: StrictStr | None = Field(default=None, max_length=512)
    input_config: InputConfig | None = None
    # Some clients repeat the path's model here.
    model: StrictStr | None = None
    # Accepted, not used: batches run oldest first.
    priority: ProtoInt | None = None


class AsyncBatchEmbedContent(WireModel):
    """The body of ``models/{model}:asyncBatchEmbedContent``."""

    batch: EmbedContentBatch | None = None

    @classmethod
    def parse(cls, body: Any) -> tuple[EmbedContentBatch, list[InlinedRequest] | str]:
        """The batch, and its inline requests or the name of its input file."""
        batch = validate_body(cls, body).batch
        if batch is None:
            raise InvalidArgument("Missing required field 'batch'.")
        return batch, batch_source(batch.input_config)


def stored_embed_response(vector: npt.NDArray[np.float32], tokens: int) -> dict[str, Any]:
    """One request's ``EmbedContentResponse`` as plain JSON for the store: each value is the
    float32's shortest text read back, so the batch answers the very numbers ``:embedContent``
    writes."""
    response: dict[str, Any] = orjson.loads(
        orjson.dumps(embed_content_response(vector, tokens), option=orjson.OPT_SERIALIZE_NUMPY)
    )
    return response
