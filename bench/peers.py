"""Peers benchmark (issue 10): the collector beside rsyslog, fed by the same C sender with
the same uWSGI request lines at the same rates, in one run.

- rsyslog: Debian's rsyslogd (installed with apt-get when missing), with its own config,
  pid file and work dir (bench/rsyslog.py): `imudp` on a loopback port → `omfile`. It is
  sent each line plain, after a `<14>` syslog PRI. Stored lines are counted in its file.
- The collector: a `crypto` aes-256-cbc listener, storage on and the 50 `log-alarm` rules
  of bench/alarms.py, started as bench/harness.py does. It is sent each line as a
  logcrypto datagram (encrypted here beforehand). Stored lines are its
  `collector_store_lines_committed_total`.

The sender (bench/csender.c, compiled on first use) replays pre-encoded pools with
sendmmsg, paced, to 127.0.0.1, bounded in count and time. Each receiver's zero-loss rate
is searched for (bench/search.py), the two searches taking turns trial by trial against
a fresh receiver each. Every trial notes CPU µs per line (rsyslogd; the collector's main
process + store writer) and disk bytes per stored line (rsyslog's file; the collector's
partition files). The summary gives both rates and their ratio (target collector/rsyslog
>= 0.35), CPU per line at the highest rate both held and its ratio (target <= 2).

Then, beside those: the collector at half its zero-loss rate with a live follower while
it is sent `--fill-lines` (a million) lines: p99 from send to the follower (target under
100 ms); and once they are stored, `GET /v1/logs?app=bench&regex=...` over them, timed.

    .venv/bin/python bench/peers.py                # about five minutes
    .venv/bin/python bench/peers.py --budget 60 --fill-lines 100000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import csender, rsyslog
from bench.alarms import RULE_COUNT, alarm_section
from bench.harness import (
    CRYPTO_LISTENER,
    SECRET,
    Budget,
    Follower,
    Sampler,
    Verdict,
    add_search_options,
    bench_collector,
    env_note,
    latencies,
    metric_sum,
    percentile,
    processes,
    retrying,
    search_note,
    search_spec,
    sender_note,
    settle,
    trial_duration,
    udp_port,
)
from bench.search import RateSearch, interleave
from collector.store.partitions import list_partitions
from shipper.loadgen import make_lines
from tests.support.webhook import WebhookServer

RATE_TARGET = 0.35
CPU_TARGET = 2.0
FOLLOW_P99_TARGET_MS = 100.0
PROBE_EVERY = 1000
CHUNK = 50_000
# Rare in the bench lines (about 4 in a million): the query reads every line of the app.
QUERY_REGEX = r"payment 9999\d accepted"
# The pools are encrypted once, at the start, so their timestamps age through the run;
# a skew window of an hour keeps the crypto decoder from dropping them as stale (the
# check costs the same whatever the window).
LISTENER = f"{CRYPTO_LISTENER}\nmax-skew = 1h"
HEADER = (f"{'who':>9} {'rate/s':>8} {'secs':>5} {'sent':>8} {'sent/s':>8} {'stored%':>8} "
          f"{'verdict':>7} {'µs/line':>8} {'main':>6} {'writer':>6} {'B/line':>7} "
          f"{'drops':>7}")


@dataclass(frozen=True)
class TrialFigures:
    """One held or missed trial's CPU and disk figures."""

    held: bool
    cpu_us: float
    main_us: float
    disk_per_line: float


@dataclass
class Record:
    """Every trial of one receiver, by rate (the last run of a rate wins)."""

    trials: dict[float, TrialFigures] = field(default_factory=dict)
    short: set[float] = field(default_factory=set)

    def held_rates(self) -> set[float]:
        """Rates this receiver held."""
        return {rate for rate, figures in self.trials.items() if figures.held}


def common_rate(a: Record, b: Record) -> float | None:
    """The highest rate both receivers held (None if there is none)."""
    both = a.held_rates() & b.held_rates()
    return max(both) if both else None


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, nan when the denominator is 0."""
    return numerator / denominator if denominator else float("nan")


def per_line(total: float, lines: int) -> float:
    """`total` divided by lines, nan with none."""
    return total / lines if lines > 0 else float("nan")


def partition_bytes(data_dir: Path) -> int:
    """Bytes of the collector's partition files (database, WAL, shared memory)."""
    return sum(path.stat().st_size for partition in list_partitions(data_dir / "logs")
               for path in partition.files() if path.exists())


def row(who: str, verdict: Verdict, seconds: float, figures: TrialFigures, drops: str
        ) -> None:
    """Print one trial as it ends."""
    print(f"{who:>9} {verdict.asked:8.0f} {seconds:5.1f} {verdict.sent:8d} "
          f"{verdict.achieved:8.0f} {100 * (1 - verdict.loss):8.2f} {verdict.mark:>7} "
          f"{figures.cpu_us:8.2f} {figures.main_us:6.2f} "
          f"{figures.cpu_us - figures.main_us:6.2f} {figures.disk_per_line:7.1f} {drops:>7}",
          flush=True)


def write_pools(directory: Path, lines: int, plain_lines: int) -> tuple[Path, Path]:
    """The crypto pool (`lines` logcrypto datagrams) and the plain one (the first
    `plain_lines` of the same lines with a syslog PRI), written in chunks."""
    crypto_pool, plain_pool = directory / "crypto.pool", directory / "plain.pool"
    first_micros = time.time_ns() // 1000
    with crypto_pool.open("wb") as crypto, plain_pool.open("wb") as plain:
        for start in range(0, lines, CHUNK):
            chunk = make_lines(min(CHUNK, lines - start), seed=start + 1, start=start)
            crypto.write(csender.pack(csender.crypto_datagrams(
                chunk, SECRET, first_micros=first_micros, probe_every=PROBE_EVERY,
                start=start)))
            if start < plain_lines:
                plain.write(csender.pack(csender.syslog_plain(line)
                                         for line in chunk[:plain_lines - start]))
    return crypto_pool, plain_pool


class Peers:
    """The two receivers' trials, with the sender and pools they share."""

    def __init__(self, args: argparse.Namespace, binary: Path, rsyslogd: str,
                 crypto_pool: Path, plain_pool: Path) -> None:
        self.args = args
        self.binary = binary
        self.rsyslogd = rsyslogd
        self.crypto_pool = crypto_pool
        self.plain_pool = plain_pool
        self.rsyslog = Record()
        self.collector = Record()

    def rsyslog_trial(self, rate: float) -> bool:
        """One rate against a fresh rsyslogd; whether every line reached its file."""
        seconds = trial_duration(rate, self.args.duration, self.args.max_lines)
        count = int(rate * seconds)
        with rsyslog.running_rsyslog(self.rsyslogd) as server:
            sampler = Sampler(lambda: [server.psutil_process()])
            sampler.start()
            result = csender.send(self.binary, self.plain_pool, server.port, rate, count,
                                  max_seconds=1.5 * seconds)
            stored = server.settle(result.sent)
            sampler.stop()
            disk = server.output.stat().st_size if server.output.exists() else 0
        cpu = sampler.cpu_end - sampler.cpu_start
        verdict = Verdict(rate, result.sent, stored, result.seconds, self.args.tolerance)
        figures = TrialFigures(verdict.held, 1e6 * per_line(cpu, stored),
                               1e6 * per_line(cpu, stored), per_line(disk, stored))
        row("rsyslog", verdict, seconds, figures, "-")
        return self._note(self.rsyslog, rate, verdict, figures)

    def collector_trial(self, rate: float) -> bool:
        """One rate against a fresh collector with the rules; whether every line was
        committed to its store."""
        seconds = trial_duration(rate, self.args.duration, self.args.max_lines)
        count = int(rate * seconds)
        receiver = WebhookServer().start()
        try:
            with bench_collector(LISTENER, alarm_section(receiver.url)) as collector:
                collector.start(timeout=30)
                everything = Sampler(lambda: processes(collector))
                main = Sampler(lambda: processes(collector)[:1])
                everything.start()
                main.start()
                result = csender.send(self.binary, self.crypto_pool, udp_port(collector),
                                      rate, count, max_seconds=1.5 * seconds)
                metrics = settle(collector, result.sent)
                everything.stop()
                main.stop()
                disk = partition_bytes(collector.data_dir)
        finally:
            receiver.stop()
        stored = int(metrics.get("collector_store_lines_committed_total", 0))
        verdict = Verdict(rate, result.sent, stored, result.seconds, self.args.tolerance)
        figures = TrialFigures(
            verdict.held, 1e6 * per_line(everything.cpu_end - everything.cpu_start, stored),
            1e6 * per_line(main.cpu_end - main.cpu_start, stored), per_line(disk, stored))
        drops = metric_sum(metrics, "collector_udp_kernel_drops_total")
        row("collector", verdict, seconds, figures, str(drops))
        return self._note(self.collector, rate, verdict, figures)

    @staticmethod
    def _note(record: Record, rate: float, verdict: Verdict, figures: TrialFigures) -> bool:
        previous = record.trials.get(rate)
        if previous is None or not previous.held:
            record.trials[rate] = figures
        if verdict.sender_short:
            record.short.add(rate)
        return verdict.held


def query_times(http_port: int, app: str, regex: str, runs: int
                ) -> Iterator[tuple[float, int]]:
    """`GET /v1/logs?app=&regex=&limit=100`, `runs` times: (milliseconds, lines) each."""
    query = urllib.parse.urlencode({"app": app, "regex": regex, "limit": "100"})
    url = f"http://127.0.0.1:{http_port}/v1/logs?{query}"
    for _ in range(runs):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=300) as response:
            body = response.read()
        elapsed = 1000 * (time.perf_counter() - started)
        yield elapsed, sum(1 for raw in body.splitlines() if raw.strip())


def fill_and_query(args: argparse.Namespace, binary: Path, crypto_pool: Path,
                   rate: float) -> None:
    """The collector at `rate` with a follower while it is sent up to `--fill-lines`
    lines (within `--fill-seconds`): follower p99; then the regex query over them."""
    count = min(args.fill_lines, int(rate * args.fill_seconds))
    print(f"\n# tail and query: collector (50 rules) at {rate:.0f} lines/s (half its "
          f"zero-loss rate), {count} lines ({count / rate:.0f} s), follower on app=probe "
          f"(one line in {PROBE_EVERY})", flush=True)
    receiver = WebhookServer().start()
    try:
        with bench_collector(LISTENER, alarm_section(receiver.url)) as collector:
            collector.start(timeout=30)
            follower = Follower(collector.http_port)
            follower.start()
            follower.connected.wait(10)
            result = csender.send(binary, crypto_pool, udp_port(collector), rate, count,
                                  max_seconds=1.5 * count / rate, probe_every=PROBE_EVERY)
            metrics = settle(collector, result.sent, timeout=120)
            time.sleep(0.5)
            follower.stop()
            stored = int(metrics.get("collector_store_lines_committed_total", 0))
            follow_ms = latencies(result.probes, follower.seen)
            p99 = percentile(follow_ms, 0.99)
            print(f"sent {result.sent} at {result.sent / result.seconds:.0f}/s, stored "
                  f"{stored}; follower saw {len(follow_ms)}/{len(result.probes)} probes: "
                  f"p50 {percentile(follow_ms, 0.5):.1f} ms, p99 {p99:.1f} ms (target < "
                  f"{FOLLOW_P99_TARGET_MS:.0f})")
            runs = list(query_times(collector.http_port, "bench", QUERY_REGEX, 3))
            times = [ms for ms, _ in runs]
            print(f"query GET /v1/logs?app=bench&regex={QUERY_REGEX}&limit=100 over "
                  f"{stored} stored lines: {', '.join(f'{ms:.0f}' for ms in times)} ms "
                  f"(median {statistics.median(times):.0f} ms), {runs[-1][1]} lines "
                  f"answered", flush=True)
    finally:
        receiver.stop()


def summary(peers: Peers, collector: RateSearch, syslog: RateSearch, budget: Budget) -> None:
    """The figures, their ratios, and CPU and disk per line at the highest common rate."""
    print(f"\nrsyslog max zero-loss rate: {syslog.describe()}"
          + sender_note(syslog.bad, peers.rsyslog.short))
    print(f"collector ({RULE_COUNT} rules, aes-256-cbc, store on) max zero-loss rate: "
          f"{collector.describe()}" + sender_note(collector.bad, peers.collector.short))
    rate_ratio = ratio(collector.figure, syslog.figure)
    print(f"ratio collector/rsyslog, rate: {rate_ratio:.2f} (target >= {RATE_TARGET})")
    common = common_rate(peers.collector, peers.rsyslog)
    if common is None:
        print("no rate held by both: no CPU comparison")
    else:
        ours, theirs = peers.collector.trials[common], peers.rsyslog.trials[common]
        print(f"at {common:.0f} lines/s (the highest rate both held): CPU µs per line "
              f"collector {ours.cpu_us:.1f} (main {ours.main_us:.1f} + writer "
              f"{ours.cpu_us - ours.main_us:.1f}), rsyslog {theirs.cpu_us:.1f}; ratio "
              f"collector/rsyslog, CPU per line: {ratio(ours.cpu_us, theirs.cpu_us):.2f} "
              f"(target <= {CPU_TARGET:g}); disk bytes per stored line collector "
              f"{ours.disk_per_line:.0f}, rsyslog {theirs.disk_per_line:.0f}")
    both = sorted(peers.collector.held_rates() & peers.rsyslog.held_rates())
    pairs = [(rate, peers.collector.trials[rate].cpu_us, peers.rsyslog.trials[rate].cpu_us)
             for rate in both]
    if pairs:
        print("CPU µs per line at every rate both held (collector / rsyslog = ratio): "
              + "; ".join(f"{rate:.0f}/s {ours:.1f} / {theirs:.1f} = "
                          f"{ratio(ours, theirs):.1f}" for rate, ours, theirs in pairs))
    top = peers.rsyslog.trials.get(syslog.figure)
    if top is not None:
        print(f"rsyslog at its highest rate held ({syslog.figure:.0f}/s): "
              f"{top.cpu_us:.1f} µs per line")
    print(f"searches took {budget.elapsed:.0f} s", flush=True)


def main() -> int:
    """Search both rates by turns, print every trial and the figures, then tail and
    query at half the collector's rate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_search_options(parser, budget=180.0, max_lines=450_000)
    parser.add_argument("--fill-lines", type=int, default=1_000_000,
                        help="lines sent for the tail latency and the query")
    parser.add_argument("--fill-seconds", type=float, default=150.0,
                        help="seconds the fill may take at most (fewer lines if needed)")
    args = parser.parse_args()
    binary = csender.build()
    rsyslogd = rsyslog.ensure_installed()
    print(f"# peers benchmark: {env_note()}; {search_note(args)}")
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as workdir:
        started = time.monotonic()
        crypto_pool, plain_pool = write_pools(
            Path(workdir), max(args.max_lines, args.fill_lines), args.max_lines)
        print(f"# pools encoded in {time.monotonic() - started:.0f} s; sender "
              f"{binary}; rsyslogd {rsyslogd}", flush=True)
        print(HEADER)
        peers = Peers(args, binary, rsyslogd, crypto_pool, plain_pool)
        spec = search_spec(args)
        collector, syslog = RateSearch(spec), RateSearch(spec)
        budget = Budget(args.budget)
        interleave([(collector, retrying(peers.collector_trial, args.retries)),
                    (syslog, retrying(peers.rsyslog_trial, args.retries))],
                   budget.out_of_time)
        summary(peers, collector, syslog, budget)
        if collector.figure and args.fill_lines > 0:
            fill_and_query(args, binary, crypto_pool, collector.figure / 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
