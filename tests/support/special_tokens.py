"""A copy of the bundled model whose format markers are special tokens, as in real GGUFs.

Mistral's ``[TOOL_CALLS]``/``[ARGS]``/``[CALL_ID]``, Llama 3's ``<|python_tag|>``, Qwen's
``<tool_call>`` and the thought tags are single control or user-defined tokens in the models
that use them; no model here has them. SmolLM2's vocabulary opens with 17 control tokens,
most of them code-corpus markers a chat never uses (``<repo_name>``, ``<jupyter_start>``, …):
the copy renames some of those ids and sets their type, and copies every other metadata field
and every tensor unchanged (the weights do not know a token's text). Written with the ``gguf``
package in about a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import gguf

CONTROL = int(gguf.TokenType.CONTROL)
USER_DEFINED = int(gguf.TokenType.USER_DEFINED)

# id → (text, type). Control tokens render as nothing unless asked (llama.cpp), and
# llguidance sees them as special; user-defined ones render as their text, and llguidance
# treats those written like ``<…>`` as special too.
MARKERS: dict[int, tuple[str, int]] = {
    3: ("[TOOL_CALLS]", CONTROL),
    4: ("[ARGS]", CONTROL),
    5: ("[CALL_ID]", CONTROL),
    6: ("<|python_tag|>", CONTROL),
    7: ("<tool_call>", USER_DEFINED),
    8: ("</tool_call>", USER_DEFINED),
    9: ("<think>", USER_DEFINED),
    10: ("</think>", CONTROL),
}


EOS_KEY = gguf.Keys.Tokenizer.EOS_ID
PAD_KEY = gguf.Keys.Tokenizer.PAD_ID
END_OF_TURN = 2  # <|im_end|>: the token SmolLM2 ends its turns with
SPARE = 11  # <jupyter_start>


def write_swapped_model(source: Path, target: Path, marker: str) -> SpecialTokenModel:
    """The copy where ``marker`` (a control token) is the token SmolLM2 ends its turns with,
    and ``<|im_end|>`` moves to a spare id and stays the end of generation. The model then
    writes the marker where it would have ended its turn: a short thought ends with the
    closing tag, an answer that would have been empty opens a call. A renamed rare token is
    never written unasked (the small model does not copy it from its history)."""
    renames = {token: named for token, named in MARKERS.items() if named[0] != marker}
    renames[END_OF_TURN] = (marker, CONTROL)
    renames[SPARE] = ("<|im_end|>", CONTROL)
    return write_special_token_model(source, target, renames, eos=SPARE)


@dataclass(frozen=True)
class SpecialTokenModel:
    """The copy, and the id each marker has in it."""

    gguf: Path
    ids: Mapping[str, int]


def write_special_token_model(
    source: Path,
    target: Path,
    renames: Mapping[int, tuple[str, int]] = MARKERS,
    eos: int | None = None,
) -> SpecialTokenModel:
    """Copy ``source`` to ``target`` with the tokens ``renames`` names given new texts and
    types (and ``eos`` as the end-of-sequence and padding token); everything else is copied
    as it is."""
    reader = gguf.GGUFReader(source)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(target, arch=arch, endianess=reader.endianess)
    alignment = reader.fields.get(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = alignment.contents()
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        value = field.contents()
        if field.name == gguf.Keys.Tokenizer.LIST:
            value = list(value)
            for token, (text, _) in renames.items():
                value[token] = text
        elif field.name == gguf.Keys.Tokenizer.TOKEN_TYPE:
            value = list(value)
            for token, (_, kind) in renames.items():
                value[token] = kind
        elif eos is not None and field.name in (EOS_KEY, PAD_KEY):
            value = eos
        kind = field.types[0]
        sub_type = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, kind, sub_type=sub_type)
    for tensor in reader.tensors:
        writer.add_tensor_info(
            tensor.name,
            tensor.data.shape,
            tensor.data.dtype,
            tensor.data.nbytes,
            tensor.tensor_type,
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()
    return SpecialTokenModel(target, {text: token for token, (text, _) in renames.items()})
