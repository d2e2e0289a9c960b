"""Load: many clients on one gemserve with a realistic mix, on SQLite and on PostgreSQL.

Each of ``--clients`` clients loops until ``--seconds`` have passed, picking a kind of request
at random (weights in ``MIX``): streamed, non-streamed and background interactions, two-turn
conversations (``previous_interaction_id``), a resumable upload of a small WAV or PNG then a
turn that uses it, streams the client drops after the first delta, cancels and deletes. Small
``max_output_tokens`` keep a 2-core machine up with it. Every 429 must carry Retry-After (the
client honours it). The server's RSS and open fds are sampled (psutil) every 0.5 s.

At the end every interaction the run created (and did not delete) must be terminal, and its
stored event log (``GET …?stream=true``) must fold (``InteractionFold``) to what ``GET``
returns: status, steps and usage.

    .venv/bin/python bench/bench_load.py --seconds 120          # SQLite then PostgreSQL
    .venv/bin/python bench/bench_load.py --seconds 20 --clients 8 --stores sqlite   # smoke

PostgreSQL: a fresh database on ``--postgres`` (default 127.0.0.1:5432, trust auth), dropped
afterwards. Loopback only; the run stops by itself (the deadline, then at most
``--drain-seconds`` for requests in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    API_KEY,
    Server,
    free_port,
    gemserve_argv,
    md_table,
    percentile,
    postgres_database,
    print_preamble,
)

from gemserve.protocol.interactions.fold import InteractionFold
from gemserve.protocol.interactions.status import TERMINAL_STATUSES

MODEL = "gemini-3-flash-preview"
HEADERS = {"x-goog-api-key": API_KEY}
MEDIA = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "media"
PROMPTS = (
    "Name three rivers.",
    "What is a prime number?",
    "Give me a haiku about autumn.",
    "How do bees make honey?",
    "Say hello in French.",
    "What is the capital of Italy?",
)
MIX: dict[str, int] = {
    "stream": 30,
    "plain": 16,
    "background": 10,
    "multiturn": 10,
    "upload": 6,
    "disconnect": 10,
    "cancel": 10,
    "delete": 8,
}


@dataclass
class Stats:
    served: Counter[str] = field(default_factory=Counter)  # requests answered 2xx, by kind
    errors: Counter[str] = field(default_factory=Counter)  # "kind status" of other answers
    throttled: int = 0  # 429s
    throttled_without_retry_after: int = 0
    unavailable: int = 0  # 503s
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)  # created and kept (checked at the end)
    deleted: set[str] = field(default_factory=set)
    rss: list[int] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)


class Refused(Exception):
    pass


def body(prompt: Any, max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "input": prompt,
        "generation_config": {"max_output_tokens": max_tokens, "temperature": 0.7},
        **extra,
    }


class LoadClient:
    def __init__(self, http: httpx.AsyncClient, stats: Stats, rng: random.Random, args: Any):
        self.http = http
        self.stats = stats
        self.rng = rng
        self.max_tokens = args.max_tokens

    def tokens(self) -> int:
        return self.rng.randint(self.max_tokens // 3, self.max_tokens)

    async def check(self, kind: str, response: httpx.Response) -> None:
        """2xx passes; a 429 or 503 waits its Retry-After and raises Refused; others count."""
        if response.status_code < 300:
            return
        if response.status_code in (429, 503):
            retry = response.headers.get("retry-after")
            if response.status_code == 429:
                self.stats.throttled += 1
                if retry is None:
                    self.stats.throttled_without_retry_after += 1
            else:
                self.stats.unavailable += 1
            await asyncio.sleep(min(float(retry or 1), 2.0) * self.rng.uniform(0.5, 1.0))
            raise Refused
        self.stats.errors[f"{kind} {response.status_code}"] += 1
        raise Refused

    async def create(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post("/v1beta/interactions", json=payload, headers=HEADERS)
        await self.check(kind, response)
        created: dict[str, Any] = response.json()
        self.stats.ids.add(created["id"])
        return created

    async def stream(self, kind: str, payload: dict[str, Any], *, drop: bool = False) -> None:
        started = time.perf_counter()
        last: float | None = None
        async with self.http.stream(
            "POST", "/v1beta/interactions", json={**payload, "stream": True}, headers=HEADERS
        ) as response:
            if response.status_code != 200:
                await response.aread()
                await self.check(kind, response)
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if event.get("event_type") == "interaction.created":
                    self.stats.ids.add(event["interaction"]["id"])
                elif event.get("event_type") == "step.delta":
                    now = time.perf_counter()
                    if last is None:
                        self.stats.ttft.append(now - started)
                        if drop:
                            break  # hang up mid-stream: the server must notice and clean up
                    else:
                        self.stats.itl.append(now - last)
                    last = now

    async def one(self, kind: str) -> None:
        prompt = self.rng.choice(PROMPTS)
        if kind == "stream":
            await self.stream(kind, body(prompt, self.tokens()))
        elif kind == "disconnect":
            await self.stream(kind, body(prompt, self.max_tokens), drop=True)
        elif kind == "plain":
            await self.create(kind, body(prompt, self.tokens()))
        elif kind == "background":
            created = await self.create(kind, body(prompt, self.tokens(), background=True))
            await self.poll(created["id"])
        elif kind == "multiturn":
            first = await self.create(kind, body(prompt, self.tokens()))
            follow = body("Now say it shorter.", self.tokens(), previous_interaction_id=first["id"])
            await self.create(kind, follow)
        elif kind == "cancel":
            created = await self.create(kind, body(prompt, self.max_tokens, background=True))
            await asyncio.sleep(self.rng.uniform(0, 0.5))
            response = await self.http.post(
                f"/v1beta/interactions/{created['id']}/cancel", headers=HEADERS
            )
            if response.status_code not in (200, 400):  # 400: it had already finished
                self.stats.errors[f"cancel {response.status_code}"] += 1
        elif kind == "delete":
            created = await self.create(kind, body(prompt, self.tokens()))
            response = await self.http.delete(
                f"/v1beta/interactions/{created['id']}", headers=HEADERS
            )
            await self.check(kind, response)
            self.stats.ids.discard(created["id"])
            self.stats.deleted.add(created["id"])
        elif kind == "upload":
            await self.upload_turn()
        self.stats.served[kind] += 1

    async def upload_turn(self) -> None:
        """A WAV (transcribed) or a PNG (a 400 on the text-only model: counted as expected)."""
        wav = self.rng.random() < 0.7
        name, mime, part = (
            ("speech.wav", "audio/wav", "audio") if wav else ("red.png", "image/png", "image")
        )
        data = (MEDIA / name).read_bytes() if wav else _png()
        start = await self.http.post(
            "/upload/v1beta/files",
            json={"file": {"display_name": name, "mime_type": mime}},
            headers={
                **HEADERS,
                "X-Goog-Upload-Protocol": "resumable",
                "X-Goog-Upload-Command": "start",
                "X-Goog-Upload-Header-Content-Length": str(len(data)),
                "X-Goog-Upload-Header-Content-Type": mime,
            },
        )
        await self.check("upload", start)
        final = await self.http.post(
            start.headers["x-goog-upload-url"],
            content=data,
            headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"},
        )
        await self.check("upload", final)
        uri = final.json()["file"]["uri"]
        turn = body(
            [
                {"type": "text", "text": "What is this?"},
                {"type": part, "uri": uri, "mime_type": mime},
            ],
            self.tokens(),
        )
        response = await self.http.post("/v1beta/interactions", json=turn, headers=HEADERS)
        if not wav and response.status_code == 400:
            self.stats.served["upload image→400"] += 1
            return
        await self.check("upload", response)
        self.stats.ids.add(response.json()["id"])

    async def poll(self, iid: str, deadline_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + deadline_s
        while True:
            response = await self.http.get(f"/v1beta/interactions/{iid}", headers=HEADERS)
            await self.check("poll", response)
            got: dict[str, Any] = response.json()
            if got["status"] in TERMINAL_STATUSES or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.5)

    async def run(self, until: float) -> None:
        kinds, weights = zip(*MIX.items(), strict=True)
        while time.monotonic() < until:
            kind = self.rng.choices(kinds, weights)[0]
            try:
                await self.one(kind)
            except Refused:
                pass
            except httpx.HTTPError as exc:
                self.stats.errors[f"{kind} {type(exc).__name__}"] += 1
                await asyncio.sleep(0.2)


def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


async def sample(pid: int, stats: Stats, stop: asyncio.Event) -> None:
    proc = psutil.Process(pid)
    while not stop.is_set():
        with contextlib.suppress(psutil.Error):
            stats.rss.append(proc.memory_info().rss)
            stats.fds.append(proc.num_fds())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


def _output(value: dict[str, Any]) -> list[Any]:
    """The output steps (GET's timeline starts with the ``user_input`` step)."""
    return [step for step in value.get("steps", []) if step.get("type") != "user_input"]


async def verify(http: httpx.AsyncClient, ids: set[str], deleted: set[str]) -> dict[str, Any]:
    """Every kept interaction terminal, and its event log folding to its stored state."""
    result: Counter[str] = Counter()
    problems: list[str] = []
    sem = asyncio.Semaphore(8)

    async def check(iid: str) -> None:
        async with sem:
            deadline = time.monotonic() + 30
            while True:
                got = (await http.get(f"/v1beta/interactions/{iid}", headers=HEADERS)).json()
                if got.get("status") in TERMINAL_STATUSES or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            status = got.get("status")
            if status not in TERMINAL_STATUSES:
                result["not terminal"] += 1
                problems.append(f"{iid}: {status}")
                return
            result[status] += 1
            fold = InteractionFold()
            response = await http.get(
                f"/v1beta/interactions/{iid}", params={"stream": "true"}, headers=HEADERS
            )
            for line in response.text.splitlines():
                if line.startswith("data:"):
                    fold.apply(json.loads(line[5:]))
            folded = fold.result()
            same = (
                folded.get("status") == status
                and _output(folded) == _output(got)
                and folded.get("usage") == got.get("usage")
            )
            if not same:
                result["replay differs"] += 1
                problems.append(f"{iid}: GET {got}\nreplay {folded}")
            else:
                result["replay ok"] += 1

    await asyncio.gather(*(check(iid) for iid in sorted(ids)))
    for iid in sorted(deleted)[:50]:
        if (await http.get(f"/v1beta/interactions/{iid}", headers=HEADERS)).status_code != 404:
            result["deleted but found"] += 1
    return {"counts": result, "problems": problems[:10]}


@contextlib.contextmanager
def store_server(store: str, args: Any) -> Iterator[Server]:
    with contextlib.ExitStack() as stack:
        data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="gemserve-load-"))
        env: dict[str, str] = {}
        if store == "postgres":
            env["GEMSERVE_DATABASE_URL"] = stack.enter_context(postgres_database(args.postgres))
        port = free_port()
        argv = [
            *gemserve_argv(), "serve", "--port", str(port), "--data-dir", data_dir,
            "--log-level", "warning",
        ]  # fmt: skip
        yield stack.enter_context(
            Server(f"gemserve-load-{store}", argv, port=port, ready_path="/readyz", env=env)
        )


async def run_store(server: Server, args: Any, seed: int) -> dict[str, Any]:
    stats = Stats()
    limits = httpx.Limits(max_connections=args.clients * 2 + 16, max_keepalive_connections=64)
    timeout = httpx.Timeout(120.0, connect=10.0)
    async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=timeout) as http:
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample(server.pid, stats, stop))
        await asyncio.sleep(0.6)
        started = time.monotonic()
        until = started + args.seconds
        clients = [
            LoadClient(http, stats, random.Random(seed * 1000 + i), args)
            for i in range(args.clients)
        ]
        tasks = [asyncio.create_task(c.run(until)) for c in clients]
        _, pending = await asyncio.wait(tasks, timeout=args.seconds + args.drain_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        elapsed = time.monotonic() - started
        checked = await verify(http, stats.ids, stats.deleted)
        await asyncio.sleep(1.0)  # let the server settle before the last sample
        stop.set()
        await sampler
    return {"stats": stats, "elapsed": elapsed, "verify": checked, "cut": len(pending)}


def ms(values: list[float], pct: float) -> str:
    return f"{percentile(values, pct) * 1000:.0f}" if values else "-"


def mb(value: int) -> str:
    return f"{value / 2**20:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--drain-seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not 1 <= args.clients <= 256 or not 1 <= args.seconds <= 3600:
        parser.error("--clients 1..256, --seconds 1..3600")
    print_preamble(f"Load: {args.clients} clients, {args.seconds:.0f} s per store")
    results: dict[str, dict[str, Any]] = {}
    for store in args.stores.split(","):
        with store_server(store, args) as server:
            print(f"[{store}] running {args.seconds:.0f} s ...", file=sys.stderr, flush=True)
            results[store] = asyncio.run(run_store(server, args, args.seed))
    stores = list(results)
    kinds = sorted({k for r in results.values() for k in r["stats"].served})
    rows: list[list[object]] = []

    def row(name: str, fn: Any) -> None:
        rows.append([name, *(fn(results[s]) for s in stores)])

    row("seconds (load + drain)", lambda r: f"{r['elapsed']:.0f}")
    for kind in kinds:
        row(f"served: {kind}", lambda r, k=kind: r["stats"].served[k])
    row("served: total", lambda r: sum(r["stats"].served.values()))
    row("429 (all with Retry-After?)", lambda r: _throttled(r["stats"]))
    row("503", lambda r: r["stats"].unavailable)
    row("other errors", lambda r: dict(r["stats"].errors) or 0)
    row("clients cut at the drain deadline", lambda r: r["cut"])
    row("TTFT p50 / p99 ms", lambda r: f"{ms(r['stats'].ttft, 50)} / {ms(r['stats'].ttft, 99)}")
    row(
        "inter-token p50 / p99 ms", lambda r: f"{ms(r['stats'].itl, 50)} / {ms(r['stats'].itl, 99)}"
    )
    row(
        "RSS start / peak / end MiB",
        lambda r: f"{mb(r['stats'].rss[0])} / {mb(max(r['stats'].rss))} / {mb(r['stats'].rss[-1])}",
    )
    row(
        "open fds start / peak / end",
        lambda r: f"{r['stats'].fds[0]} / {max(r['stats'].fds)} / {r['stats'].fds[-1]}",
    )
    row("interactions checked", lambda r: len(r["stats"].ids))
    row("verdicts", lambda r: dict(r["verify"]["counts"]))
    print(md_table(["", *stores], rows))
    bad = False
    for store, r in results.items():
        counts = r["verify"]["counts"]
        if counts["not terminal"] or counts["replay differs"] or counts["deleted but found"]:
            bad = True
            print(f"\n{store}: FAILED checks: {r['verify']['problems']}")
        if r["stats"].throttled_without_retry_after:
            bad = True
            print(f"\n{store}: 429 without Retry-After")
    if not bad:
        print("\nEvery interaction terminal; every event log replays to the stored state.")
    sys.exit(1 if bad else 0)


def _throttled(stats: Stats) -> str:
    if not stats.throttled:
        return "0"
    ok = "yes" if stats.throttled_without_retry_after == 0 else "NO"
    return f"{stats.throttled} ({ok})"


if __name__ == "__main__":
    main()
