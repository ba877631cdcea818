"""The web console in headless Chromium: time to first rows, and whether Live keeps up.

1. Time to first rendered rows: the Logs page opened on a filter matching 1,000 and then
   10,000 stored lines (n=10000), from navigation to the rows painted (the page notes the
   moment, one frame after inserting them), best and median of --repeat runs.
2. Live: the page follows the live stream while a paced sender ships --seconds of traffic
   at 500, 2,000 and 5,000 lines/s (socket format, loopback only). Reported: lines shown
   per second, lines the page skipped (it keeps at most 5,000 rows and drops what
   arrives faster than it can show), the delay from the last line sent to it shown, and
   the main thread's long tasks (PerformanceObserver `longtask`: tasks over 50 ms, which
   a user feels as jank).

Needs Debian's chromium (/usr/bin/chromium) and the `playwright` package (test extras).
Every loop is bounded in count and time. Run: .venv/bin/python bench/console.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import Page, sync_playwright

from bench.harness import bench_collector, env_note, udp_port
from shipper.loadgen import encode_socket, make_lines, send_paced
from tests.support.net import wait_for

CHROMIUM = "/usr/bin/chromium"
LISTENER = "format = socket\napp = bench"
FIRST_ROWS = (1_000, 10_000)
LIVE_RATES = (500, 2_000, 5_000)
LONG_TASKS = """() => {
  window.__longTasks = [];
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) window.__longTasks.push(entry.duration);
  }).observe({type: "longtask", buffered: false});
}"""
LIVE_FIGURES = """() => ({shown: window.__console.shown, skipped: window.__console.skippedTotal,
  rows: window.__console.rows, longTasks: window.__longTasks,
  last: (document.querySelector('#lines-body > .chunk:last-child > .row:last-child .text')
         || {}).textContent
})"""


def first_rows(page: Page, base: str, source: str, count: int, repeat: int) -> list[float]:
    """Milliseconds from navigation to `count` rows painted, `repeat` times."""
    times: list[float] = []
    for _ in range(repeat):
        page.goto("about:blank")
        page.goto(f"{base}/?{urlencode({'source': source, 'since': '1h', 'n': '10000'})}"
                  "#logs")
        wait_for(lambda: page.evaluate("() => window.__console.paintedAt"), 60,
                 "the rows painted")
        rows = page.evaluate("() => window.__console.rows")
        if rows != count:
            raise AssertionError(f"{source}: {rows} rows shown, {count} expected")
        times.append(float(page.evaluate("() => window.__console.paintedAt")))
    return times


def live(page: Page, base: str, port: int, rate: int, seconds: float) -> dict[str, Any]:
    """Follow while `rate` lines/s arrive for `seconds`; what the page managed."""
    page.goto("about:blank")  # a fresh page (the same URL again would not reload it)
    page.goto(f"{base}/?{urlencode({'source': 'live', 'since': '1m'})}#logs")
    wait_for(lambda: page.evaluate("() => document.body.dataset.loaded"), 30, "the page")
    page.check("#live")
    wait_for(lambda: page.evaluate(
        "() => document.querySelector('#live-state').textContent.startsWith('● live')"),
        15, "Live to connect")
    page.evaluate(LONG_TASKS)
    count = int(rate * seconds)
    lines = [f"live {rate}/s {n} ".encode() + line
             for n, line in enumerate(make_lines(count, seed=rate))]
    datagrams = encode_socket(lines, prefix="bench/live")
    last = lines[-1].decode().rstrip()
    started = time.monotonic()
    report = send_paced(datagrams, ("127.0.0.1", port), rate, duration=seconds * 2)
    sent_at = time.monotonic()

    def caught_up() -> bool:
        return bool(page.evaluate(LIVE_FIGURES)["last"] == last)

    try:
        # Polled every 50 ms with a cheap probe (the last row only), not to load the page.
        wait_for(caught_up, 20, "the last line shown")
        delay: float | None = time.monotonic() - sent_at
    except AssertionError:
        delay = None
    figures: dict[str, Any] = page.evaluate(LIVE_FIGURES)
    # From the first line sent to the last one shown (or to now, if it never was).
    elapsed = (sent_at - started) + delay if delay is not None else (
        time.monotonic() - started)
    page.uncheck("#live")
    tasks = figures["longTasks"]
    return {"rate": rate, "sent": report.sent, "shown": figures["shown"],
            "skipped": figures["skipped"], "rows": figures["rows"],
            "shown_per_s": figures["shown"] / elapsed, "delay": delay,
            "long_tasks": len(tasks), "long_ms": sum(tasks),
            "longest_ms": max(tasks, default=0.0)}


def main() -> int:
    """Run both parts and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="Live traffic per rate")
    parser.add_argument("--repeat", type=int, default=3, help="first-rows runs per size")
    parser.add_argument("--rates", default=",".join(map(str, LIVE_RATES)))
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",") if r]
    print(env_note())
    with bench_collector(LISTENER) as collector:
        collector.start()
        port = udp_port(collector)
        for count in FIRST_ROWS:
            send_paced(encode_socket(make_lines(count), prefix=f"bench/first{count}"),
                       ("127.0.0.1", port), 20_000)
        wait_for(lambda: len(collector.get("/v1/logs?source=first10000&n=10000")["records"])
                 == 10_000, 60, "the lines stored")
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_context(viewport={"width": 1366, "height": 800}).new_page()
            print("time to first rendered rows (navigation to rows painted):")
            for count in FIRST_ROWS:
                times = first_rows(page, collector.url, f"first{count}", count, args.repeat)
                print(f"  {count:>6} lines: best {min(times):7.0f} ms, median "
                      f"{statistics.median(times):7.0f} ms ({args.repeat} runs)")
            print(f"Live, {args.seconds:g} s of traffic per rate:")
            for rate in rates:
                got = live(page, collector.url, port, rate, args.seconds)
                delay = "never" if got["delay"] is None else f"{got['delay']:.2f} s"
                print(f"  {rate:>5} lines/s: sent {got['sent']}, shown {got['shown']} "
                      f"({got['shown_per_s']:.0f}/s), skipped {got['skipped']}, rows kept "
                      f"{got['rows']}, last line shown {delay} after the send ended; "
                      f"long tasks {got['long_tasks']} ({got['long_ms']:.0f} ms in all, "
                      f"longest {got['longest_ms']:.0f} ms)")
            browser.close()
    print("limits: while Live, the page keeps 5,000 rows (older ones are removed) and "
          "updates the table at most every 100 ms; lines it cannot keep up with are "
          "counted as skipped and marked by a gap row.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
