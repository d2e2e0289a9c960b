"""Schema coverage: the official JSON-Schema-Test-Suite (draft 2020-12, required tests) through
gemserve's JSON Schema path and llguidance, on the bundled model's vocabulary.

For every test group the schema goes through what a request's ``response_format`` goes
through: ``check_json_schema`` (the service's shape and size check), then ``json_grammar``
(compact layout: no free whitespace, ", " and ": " separators) and ``validate`` for the
bundled model's llguidance tokenizer. A group is *compiled*, or *refused* with the keyword
named in the error (parsed from llguidance's message; remote ``$ref``s are refused by
llguidance itself, which never fetches). For compiled groups every test instance is written
with ``json.dumps(instance)`` (default separators, ``ensure_ascii``) and fed to a fresh matcher
as tokens; it counts as accepted when every token is consumed and the matcher is then
accepting. An invalid instance the matcher refuses is tried again in its other spellings
(raw UTF-8, integral floats as integers, top-level keys in every order), so that a keyword the
matcher ignores cannot hide behind a spelling it refuses. Valid instances it refuses are
explained the same way (which other spelling passes). Targets (issue 11): every schema
compiles or is refused with a named keyword; ≥ 95% of the valid instances accepted; 0
invalid instances accepted. A last table probes keywords the suite does not test as
assertions (annotations, unknown keywords) with an instance a user would expect refused.

Tokenization: llguidance matches the bytes of whatever tokens it is given (it does not insist
on the canonical BPE split), so the verdict should not depend on the split. The script checks
that: each instance is fed twice, as ``LLTokenizer.tokenize_str`` splits it (llama.cpp's
own tokenizer, the split a model would most likely write) and as one token per byte (the
most fragmented split; every printable ASCII byte has a token of its own in this vocabulary
and ``ensure_ascii`` output is ASCII), and any disagreement is reported.

The suite comes from the ``jsonschema`` sdist on PyPI (``json/tests/draft2020-12``), the
version installed here, downloaded once with pip into ``~/.cache/gemserve/bench/``.

    .venv/bin/python bench/bench_schema_suite.py [--suite-version 4.26.0] [--show-rejected]
"""

from __future__ import annotations

import argparse
import collections
import importlib.metadata
import itertools
import json
import re
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import llguidance
from common import gguf_path, md_table, print_preamble

from gemserve.engine.llama.guidance import json_grammar, validate
from gemserve.engine.llama.native import LoadedModel
from gemserve.errors import InvalidArgument
from gemserve.protocol.schema import check_json_schema

CACHE = Path.home() / ".cache" / "gemserve" / "bench"
SUITE_DIR = "json/tests/draft2020-12/"
MAX_SCHEMA_BYTES = 64 * 1024  # gemserve's default limits.max_schema_bytes

# Keywords of draft 2020-12 (core, applicator, validation, unevaluated, format, content,
# meta-data), to list which ones a schema uses when one of its invalid instances gets through.
KEYWORDS = frozenset(
    """$schema $id $ref $anchor $dynamicRef $dynamicAnchor $defs $comment $vocabulary
    allOf anyOf oneOf not if then else dependentSchemas prefixItems items contains
    properties patternProperties additionalProperties propertyNames unevaluatedItems
    unevaluatedProperties type const enum multipleOf maximum exclusiveMaximum minimum
    exclusiveMinimum maxLength minLength pattern maxItems minItems uniqueItems maxContains
    minContains maxProperties minProperties required dependentRequired format
    contentEncoding contentMediaType contentSchema title description default deprecated
    readOnly writeOnly examples definitions dependencies additionalItems""".split()  # noqa: SIM905
)


# Beyond the suite: keywords a user may expect enforced that draft 2020-12 itself treats as
# annotations or does not define (unknown keywords are ignored by the spec), each with an
# instance the user would expect refused. "accepted" here means the keyword is not enforced.
PROBES: tuple[tuple[str, dict[str, Any], Any], ...] = (
    ("maxlength (typo of maxLength)", {"type": "string", "maxlength": 3}, "abcdef"),
    ("propertyOrdering (Gemini OpenAPI field)",
     {"type": "object", "propertyOrdering": ["b", "a"],
      "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}, {"a": 1, "b": 2}),
    ("contentSchema + contentMediaType",
     {"type": "string", "contentMediaType": "application/json",
      "contentSchema": {"type": "integer"}}, "not json"),
    ("contentEncoding", {"type": "string", "contentEncoding": "base64"}, "!!!"),
    ("x-extension", {"type": "string", "x-max": 1}, "ab"),
    ("format on a non-string", {"format": "email"}, 12),
    ("format int32 (OpenAPI)", {"type": "integer", "format": "int32"}, 2**40),
    ("format email", {"type": "string", "format": "email"}, "nope"),
    ("format date", {"type": "string", "format": "date"}, "2020-13-45"),
)  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--suite-version",
        default=importlib.metadata.version("jsonschema"),
        help="the jsonschema sdist to read the suite from (default: the installed version)",
    )
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument(
        "--show-rejected", action="store_true", help="also list every valid instance rejected"
    )
    parser.add_argument("--quick", action="store_true", help="only the first 10 files")
    return parser.parse_args()


def suite_tarball(version: str, cache: Path) -> Path:
    """The jsonschema sdist, downloaded with pip once (PyPI) and reused."""
    path = cache / f"jsonschema-{version}.tar.gz"
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    print(f"downloading the jsonschema {version} sdist into {cache}", file=sys.stderr)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
         f"jsonschema=={version}", "-d", str(cache)],
        check=True, stdout=sys.stderr,
    )  # fmt: skip
    if not path.is_file():
        raise SystemExit(f"pip did not leave {path}")
    return path


def suite_files(tarball: Path) -> dict[str, list[dict[str, Any]]]:
    """File name → test groups, for the required draft 2020-12 tests (not optional/)."""
    files: dict[str, list[dict[str, Any]]] = {}
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            _, _, inner = member.name.partition("/")
            if not inner.startswith(SUITE_DIR) or not member.isfile():
                continue
            name = inner[len(SUITE_DIR) :]
            if "/" in name or not name.endswith(".json"):
                continue  # optional/ and anything else nested
            handle = archive.extractfile(member)
            assert handle is not None
            files[name] = json.load(handle)
    return dict(sorted(files.items()))


# ----- refusals ------------------------------------------------------------------------------

_REFUSALS: tuple[tuple[re.Pattern[str], str | None], ...] = (
    (re.compile(r"Unimplemented keys: \[([^\]]*)\]"), None),  # one or more quoted keywords
    (re.compile(r"Expected positive integer for '(\w+)'"), "{0} (non-integer value)"),
    (re.compile(r"Value for '(\w+)' has too many digits"), "{0} (too many digits)"),
    (re.compile(r"\b(\w+) constraints are not supported"), "{0}"),
    (re.compile(r"Unknown format: (\S+)"), "format ({0})"),
    (re.compile(r"patternProperty regexes .* are not disjoint"), "patternProperties (overlap)"),
    (re.compile(r"Resource '[^']*' is not present in a registry"), "$ref (remote, not fetched)"),
    (re.compile(r"Unsatisfiable schema: schema is false"), "false (unsatisfiable schema)"),
)


def refusal_keywords(message: str) -> list[str]:
    """The keywords llguidance names in its error ("(unnamed)" if the message names none)."""
    for pattern, label in _REFUSALS:
        match = pattern.search(message)
        if match is None:
            continue
        if label is None:
            return re.findall(r'"([^"]+)"', match.group(1)) or ["(unnamed)"]
        return [label.format(*match.groups())]
    return ["(unnamed)"]


def used_keywords(schema: Any) -> set[str]:
    """The draft 2020-12 keywords anywhere in a schema (property names are not keywords)."""
    found: set[str] = set()

    def walk(node: Any, in_map: bool) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if not in_map and key in KEYWORDS:
                    found.add(key)
                # properties/$defs/patternProperties/dependentSchemas map names to schemas
                is_map = not in_map and key in (
                    "properties", "patternProperties", "$defs", "definitions", "dependentSchemas"
                )  # fmt: skip
                if not in_map and key in ("enum", "const", "examples", "default"):
                    continue  # data, not schemas
                walk(value, is_map)
        elif isinstance(node, list):
            for item in node:
                walk(item, False)

    walk(schema, False)
    return found


# ----- matching ------------------------------------------------------------------------------


@dataclass
class FileStats:
    groups: int = 0
    compiled: int = 0
    refused: int = 0
    valid: int = 0
    valid_accepted: int = 0
    invalid: int = 0
    invalid_accepted: int = 0


@dataclass
class Report:
    files: dict[str, FileStats] = field(default_factory=dict)
    keywords: collections.Counter[str] = field(default_factory=collections.Counter)
    keyword_example: dict[str, str] = field(default_factory=dict)
    refusals: list[tuple[str, str, list[str], str]] = field(default_factory=list)
    accepted_invalid: list[tuple[str, str, str, str, list[str]]] = field(default_factory=list)
    rejected_valid: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    split_disagreements: list[tuple[str, str, str]] = field(default_factory=list)
    compile_ms: list[float] = field(default_factory=list)


class Judge:
    """Whether a compiled grammar's matcher accepts exactly a text, for two token splits."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._byte_token: dict[int, int] = {}
        for byte in range(0x20, 0x7F):
            (token,) = tokenizer.tokenize_bytes(bytes([byte]))
            self._byte_token[byte] = token

    def per_byte(self, text: str) -> list[int] | None:
        data = text.encode()
        if any(b not in self._byte_token for b in data):
            return None
        return [self._byte_token[b] for b in data]

    @staticmethod
    def accepts(fresh: Any, tokens: list[int]) -> bool:
        matcher = fresh.deep_copy()
        return bool(matcher.consume_tokens(tokens) and matcher.is_accepting())

    def diagnose(self, fresh: Any, name: str, test: str, data: Any, text: str) -> str:
        """Why a valid instance was refused: which other writing of the same value passes."""
        if name == "format.json" and "only an annotation" in test:
            return FORMAT_ASSERTED
        if self._passes(fresh, json.dumps(data, ensure_ascii=False), text):
            return "\\u escapes: passes written as raw UTF-8 (ensure_ascii=False)"
        if self._passes(fresh, json.dumps(_integral_floats_as_ints(data)), text):
            return "integral float (1.0): passes written as an integer (1)"
        if isinstance(data, dict) and len(data) <= 6:
            for order in itertools.permutations(data):
                if self._passes(fresh, json.dumps({k: data[k] for k in order}), text):
                    return "property order: passes with the keys reordered"
        return "(unexplained)"

    def other_spelling_accepted(self, fresh: Any, data: Any, text: str) -> str | None:
        """The first other writing of the same value the matcher accepts: raw UTF-8,
        integral floats as integers, the top-level keys in any order (up to 6 keys)."""
        for value in (data, _integral_floats_as_ints(data)):
            spellings = [value]
            if isinstance(value, dict) and len(value) <= 6:
                spellings = [{k: value[k] for k in o} for o in itertools.permutations(value)]
            for spelling in spellings:
                for ascii_only in (True, False):
                    other = json.dumps(spelling, ensure_ascii=ascii_only)
                    if self._passes(fresh, other, text):
                        return other
        return None

    def _passes(self, fresh: Any, other: str, text: str) -> bool:
        return other != text and self.accepts(fresh, self.tokenizer.tokenize_str(other))

    def verdict(self, fresh: Any, text: str) -> tuple[bool, bool | None]:
        """(accepted as tokenize_str splits it, accepted one byte per token or None)."""
        canonical = self.accepts(fresh, self.tokenizer.tokenize_str(text))
        bytewise = self.per_byte(text)
        return canonical, (None if bytewise is None else self.accepts(fresh, bytewise))


FORMAT_ASSERTED = "format asserted (an annotation only, by default, in 2020-12)"


def _integral_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral_floats_as_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    return value


def short(value: Any, limit: int = 70) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_suite(files: dict[str, list[dict[str, Any]]], tokenizer: Any) -> Report:
    report = Report()
    judge = Judge(tokenizer)
    for name, groups in files.items():
        stats = report.files.setdefault(name, FileStats())
        for group in groups:
            stats.groups += 1
            description = group["description"]
            error: str | None
            try:
                checked = check_json_schema(
                    group["schema"], "response_format", max_bytes=MAX_SCHEMA_BYTES
                )
            except InvalidArgument as refused:
                checked, error = None, f"gemserve: {refused.message}"
                keywords = ["false (not an object: gemserve's 400)"]
            if checked is not None:
                t0 = time.perf_counter()
                grammar = json_grammar(
                    json.dumps(checked), leading_whitespace=False, opening_tag=None
                )
                error = validate(tokenizer, grammar)
                report.compile_ms.append((time.perf_counter() - t0) * 1e3)
                keywords = refusal_keywords(error) if error else []
            if error is not None:
                stats.refused += 1
                report.keywords.update(keywords)
                for keyword in keywords:
                    report.keyword_example.setdefault(keyword, f"{name}: {error.splitlines()[0]}")
                report.refusals.append((name, description, keywords, error.splitlines()[0]))
                continue
            stats.compiled += 1
            fresh = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
            assert not fresh.is_error(), fresh.get_error()
            for test in group["tests"]:
                text = json.dumps(test["data"])
                accepted, bytewise = judge.verdict(fresh, text)
                if bytewise is not None and bytewise != accepted:
                    report.split_disagreements.append((name, description, test["description"]))
                if test["valid"]:
                    stats.valid += 1
                    stats.valid_accepted += accepted
                    if not accepted:
                        note = judge.diagnose(fresh, name, test["description"], test["data"], text)
                        report.rejected_valid.append(
                            (name, description, test["description"], text, note)
                        )
                else:
                    # An invalid value refused only for its spelling would hide a keyword
                    # the matcher ignores: try the other spellings of the same value too.
                    if not accepted:
                        other = judge.other_spelling_accepted(fresh, test["data"], text)
                        accepted, text = other is not None, other or text
                    stats.invalid += 1
                    stats.invalid_accepted += accepted
                    if accepted:
                        report.accepted_invalid.append(
                            (name, description, test["description"], text,
                             sorted(used_keywords(group["schema"])))
                        )  # fmt: skip
    return report


def run_probes(tokenizer: Any) -> list[list[object]]:
    judge = Judge(tokenizer)
    rows: list[list[object]] = []
    for label, schema, instance in PROBES:
        grammar = json_grammar(json.dumps(schema), leading_whitespace=False, opening_tag=None)
        error = validate(tokenizer, grammar)
        valid = jsonschema.Draft202012Validator(schema).is_valid(instance)
        if error is not None:
            rows.append([label, short(instance, 30), valid, "refused: " + short(error, 60), ""])
            continue
        fresh = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        accepted, _ = judge.verdict(fresh, json.dumps(instance))
        verdict = "ignored" if accepted else "enforced"
        rows.append([label, short(instance, 30), valid, "compiled", f"{accepted} ({verdict})"])
    return rows


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def print_report(
    report: Report, probes: list[list[object]], args: argparse.Namespace, tarball: Path
) -> None:
    print(f"suite: {tarball.name} {SUITE_DIR} (required tests, optional/ left out)")
    print("layout: json_grammar(compact), leading_whitespace=False; instance = json.dumps(data)\n")
    rows: list[list[object]] = []
    total = FileStats()
    for name, s in report.files.items():
        rows.append([
            name, s.groups, s.compiled, s.refused,
            f"{s.valid_accepted}/{s.valid}", f"{s.invalid_accepted}/{s.invalid}",
        ])  # fmt: skip
        for attr in vars(total):
            setattr(total, attr, getattr(total, attr) + getattr(s, attr))
    rows.append([
        "**total**", total.groups, total.compiled, total.refused,
        f"{total.valid_accepted}/{total.valid} ({pct(total.valid_accepted, total.valid)})",
        f"{total.invalid_accepted}/{total.invalid} ({pct(total.invalid_accepted, total.invalid)})",
    ])  # fmt: skip
    headers = [
        "file", "groups", "compiled", "refused", "valid accepted", "invalid accepted (any spelling)"
    ]  # fmt: skip
    print(md_table(headers, rows))
    print()
    named = sum(1 for *_, keywords, _ in report.refusals if "(unnamed)" not in keywords)
    print(f"refused groups naming a keyword: {named}/{len(report.refusals)}\n")
    print(
        md_table(
            ["refusal keyword", "groups", "example (file: first line of the error)"],
            [
                [k, n, short(report.keyword_example[k], 110)]
                for k, n in report.keywords.most_common()
            ],
        )
    )
    print()
    compile_sorted = sorted(report.compile_ms)
    if compile_sorted:
        p50 = compile_sorted[len(compile_sorted) // 2]
        print(f"compile+validate per group: p50 {p50:.2f} ms, max {compile_sorted[-1]:.1f} ms\n")
    print(
        f"token split disagreements (tokenize_str vs one token per byte): "
        f"{len(report.split_disagreements)}"
    )
    for name, group, test in report.split_disagreements:
        print(f"- {name} / {group} / {test}")
    print()
    print(f"### Invalid instances accepted ({len(report.accepted_invalid)}; target 0)\n")
    print(
        md_table(
            ["file", "group", "test", "instance", "schema keywords"],
            [
                [n, short(g, 50), short(t, 50), short(x, 40), " ".join(k)]
                for n, g, t, x, k in report.accepted_invalid
            ],
        )
    )
    print()
    print(f"### Valid instances rejected ({len(report.rejected_valid)})\n")
    if args.show_rejected:
        print(
            md_table(
                ["file", "group", "test", "instance", "note"],
                [
                    [n, short(g, 50), short(t, 50), short(x, 40), note]
                    for n, g, t, x, note in report.rejected_valid
                ],
            )
        )
        print()
    by_cause = collections.Counter(note for *_, note in report.rejected_valid)
    print(md_table(["why (same value, other writing)", "valid rejected"], by_cause.most_common()))
    without = total.valid - by_cause[FORMAT_ASSERTED]
    print(
        f"\nvalid accepted without format.json's annotation-only tests: "
        f"{total.valid_accepted}/{without} ({pct(total.valid_accepted, without)})"
    )
    if not args.show_rejected:
        print("\n(--show-rejected lists each one)")
    print()
    print("### Beyond the suite: what passes without being enforced\n")
    headers = ["probe", "instance", "valid (jsonschema)", "llguidance", "matcher accepts"]
    print(md_table(headers, probes))


def main() -> None:
    args = parse_args()
    print_preamble("bench_schema_suite: JSON-Schema-Test-Suite draft 2020-12 through llguidance")
    tarball = suite_tarball(args.suite_version, args.cache)
    files = suite_files(tarball)
    if args.quick:
        files = dict(list(files.items())[:10])
    print(f"llguidance={importlib.metadata.version('llguidance')} files={len(files)}\n")
    model = LoadedModel(gguf_path())
    try:
        tokenizer = model.guidance_tokenizer()
        report = run_suite(files, tokenizer)
        probes = run_probes(tokenizer)
    finally:
        model.free()
    print_report(report, probes, args, tarball)


if __name__ == "__main__":
    main()
