"""Loading a GGUF and the small native helpers the scheduler needs (tokenize, pieces, logging).

Everything here wraps llama-cpp-python's low-level C bindings; nothing above the engine
package imports ``llama_cpp``.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import llama_cpp as llama
import llama_cpp.mtmd_cpp as mtmd

from gemserve.engine.llama.guidance import tokenizer_for, validate
from gemserve.engine.llama.sampling import Grammar
from gemserve.engine.llama.variants import load_cpu_backend

log = logging.getLogger("gemserve.llama")

# ggml_log_level: 1 debug, 2 info, 3 warn, 4 error, 5 continuation of the previous line.
_LEVELS = {3: logging.WARNING, 4: logging.ERROR}


@llama.llama_log_callback  # type: ignore[untyped-decorator]
def _route_native_log(level: int, text: bytes, _user_data: Any) -> None:
    # llama.cpp logs every tensor at load: its info lines go to DEBUG, warnings and errors stay.
    py_level = _LEVELS.get(level, logging.DEBUG)
    if log.isEnabledFor(py_level):
        log.log(py_level, "%s", text.decode("utf-8", "replace").rstrip())


_init_lock = threading.Lock()


def init_backend() -> None:
    """Initialise llama.cpp once per process (idempotent) and route its logs. A portable
    build's CPU variant is chosen first (variants.py), or ggml would pick one by CPUID."""
    with _init_lock:
        llama.llama_log_set(_route_native_log, ctypes.c_void_p(0))
        mtmd.mtmd_log_set(_route_native_log, ctypes.c_void_p(0))
        mtmd.mtmd_helper_log_set(_route_native_log, ctypes.c_void_p(0))
        # Where llama_cpp loaded its libraries from (LLAMA_CPP_LIB_PATH can move them).
        load_cpu_backend(Path(llama.llama_cpp._base_path))
        llama.llama_backend_init()


def progress_hook(report: Callable[[float], None]) -> Any:
    """llama.cpp's load-progress callback over ``report`` (a fraction, 0.0 to 1.0). It never
    cancels the load: a reporter that raises is logged once and not called again (an
    exception cannot cross the C frames, and ctypes would answer false, which aborts)."""
    failed = False

    def call(fraction: float, _user_data: Any) -> bool:
        nonlocal failed
        if not failed:
            try:
                report(fraction)
            except Exception:
                failed = True
                log.exception("load progress reporting failed; the load goes on without it")
        return True

    return llama.llama_progress_callback(call)


class LoadedModel:
    """A GGUF model and its vocabulary; safe to tokenize from any thread. ``progress`` hears
    the weights' load as fractions up to 1.0 (from this thread, during the constructor)."""

    def __init__(self, path: Path, progress: Callable[[float], None] | None = None) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        init_backend()
        params = llama.llama_model_default_params()
        # Referenced here until the load returns: llama.cpp keeps only the C pointer, and a
        # collected ctypes callback would be called after it was freed.
        hook = None
        if progress is not None:
            hook = progress_hook(progress)
            params.progress_callback = hook
            hook(0.0, None)  # the clock starts with the file's metadata, before any tensor
        model = llama.llama_model_load_from_file(str(path).encode(), params)
        del hook
        if not model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        self.ptr = model
        self.vocab = llama.llama_model_get_vocab(model)
        self.n_vocab: int = llama.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train: int = llama.llama_model_n_ctx_train(model)
        self._pieces: dict[int, bytes] = {}
        self._guidance: Any = None
        self._guidance_lock = threading.Lock()
        self._eog: tuple[int, ...] | None = None

    def metadata(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = llama.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            llama.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace")

    def chat_template(self) -> str | None:
        raw = llama.llama_model_chat_template(self.ptr, None)
        return raw.decode("utf-8") if raw else None

    def special_token_text(self, token: int) -> str:
        buf = ctypes.create_string_buffer(256)
        n = llama.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", "replace")

    def special_token(self, text: str) -> int | None:
        """The control or user-defined token that is exactly ``text`` (a format's marker, a
        thought tag), or None when the vocabulary writes it with ordinary tokens."""
        tokens = self.tokenize(text, add_special=False, parse_special=True)
        if len(tokens) != 1:
            return None
        attr = llama.llama_vocab_get_attr(self.vocab, tokens[0])
        special = llama.LLAMA_TOKEN_ATTR_CONTROL | llama.LLAMA_TOKEN_ATTR_USER_DEFINED
        if not attr & special or self.special_token_text(tokens[0]) != text:
            return None
        return tokens[0]

    def bos_eos_text(self) -> tuple[str, str]:
        bos = llama.llama_vocab_bos(self.vocab)
        eos = llama.llama_vocab_eos(self.vocab)
        return (
            self.special_token_text(bos) if bos >= 0 else "",
            self.special_token_text(eos) if eos >= 0 else "",
        )

    def tokenize(
        self, text: str, *, add_special: bool = True, parse_special: bool = True
    ) -> list[int]:
        """Tokenize text. ``parse_special``: special-token text (a template's markers) becomes
        those tokens; off for generated text, which the model wrote as ordinary pieces."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        tokens = (llama.llama_token * capacity)()
        n = llama.llama_tokenize(
            self.vocab, data, len(data), tokens, capacity, add_special, parse_special
        )
        if n < 0:
            capacity = -n
            tokens = (llama.llama_token * capacity)()
            n = llama.llama_tokenize(
                self.vocab, data, len(data), tokens, capacity, add_special, parse_special
            )
        return list(tokens[:n])

    def piece(self, token: int) -> bytes:
        """Bytes of one token (specials rendered empty). Cached; called on the engine thread."""
        cached = self._pieces.get(token)
        if cached is None:
            buf = ctypes.create_string_buffer(64)
            n = llama.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = llama.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
            cached = buf.raw[:n]
            self._pieces[token] = cached
        return cached

    def grammar_is_valid(self, grammar: Grammar) -> bool:
        return self.grammar_error(grammar) is None

    def grammar_error(self, grammar: Grammar) -> str | None:
        """Why this grammar cannot constrain this vocabulary, or None: llguidance's own
        message, or llama.cpp's refusal to parse the GBNF from its root rule."""
        if grammar.syntax == "llguidance":
            return validate(self.guidance_tokenizer(), grammar.text)
        sampler = llama.llama_sampler_init_grammar(
            self.vocab, grammar.text.encode(), grammar.root.encode()
        )
        if not sampler:
            return "llama.cpp cannot parse the grammar"
        llama.llama_sampler_free(sampler)
        return None

    def guidance_tokenizer(self) -> Any:
        """llguidance's view of the vocabulary, built on first use (about 0.2 s)."""
        with self._guidance_lock:
            if self._guidance is None:
                self._guidance = tokenizer_for(self.vocab)
            return self._guidance

    def is_eog(self, token: int) -> bool:
        return bool(llama.llama_vocab_is_eog(self.vocab, token))

    def eog_tokens(self) -> tuple[int, ...]:
        """Every end-of-generation token of the vocabulary (found once, a few ms)."""
        if self._eog is None:
            self._eog = tuple(t for t in range(self.n_vocab) if self.is_eog(t))
        return self._eog

    def free(self) -> None:
        if self.ptr:
            llama.llama_model_free(self.ptr)
            self.ptr = None
