"""Embedding throughput (texts/s): gemserve's ``:batchEmbedContents`` over HTTP against the
raw llama-cpp-python embedding call (``Llama.embed``: llama.cpp pools in its graph) in the
same run, on the same GGUF and thread count, for requests of 1, 8 and 32 texts; and 8
clients each sending one text at a time, which gemserve packs into shared batches (the raw
call has no concurrency: that row is compared with its one-text calls). Where
``bench/build_llama_server.sh`` has built it, llama.cpp's own ``llama-server --embedding``
(``/v1/embeddings``, mean pooling, 32 parallel slots on one unified KV cache) runs the same
workloads too (``--no-llama-server`` leaves it out).

Each round measures every batch size on both, alternating (this machine's speed drifts by
tens of percent); the tables give medians over rounds. Texts are distinct sentences of
about 20 tokens; every request of a round embeds texts it has not embedded before.

    .venv/bin/python bench/bench_embed.py [--rounds 5] [--requests 24] [--batches 1,8,32]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator

import httpx
from common import (
    API_KEY,
    LLAMA_SERVER_BIN,
    Server,
    add_omp_argument,
    apply_omp_policy,
    exit_on_sigterm,
    free_port,
    gemserve_server,
    gguf_path,
    md_table,
    median,
    print_preamble,
    ratio,
)

SUBJECTS = (
    "the river",
    "a small bakery",
    "the night train",
    "an old lighthouse",
    "the mountain village",
    "a busy market",
    "the school library",
    "a quiet harbour",
)
EVENTS = (
    "opened its doors early this morning to welcome visitors from the town",
    "was repaired last summer after the long storm damaged its roof",
    "is known for the bread and pastries that people queue for every day",
    "carried hundreds of travellers across the valley during the holidays",
)


def texts(first: int, count: int) -> list[str]:
    return [
        f"Note {first + i}: {SUBJECTS[(first + i) % len(SUBJECTS)]} "
        f"{EVENTS[(first + i) // len(SUBJECTS) % len(EVENTS)]}."
        for i in range(count)
    ]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=24, help="requests per batch size")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-llama-server", action="store_true")
    add_omp_argument(parser)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests = 1, 6
    return args


@contextlib.contextmanager
def llama_server(threads: int, parallel: int) -> Iterator[Server]:
    port = free_port()
    argv = [
        str(LLAMA_SERVER_BIN),
        "-m", str(gguf_path()),
        "-t", str(threads), "-tb", str(threads),
        "-c", "4096", "-b", "512", "-ub", "512",
        "-np", str(parallel), "--kv-unified",
        "--embedding", "--pooling", "mean",
        "--no-webui", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    with Server("llama-server-embedding", argv, port=port, ready_path="/health") as server:
        yield server


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    args = parse_args()
    apply_omp_policy(args.omp_wait_policy)
    exit_on_sigterm()
    import llama_cpp

    print_preamble("bench_embed: embeddings/s, gemserve against llama-cpp-python's Llama.embed")
    batches = [int(b) for b in args.batches.split(",")]
    raw = llama_cpp.Llama(
        str(gguf_path()),
        embedding=True,
        pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
        n_ctx=4096,
        n_batch=512,
        n_ubatch=512,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    rates: dict[tuple[str, str], list[float]] = {}
    counter = [0]

    def fresh(count: int) -> list[str]:
        counter[0] += count
        return texts(counter[0], count)

    def raw_call(batch: list[str]) -> None:
        vectors = raw.embed(batch, normalize=True)
        assert len(vectors) == len(batch)

    peers = contextlib.ExitStack()
    with peers:
        gemserve = peers.enter_context(gemserve_server(slots=4, threads=args.threads))
        systems: dict[str, Callable[[list[str]], None]] = {
            "raw": raw_call,
            "gemserve": gemserve_caller(gemserve.base_url),
        }
        if LLAMA_SERVER_BIN.exists() and not args.no_llama_server:
            peer = peers.enter_context(llama_server(args.threads, parallel=32))
            systems["llama-server"] = llama_server_caller(peer.base_url)
        for call in systems.values():  # warm each (gemserve makes its context on first use)
            call(fresh(4))
        for round_no in range(args.rounds):
            print(f"round {round_no + 1}/{args.rounds}", file=sys.stderr, flush=True)
            for size in batches:
                for name, call in systems.items():
                    work = [fresh(size) for _ in range(args.requests)]
                    seconds = timed(lambda c=call, w=work: [c(b) for b in w] and None)
                    rates.setdefault((name, str(size)), []).append(size * args.requests / seconds)
                    time.sleep(0.5)  # let OpenMP's spinning threads go idle between systems
            for name, call in systems.items():
                if name == "raw":
                    continue
                work = [[fresh(1) for _ in range(args.requests)] for _ in range(args.clients)]
                seconds = timed(lambda c=call, w=work: concurrently(c, w))
                rates.setdefault((name, "concurrent"), []).append(
                    args.clients * args.requests / seconds
                )
                time.sleep(0.5)
        embedding_counters = gemserve_embedding_counters(gemserve.base_url)

    names = list(systems)
    rows: list[list[object]] = []
    peer = "llama-server" in names
    for size in [*map(str, batches), "concurrent"]:
        base = median(rates[("raw", "1" if size == "concurrent" else size)])
        ours = median(rates[("gemserve", size)])
        label = (
            f"1 text, {args.clients} concurrent clients"
            if size == "concurrent"
            else f"{size} text(s) per request"
        )
        row: list[object] = [label, base, ours, ratio(ours, base)]
        if peer:
            theirs = median(rates[("llama-server", size)])
            row += [theirs, ratio(ours, theirs)]
        rows.append(row)
    headers = ["workload", "Llama.embed", "gemserve", "gemserve / Llama.embed"]
    if peer:
        headers += ["llama-server", "gemserve / llama-server"]
    print(f"### Embeddings/s (median of {args.rounds} rounds, {args.requests} requests each)\n")
    print(md_table(headers, rows))
    print()
    print("gemserve's /statsz embedding counters at the end: " + embedding_counters)
    print()


def gemserve_embedding_counters(base_url: str) -> str:
    """Which graph gemserve's embeddings ran (the LM head skipped or not), and the packing."""
    stats = httpx.get(base_url + "/statsz", timeout=30).json()
    extra = next(iter(stats.values()))["extra"]
    return ", ".join(f"{k}={v:g}" for k, v in extra.items() if k.startswith("embedding_"))


def per_thread(make: Callable[[], httpx.Client]) -> Callable[[], httpx.Client]:
    """One keep-alive client per calling thread."""
    local = threading.local()

    def get() -> httpx.Client:
        client: httpx.Client | None = getattr(local, "client", None)
        if client is None:
            client = local.client = make()
        return client

    return get


def gemserve_caller(base_url: str) -> Callable[[list[str]], None]:
    client = per_thread(
        lambda: httpx.Client(base_url=base_url, headers={"x-goog-api-key": API_KEY}, timeout=600)
    )

    def call(batch: list[str]) -> None:
        body = {"requests": [{"content": {"parts": [{"text": t}]}} for t in batch]}
        response = client().post("/v1beta/models/text-embedding-004:batchEmbedContents", json=body)
        response.raise_for_status()
        assert len(response.json()["embeddings"]) == len(batch)

    return call


def llama_server_caller(base_url: str) -> Callable[[list[str]], None]:
    client = per_thread(lambda: httpx.Client(base_url=base_url, timeout=600))

    def call(batch: list[str]) -> None:
        body = {"model": "any", "input": batch, "encoding_format": "float"}
        response = client().post("/v1/embeddings", json=body)
        response.raise_for_status()
        assert len(response.json()["data"]) == len(batch)

    return call


def concurrently(call: Callable[[list[str]], None], work: list[list[list[str]]]) -> None:
    """One thread per client, each sending its requests one after another."""

    def loop(items: list[list[str]]) -> None:
        for batch in items:
            call(batch)

    threads = [threading.Thread(target=loop, args=(w,)) for w in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
