"""The playground's first load in headless Chromium: bytes transferred and time to interactive.

One gemserve process (the bundled model); Debian's Chromium (/usr/bin/chromium) driven by
Playwright. Each cold run is a fresh browser context (empty cache, empty storage) loading
``/``; a warm run reloads the page in the same context (assets revalidated by ETag: 304s).
Figures come from the page's own Performance API: the navigation entry and every resource
entry (``transferSize``: bytes on the wire, headers included; ``encodedBodySize``: the body),
and the mark the page sets once the models list and the conversations list have arrived and
the composer works (``playground-ready``: time to interactive, from navigation start). The
load's two API calls (``GET /v1beta/models``, ``GET /v1beta/interactions``) are counted apart
from the assets.

``--screenshots DIR`` then writes DIR/playground.png (a conversation with a thought step)
and DIR/playground-code.png (the "Get code" dialog), as README shows.

Usage: .venv/bin/python bench/bench_playground.py [--runs 10] [--screenshots docs]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from statistics import median
from typing import Any

from playwright.sync_api import Browser, Page, expect, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import gemserve_server, md_table, print_preamble

CHROMIUM = "/usr/bin/chromium"

MEASURE = """() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const resources = performance.getEntriesByType('resource').map((r) => ({
        name: new URL(r.name).pathname, transfer: r.transferSize, body: r.encodedBodySize,
    }));
    const ready = performance.getEntriesByName('playground-ready')[0];
    return {
        page: {transfer: nav.transferSize, body: nav.encodedBodySize},
        resources,
        domInteractive: nav.domInteractive,
        domContentLoaded: nav.domContentLoadedEventEnd,
        load: nav.loadEventEnd,
        ready: ready ? ready.startTime : null,
    };
}"""


def load(page: Page, url: str, *, reload: bool = False) -> dict[str, Any]:
    if reload:
        page.reload()
    else:
        page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    page.wait_for_load_state("load")
    figures: dict[str, Any] = page.evaluate(MEASURE)
    assets = [r for r in figures["resources"] if not r["name"].startswith("/v1beta/")]
    api = [r for r in figures["resources"] if r["name"].startswith("/v1beta/")]
    figures["files"] = 1 + len(assets)
    figures["asset_bytes"] = figures["page"]["transfer"] + sum(r["transfer"] for r in assets)
    figures["asset_body"] = figures["page"]["body"] + sum(r["body"] for r in assets)
    figures["api_bytes"] = sum(r["transfer"] for r in api)
    return figures


def measure(browser: Browser, url: str, runs: int) -> list[list[object]]:
    cold: list[dict[str, Any]] = []
    warm: list[dict[str, Any]] = []
    for _ in range(runs):
        context = browser.new_context()
        page = context.new_page()
        cold.append(load(page, url))
        warm.append(load(page, url, reload=True))
        context.close()
    rows: list[list[object]] = []
    for name, results in (("cold (empty cache)", cold), ("warm (reload, 304s)", warm)):

        def med(key: str, results: list[dict[str, Any]] = results) -> float:
            return median(float(r[key]) for r in results)

        readies = [float(r["ready"]) for r in results]
        rows.append(
            [
                name,
                results[0]["files"],
                f"{med('asset_bytes') / 1024:.1f}",
                f"{med('asset_body') / 1024:.1f}",
                f"{med('api_bytes') / 1024:.1f}",
                f"{med('domInteractive'):.0f}",
                f"{med('domContentLoaded'):.0f}",
                f"{med('load'):.0f}",
                f"{median(readies):.0f} ({min(readies):.0f}-{max(readies):.0f})",
            ]
        )
    return rows


def screenshots(browser: Browser, url: str, out: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#system", "You are a concise Python tutor.")
    page.fill("#max-tokens", "200")
    page.select_option("#thinking", "low")
    page.fill("#prompt", "Write a Python function that reverses a string, in a code block.")
    page.click("#send")
    answer = page.locator("article.turn.model").last
    expect(answer).to_have_attribute("aria-busy", "false", timeout=120_000)
    summary = answer.locator("details.thought summary")
    if summary.count():
        summary.first.click()
    page.fill("#prompt", "Now make it skip the spaces.")
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / "playground.png"))
    page.click("#get-code")
    expect(page.locator("#code-dialog")).to_be_visible()
    page.screenshot(path=str(out / "playground-code.png"))
    context.close()
    print(f"screenshots: {out / 'playground.png'}, {out / 'playground-code.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--screenshots", type=Path, default=None)
    args = parser.parse_args()
    print_preamble("bench_playground: first load in headless Chromium")
    with (
        gemserve_server(slots=2, threads=args.threads) as server,
        sync_playwright() as driver,
    ):
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        print(f"chromium={browser.version} runs={args.runs} url={server.base_url}/\n")
        rows = measure(browser, server.base_url + "/", args.runs)
        print(
            md_table(
                [
                    "load",
                    "files",
                    "assets KiB on the wire",
                    "assets KiB body",
                    "API KiB (models, conversations)",
                    "domInteractive ms",
                    "DOMContentLoaded ms",
                    "load ms",
                    "interactive ms (min-max)",
                ],
                rows,
            )
        )
        print("\nmedians over the runs; interactive = both lists arrived and the page is ready")
        if args.screenshots is not None:
            screenshots(browser, server.base_url + "/", args.screenshots)
        browser.close()


if __name__ == "__main__":
    main()
