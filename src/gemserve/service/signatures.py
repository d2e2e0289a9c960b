"""Thought signatures: opaque, tamper-evident tokens that carry a thought back to the server.

A client that keeps history itself (stateless multi-turn) sends ``thought`` steps back with
their ``signature``; the signature alone restores the thought, so it holds the thought text,
compressed and encrypted (Fernet: AES-CBC with an HMAC-SHA256 tag) with a key that never
leaves the server. A changed byte fails the tag, and the text stays hidden when summaries
were not asked for. The key lives in the data directory (or comes from the configuration,
so that replicas share it).
"""

from __future__ import annotations

import base64
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from gemserve.errors import InvalidArgument

KEY_FILE = "thought-signing.key"
VERSION = 1


@dataclass(frozen=True)
class SignedThought:
    text: str
    model: str  # the model id that thought it
    interaction_id: str


def load_or_create_key(data_dir: Path) -> bytes:
    """The signing key, made at first start (readable by the server's user only)."""
    path = data_dir / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    key = Fernet.generate_key()
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


class ThoughtSigner:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def sign(self, thought: SignedThought) -> str:
        payload = json.dumps(
            {"v": VERSION, "t": thought.text, "m": thought.model, "i": thought.interaction_id},
            separators=(",", ":"),
        ).encode()
        return self._fernet.encrypt(zlib.compress(payload)).decode()

    def open(self, signature: str) -> SignedThought | None:
        """The thought a signature carries, or None if it was changed or made elsewhere."""
        try:
            raw = zlib.decompress(self._fernet.decrypt(signature.encode()))
            data = json.loads(raw)
            if data.get("v") != VERSION:
                return None
            return SignedThought(str(data["t"]), str(data["m"]), str(data["i"]))
        except (InvalidToken, ValueError, KeyError, TypeError, zlib.error):
            return None

    def verify(self, signature: str, field: str) -> SignedThought:
        """The thought a signature carries; 400 naming ``field`` (its path in the request) if
        it was changed or made elsewhere."""
        thought = self.open(signature)
        if thought is None:
            raise InvalidArgument(
                f"Invalid value at '{field}': the thought signature is not valid (it "
                "was changed, or it was not issued by this server)."
            )
        return thought


class ThoughtSealer:
    """Signs one turn's finished thought, bound to the model and the request that thought it."""

    def __init__(self, signer: ThoughtSigner, model_id: str, request_id: str) -> None:
        self._signer = signer
        self._model_id = model_id
        self._request_id = request_id

    def seal(self, thought: str) -> str:
        return self._signer.sign(SignedThought(thought, self._model_id, self._request_id))


# Signatures Gemini documents for calls a client wrote itself (no thought behind them), which
# frameworks (LangChain) send for calls that lost theirs: as sent, or base64 of the text.
_PLACEHOLDERS = ("skip_thought_signature_validator", "context_engineering_is_the_way_to_go")
PLACEHOLDER_SIGNATURES = frozenset(
    [*_PLACEHOLDERS, *(base64.b64encode(p.encode()).decode() for p in _PLACEHOLDERS)]
)


def is_placeholder(signature: str) -> bool:
    """A documented placeholder: accepted, and there is no thought to restore."""
    return signature in PLACEHOLDER_SIGNATURES
