"""Tool-call quality on a BFCL v4 subset: gemserve against llama-server, same GGUF, same requests.

The first ``--per-category`` entries (50; 10 with ``--quick``) of BFCL v4's simple (Python),
multiple, parallel and irrelevance categories, read from the ``bfcl-eval`` wheel on PyPI
(downloaded once with pip into ``~/.cache/gemserve/bench/``; only its data files and its AST
checker are used, nothing is installed). Each entry goes as one OpenAI chat completion:
``messages`` = the entry's first turn, ``tools`` = its functions converted as BFCL converts
them for OpenAI models (Python hint appended to descriptions, "." in names → "_", "dict" →
"object", "float" → "number", "tuple" → "array", "any" → "string"), ``parallel_tool_calls``
true, temperature 0, ``max_tokens`` 128 with ``tool_choice`` "auto" and 256 with "required".
Systems (``--systems``; NAME-required sends ``tool_choice`` "required", never on irrelevance):

- ``gemserve``: ``gemserve serve --slots 1``, ``POST /v1beta/openai/chat/completions``;
- ``llama-server``: ``llama-server --jinja --temp 0 -np 1`` (bench/build_llama_server.sh) on
  the same GGUF with the GGUF's own chat template, ``POST /v1/chat/completions``;
- ``llama-server-qwen``: the same with ``--chat-template-file`` Qwen 2.5's template (shipped
  in the llama.cpp sources that build_llama_server.sh unpacks): ChatML like SmolLM2's, with a
  tool section and ``<tool_call>`` calls, which llama.cpp parses and constrains. SmolLM2's own
  template has no tool section, and with it llama-server leaves the tools out of the prompt.

llama-server gets gemserve's repeat penalty for this model (1.15 over the last 256 tokens;
``--llama-repeat-penalty 1`` for llama-server's default). Systems take turns entry by entry,
the order rotated each entry, one request at a time.

Scoring is BFCL's own: ``bfcl_eval.eval_checker.ast_eval.ast_checker`` imported from the wheel
(its one heavy import, the model registry, is replaced by a stub that says every model's
function names have "." written as "_", as for OpenAI models). A response without
``tool_calls`` decodes to no call: wrong for simple/multiple/parallel, right for irrelevance.
Besides accuracy, every produced call is checked on its own: its name is a declared tool,
its arguments parse as a JSON object and validate (``jsonschema``, draft 2020-12) against the
parameters schema that was sent. Target (issue 11): 100% of produced calls valid on gemserve,
and gemserve's AST accuracy ≥ llama-server's.

Every request and response is written to ``bench/out/bfcl/<time>.jsonl``; ``--examples N``
prints up to N entries per category where gemserve is wrong and a llama-server right.
About 15 s per entry on a busy 2-core machine with the default four systems.

    .venv/bin/python bench/bench_bfcl.py [--per-category 50] [--quick] [--systems ...] \
        [--omp-wait-policy passive]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import sys
import time
import types
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from common import (
    API_KEY,
    LLAMA_SERVER_BIN,
    LLAMA_SERVER_DIR,
    MODEL_ID,
    OUT_DIR,
    REPEAT_LAST_N,
    REPEAT_PENALTY,
    Server,
    ServerError,
    add_omp_argument,
    apply_omp_policy,
    exit_on_sigterm,
    gemserve_server,
    llama_server,
    md_table,
    print_preamble,
)

CACHE = Path.home() / ".cache" / "gemserve" / "bench"
CATEGORIES: dict[str, str] = {
    "simple": "BFCL_v4_simple_python",
    "multiple": "BFCL_v4_multiple",
    "parallel": "BFCL_v4_parallel",
    "irrelevance": "BFCL_v4_irrelevance",
}
# A system is a server and a tool_choice: NAME for "auto", NAME-required for "required".
SERVERS = ("gemserve", "llama-server", "llama-server-qwen")
SYSTEMS = tuple(f"{s}{suffix}" for s in SERVERS for suffix in ("", "-required"))
DEFAULT_SYSTEMS = "gemserve,llama-server,llama-server-qwen,gemserve-required"
# A tool-aware ChatML template for llama-server-qwen: Qwen 2.5's, as the llama.cpp sources
# that build_llama_server.sh unpacks ship it (SmolLM2's own template has no tool section).
QWEN_TEMPLATE = (
    LLAMA_SERVER_DIR / "src" / "llama_cpp_python-0.3.36" / "vendor" / "llama.cpp" / "models"
    / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja"
)  # fmt: skip
# BFCL's hint for Python categories (bfcl_eval/utils.py, _get_language_specific_hint).
PYTHON_HINT = " Note that the provided function is in Python 3 syntax."


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-category", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="10 entries per category")
    parser.add_argument("--categories", default=",".join(CATEGORIES))
    parser.add_argument("--systems", default=DEFAULT_SYSTEMS, help=f"from {','.join(SYSTEMS)}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=128,
        help='max_tokens with tool_choice "auto" (a call, when this model makes one, opens the '
        "answer; the cap bounds the prose answers, which are most of them)",
    )
    parser.add_argument(
        "--max-tokens-required",
        type=int,
        default=256,
        help='max_tokens with tool_choice "required" (room for 4 parallel calls)',
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument(
        "--llama-repeat-penalty",
        type=float,
        default=REPEAT_PENALTY,
        help="repeat_penalty sent to llama-server (gemserve applies 1.15 to this model)",
    )
    parser.add_argument("--bfcl-version", default="", help="a bfcl-eval version (default: cached)")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--examples", type=int, default=3)
    add_omp_argument(parser)
    args = parser.parse_args()
    if args.quick:
        args.per_category = 10
    args.categories = [c for c in args.categories.split(",") if c]
    args.systems = [s for s in args.systems.split(",") if s]
    for name in args.categories:
        if name not in CATEGORIES:
            parser.error(f"unknown category {name!r}")
    for name in args.systems:
        if name not in SYSTEMS:
            parser.error(f"unknown system {name!r}")
    return args


# ----- the BFCL wheel ----------------------------------------------------------------------


def bfcl_wheel(version: str, cache: Path) -> Path:
    """The bfcl-eval wheel, downloaded with pip (no dependencies) once and reused."""
    pattern = f"bfcl_eval-{version or '*'}-py3-none-any.whl"
    found = sorted(cache.glob(pattern))
    if found:
        return found[-1]
    cache.mkdir(parents=True, exist_ok=True)
    spec = f"bfcl-eval=={version}" if version else "bfcl-eval"
    print(f"downloading {spec} into {cache}", file=sys.stderr)
    import subprocess

    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", spec, "-d", str(cache)],
        check=True,
        stdout=sys.stderr,
    )
    found = sorted(cache.glob(pattern))
    if not found:
        raise SystemExit(f"pip left no {pattern} in {cache}")
    return found[-1]


def bfcl_checker(wheel: Path) -> tuple[Callable[..., dict[str, Any]], Any, dict[str, str]]:
    """BFCL's ``ast_checker``, ``Language.PYTHON`` and ``GORILLA_TO_OPENAPI`` from the wheel.

    ``ast_checker`` imports ``MODEL_CONFIG_MAPPING`` (every handler, with their SDKs) only to
    ask whether a model writes "." in function names as "_"; the stub answers yes, as for
    OpenAI-style models, whose tool names cannot hold a ".".
    """

    class _Config:
        underscore_to_dot = True

    class _Mapping(dict[str, Any]):
        def __missing__(self, key: str) -> _Config:
            return _Config()

    stub = types.ModuleType("bfcl_eval.constants.model_config")
    stub.MODEL_CONFIG_MAPPING = _Mapping()  # type: ignore[attr-defined]
    sys.modules["bfcl_eval.constants.model_config"] = stub
    sys.path.insert(0, str(wheel))
    from bfcl_eval.constants.enums import Language  # type: ignore[import-not-found]
    from bfcl_eval.constants.type_mappings import (  # type: ignore[import-not-found]
        GORILLA_TO_OPENAPI,
    )
    from bfcl_eval.eval_checker.ast_eval.ast_checker import (  # type: ignore[import-not-found]
        ast_checker,
    )

    return ast_checker, Language.PYTHON, GORILLA_TO_OPENAPI


def read_jsonl(wheel: Path, member: str) -> list[dict[str, Any]]:
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(member).decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass
class Entry:
    category: str
    id: str
    messages: list[dict[str, Any]]
    functions: list[dict[str, Any]]  # BFCL's docs, with the Python hint (what the checker reads)
    tools: list[dict[str, Any]]  # what is sent
    answer: list[dict[str, Any]] | None  # possible answers; None for irrelevance


def load_entries(
    wheel: Path, categories: list[str], n: int, mapping: dict[str, str]
) -> list[Entry]:
    entries: list[Entry] = []
    for category in categories:
        name = CATEGORIES[category]
        questions = read_jsonl(wheel, f"bfcl_eval/data/{name}.json")[:n]
        answers: dict[str, Any] = {}
        if category != "irrelevance":
            for row in read_jsonl(wheel, f"bfcl_eval/data/possible_answer/{name}.json"):
                answers[row["id"]] = row["ground_truth"]
        for q in questions:
            functions = copy.deepcopy(q["function"])
            for f in functions:
                f["description"] = f["description"] + PYTHON_HINT
            entries.append(
                Entry(
                    category=category,
                    id=q["id"],
                    messages=q["question"][0],
                    functions=functions,
                    tools=convert_to_tools(functions, mapping),
                    answer=answers.get(q["id"]) if category != "irrelevance" else None,
                )
            )
    return entries


# BFCL's convert_to_tool / _cast_to_openai_type (bfcl_eval/model_handler/utils.py) for
# ModelStyle.OPENAI_COMPLETIONS, reimplemented: "." in names becomes "_", the parameters'
# "type" becomes "object", every property type goes through GORILLA_TO_OPENAPI ("dict" →
# "object", "float" → "number" with "format": "float", "tuple" → "array", "any" → "string";
# unknown or missing → "string"), recursively for object properties and array items.
def _cast_types(properties: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    for value in properties.values():
        kind = value.get("type")
        if kind is None:
            value["type"] = "string"
        else:
            if kind == "float":
                value["format"] = "float"
                value["description"] = value.get("description", "") + " This is a float type value."
            value["type"] = mapping.get(kind, "string")
        if value["type"] in ("array", "object"):
            if "properties" in value:
                value["properties"] = _cast_types(value["properties"], mapping)
            elif "items" in value:
                items = value["items"]
                items["type"] = mapping[items["type"]]
                if items["type"] == "array" and "items" in items:
                    items["items"]["type"] = mapping[items["items"]["type"]]
                elif items["type"] == "object" and "properties" in items:
                    items["properties"] = _cast_types(items["properties"], mapping)
    return properties


def convert_to_tools(functions: list[dict[str, Any]], mapping: dict[str, str]) -> list[Any]:
    tools = []
    for f in copy.deepcopy(functions):
        f["name"] = f["name"].replace(".", "_")
        f["parameters"]["type"] = "object"
        f["parameters"]["properties"] = _cast_types(f["parameters"]["properties"], mapping)
        tools.append({"type": "function", "function": f})
    return tools


# ----- requests ------------------------------------------------------------------------------


@dataclass
class Outcome:
    system: str
    entry: Entry
    status: int = 0
    error: str = ""
    content: str | None = None
    calls: list[tuple[str, str]] = field(default_factory=list)  # (name, arguments text)
    finish: str = ""
    seconds: float = math.nan
    completion_tokens: int = 0
    correct: bool = False
    check_error: str = ""
    valid_calls: int = 0
    invalid_reasons: list[str] = field(default_factory=list)


def request_body(entry: Entry, system: str, args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL_ID,
        "messages": entry.messages,
        "tools": entry.tools,
        "tool_choice": "required" if system.endswith("-required") else "auto",
        "parallel_tool_calls": True,
        "temperature": 0,
        "max_tokens": args.max_tokens_required if system.endswith("-required") else args.max_tokens,
    }
    if system.startswith("llama-server"):
        body["repeat_penalty"] = args.llama_repeat_penalty
        body["repeat_last_n"] = REPEAT_LAST_N
    return body


def send(
    client: httpx.Client, url: str, system: str, entry: Entry, args: argparse.Namespace
) -> Outcome:
    out = Outcome(system, entry)
    t0 = time.perf_counter()
    try:
        response = client.post(
            url,
            json=request_body(entry, system, args),
            headers={"authorization": f"Bearer {API_KEY}"},
            timeout=args.timeout,
        )
    except httpx.HTTPError as exc:
        out.error = f"{type(exc).__name__}: {exc}"
        out.seconds = time.perf_counter() - t0
        return out
    out.seconds = time.perf_counter() - t0
    out.status = response.status_code
    if response.status_code != 200:
        out.error = response.text[:500]
        return out
    data = response.json()
    message = data["choices"][0]["message"]
    out.finish = str(data["choices"][0].get("finish_reason"))
    out.content = message.get("content")
    out.completion_tokens = int((data.get("usage") or {}).get("completion_tokens") or 0)
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        out.calls.append((str(fn.get("name")), str(fn.get("arguments"))))
    return out


def score(out: Outcome, checker: Callable[..., dict[str, Any]], language: Any) -> None:
    """BFCL's verdict for the entry, and each produced call's own validity."""
    entry = out.entry
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in entry.tools}
    decoded: list[dict[str, Any]] = []
    decodes = True
    for name, arguments in out.calls:
        reason = ""
        try:
            parsed = json.loads(arguments)
        except ValueError as exc:
            parsed, reason = None, f"not JSON: {exc}"
        if not reason and not isinstance(parsed, dict):
            reason = "not a JSON object"
        if not reason and name not in schemas:
            reason = f"undeclared function {name!r}"
        if not reason:
            validator = jsonschema.Draft202012Validator(schemas[name])
            error = jsonschema.exceptions.best_match(validator.iter_errors(parsed))
            if error is not None:
                reason = f"schema: {error.message} at {list(error.absolute_path)}"
        if reason:
            out.invalid_reasons.append(reason)
        else:
            out.valid_calls += 1
        if isinstance(parsed, dict):
            decoded.append({name: parsed})
        else:
            decodes = False  # BFCL's decode_ast raises: not a function call
    if entry.category == "irrelevance":
        out.correct = out.status == 200 and not (decodes and decoded)
        if not out.correct:
            out.check_error = "made a call" if out.status == 200 else "request failed"
        return
    if out.status != 200:
        out.check_error = f"HTTP {out.status or 'error'}: {out.error[:200]}"
        return
    if not decodes or not decoded:
        out.check_error = "no call" if not out.calls else "a call did not decode"
        return
    try:
        verdict = checker(entry.functions, decoded, entry.answer, language, entry.category, "bench")
    except Exception as exc:  # the checker on odd output (e.g. an unknown name) may raise
        verdict = {"valid": False, "error": [f"checker raised {type(exc).__name__}: {exc}"]}
    out.correct = bool(verdict["valid"])
    if not out.correct:
        out.check_error = json.dumps(verdict.get("error"), default=str)[:400]


# ----- servers -------------------------------------------------------------------------------


def server_of(system: str) -> str:
    return system.removesuffix("-required")


def start_llama_server(name: str, args: argparse.Namespace) -> Server:
    server = llama_server(parallel=1, threads=args.threads)
    server.name = name
    server.log_path = server.log_path.with_name(f"{name}-{server.port}.log")
    server.argv += ["--jinja", "--temp", "0"]
    if name == "llama-server-qwen":
        server.argv += ["--chat-template-file", str(QWEN_TEMPLATE)]
    return server  # started by its ``with``


def chat_format(base_url: str) -> str:
    """The chat format llama-server parses the last request with (``/slots``)."""
    try:
        slots = httpx.get(base_url + "/slots", timeout=10).json()
        params = slots[0].get("params") or {}
        return str(params.get("chat_format", "?"))
    except (httpx.HTTPError, ValueError, LookupError, AttributeError) as exc:
        return f"? ({exc})"


# ----- report --------------------------------------------------------------------------------


def pct(num: int, den: int) -> str:
    return f"{100.0 * num / den:.0f}% ({num}/{den})" if den else "n/a"


def report(outcomes: list[Outcome], args: argparse.Namespace) -> None:
    rows = []
    totals: dict[str, list[int]] = {}
    for category in args.categories:
        for system in args.systems:
            got = [o for o in outcomes if o.system == system and o.entry.category == category]
            if not got:
                continue
            correct = sum(o.correct for o in got)
            calls = sum(len(o.calls) for o in got)
            with_call = sum(bool(o.calls) for o in got)
            valid = sum(o.valid_calls for o in got)
            errors = sum(o.status != 200 for o in got)
            secs = sorted(o.seconds for o in got)
            t = totals.setdefault(system, [0, 0, 0, 0, 0])
            for i, v in enumerate((correct, len(got), calls, valid, errors)):
                t[i] += v
            rows.append(
                (
                    category,
                    system,
                    pct(correct, len(got)),
                    f"{calls} in {with_call}/{len(got)}",
                    pct(valid, calls),
                    errors,
                    f"{secs[len(secs) // 2]:.2f}",
                )
            )
    for system, (correct, n, calls, valid, errors) in totals.items():
        rows.append(("**all**", system, pct(correct, n), str(calls), pct(valid, calls), errors, ""))
    print(
        md_table(
            (
                "category",
                "server",
                "AST accuracy",
                "calls produced (in entries)",
                "calls valid (JSON + schema)",
                "HTTP errors",
                "p50 s",
            ),
            rows,
        )
    )
    print()
    invalid = [(o, r) for o in outcomes for r in o.invalid_reasons]
    if invalid:
        print("Invalid calls:\n")
        for o, reason in invalid[:20]:
            print(f"- {o.system} {o.entry.id}: {reason}")
        print()
    errors = [o for o in outcomes if o.status != 200]
    if errors:
        print("Failed requests:\n")
        for o in errors[:10]:
            print(f"- {o.system} {o.entry.id}: {o.status} {o.error[:300]}")
        print()
    failure_kinds(outcomes, args)


def failure_kinds(outcomes: list[Outcome], args: argparse.Namespace) -> None:
    """Why entries were wrong, per server: the first word of BFCL's error type, roughly."""
    rows = []
    for system in args.systems:
        kinds: dict[str, int] = {}
        for o in outcomes:
            if o.system != system or o.correct:
                continue
            e = o.check_error
            if e.startswith('["Wrong number') or "wrong_count" in e:
                k = "wrong number of calls"
            elif "not found in model output" in e or "Could not find a matching" in e:
                k = "wrong function or args (parallel/name)"
            elif "Missing required" in e:
                k = "missing required param"
            elif "Unexpected parameter" in e:
                k = "unexpected param"
            elif "Invalid value" in e or "Incorrect type" in e or "not provided" in e:
                k = "wrong value or type"
            else:
                k = e.split(":")[0][:40] or "?"
            kinds[k] = kinds.get(k, 0) + 1
        for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
            rows.append((system, k, n))
    if rows:
        print("Wrong entries by reason (all categories):\n")
        print(md_table(("server", "reason", "entries"), rows))
        print()


def show(o: Outcome) -> str:
    if o.status != 200:
        return f"HTTP {o.status}: {o.error[:300]}"
    if o.calls:
        return "calls " + "; ".join(f"{n}({a})" for n, a in o.calls)
    return f"text {json.dumps((o.content or '')[:300])}"


def examples(outcomes: list[Outcome], args: argparse.Namespace) -> None:
    """Entries gemserve (auto) got wrong and some llama-server variant (auto) got right."""
    by_key = {(o.system, o.entry.id): o for o in outcomes}
    peers = [s for s in args.systems if s.startswith("llama-server") and "-required" not in s]
    printed = False
    for category in args.categories:
        shown = 0
        for o in outcomes:
            if o.system != "gemserve" or o.entry.category != category or o.correct:
                continue
            right = [by_key[(p, o.entry.id)] for p in peers if (p, o.entry.id) in by_key]
            right = [r for r in right if r.correct]
            if not right or shown >= args.examples:
                continue
            if not printed:
                print("Entries gemserve got wrong and a llama-server got right:\n")
                printed = True
            shown += 1
            user = " ".join(m["content"] for m in o.entry.messages if m["role"] == "user")
            names = ", ".join(t["function"]["name"] for t in o.entry.tools)
            print(f"- **{o.entry.id}**: {json.dumps(user[:300])} (tools: {names})")
            print(f"  - gemserve: {show(o)} ← {o.check_error[:200]}")
            for peer in [p for p in peers if (p, o.entry.id) in by_key]:
                print(f"  - {peer}: {show(by_key[(peer, o.entry.id)])}")
    if printed:
        print()


# ----- main ------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    apply_omp_policy(args.omp_wait_policy)
    exit_on_sigterm()
    wheel = bfcl_wheel(args.bfcl_version, args.cache)
    checker, language, mapping = bfcl_checker(wheel)
    entries = load_entries(wheel, args.categories, args.per_category, mapping)
    if any(s.startswith("llama-server") for s in args.systems) and not LLAMA_SERVER_BIN.exists():
        raise SystemExit(f"{LLAMA_SERVER_BIN} not found; run bench/build_llama_server.sh")
    if any(s.startswith("llama-server-qwen") for s in args.systems) and not QWEN_TEMPLATE.exists():
        raise SystemExit(f"{QWEN_TEMPLATE} not found; run bench/build_llama_server.sh")

    print_preamble("Tool-call quality: BFCL v4 subset, gemserve vs llama-server")
    print("```")
    print(
        f"bfcl={wheel.name} categories={','.join(args.categories)} per_category={args.per_category}"
    )
    print(
        f"systems={','.join(args.systems)} max_tokens={args.max_tokens} "
        f"max_tokens_required={args.max_tokens_required} temperature=0 "
        f"llama_repeat_penalty={args.llama_repeat_penalty} repeat_last_n={REPEAT_LAST_N}"
    )
    print("```\n", flush=True)

    run_dir = OUT_DIR / "bfcl"
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / time.strftime("%Y%m%d-%H%M%S.jsonl")
    outcomes: list[Outcome] = []
    t_start = time.monotonic()
    formats: dict[str, str] = {}
    wanted = [s for s in SERVERS if any(server_of(x) == s for x in args.systems)]
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(httpx.Client())
        log = stack.enter_context(open(log_path, "w"))
        urls: dict[str, str] = {}
        llamas: dict[str, Server] = {}
        for name in wanted:
            if name == "gemserve":
                gem = stack.enter_context(gemserve_server(slots=1, threads=args.threads))
                urls[name] = gem.base_url + "/v1beta/openai/chat/completions"
            else:
                llamas[name] = stack.enter_context(start_llama_server(name, args))
                urls[name] = llamas[name].base_url + "/v1/chat/completions"
        for i, entry in enumerate(entries):
            systems = [
                s
                for s in args.systems
                if not (s.endswith("-required") and entry.category == "irrelevance")
            ]
            k = i % max(len(systems), 1)  # rotate the order entry by entry
            for system in systems[k:] + systems[:k]:
                out = send(client, urls[server_of(system)], system, entry, args)
                score(out, checker, language)
                outcomes.append(out)
                record = {
                    "system": system,
                    "id": entry.id,
                    "request": request_body(entry, system, args),
                    "status": out.status,
                    "error": out.error,
                    "content": out.content,
                    "calls": out.calls,
                    "finish": out.finish,
                    "seconds": round(out.seconds, 3),
                    "correct": out.correct,
                    "check_error": out.check_error,
                    "invalid": out.invalid_reasons,
                }
                log.write(json.dumps(record) + "\n")
                log.flush()
                name = server_of(system)
                if name in llamas and name not in formats:
                    formats[name] = chat_format(llamas[name].base_url)
            done = sum(o.correct for o in outcomes)
            print(
                f"[{i + 1}/{len(entries)}] {entry.id} {time.monotonic() - t_start:.0f}s "
                f"correct so far {done}/{len(outcomes)}",
                file=sys.stderr,
                flush=True,
            )

    print(f"Wall time {time.monotonic() - t_start:.0f} s; every response in {log_path}.")
    for name, fmt in formats.items():
        print(f"{name} chat format (its /slots, after a tool request): {fmt}")
    print()
    report(outcomes, args)
    examples(outcomes, args)


if __name__ == "__main__":
    try:
        main()
    except ServerError as exc:
        raise SystemExit(str(exc)) from exc
