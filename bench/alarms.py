"""Alarms benchmark: what 50 `log-alarm` rules cost ingest, and how fast an alarm gets out.

1. Ingest. The highest rate a fresh collector with no alarm rules (the baseline) and one
   with the 50 rules below store with zero loss, each searched for (bench/search.py: from
   2,000 lines/s, doubling while held, then bisecting to 5 %), the two searches taking
   turns so that the machine's load drifts alike for both. Traffic is bench/sender.py's:
   uWSGI request lines, app lines, and one line in RARE_EVERY an error that a few rules
   match, each fired as a webhook to a local receiver; sent by the C sender
   (bench/csender.c, `--sender c`, the default) from a pool encoded once when the run
   starts, or by bench/sender.py itself (`--sender python`, at most about 128,000
   lines/s here). Each trial reports
   the share of lines stored, the collector's CPU per line (all its processes, and the
   main one alone) and the alarms fired and delivered. A trial holds when every line sent
   was stored (within `--tolerance`) and the sender kept the rate; a miss is run once more
   before it counts. The ratio rules/baseline has a target of at least 0.8. On a busy
   machine that ratio is noisy; the main process's CPU per line at the rates both held is
   printed beside it as the steadier figure.
2. Latency. A collector with the same rules; probe lines (`alarm-probe seq=N sent=T`, the
   send time in the line) every 40 ms match a rule whose alarm is a webhook to a local
   aiohttp receiver that notes each arrival. p50/p99 from send to arrival with 10,000
   lines/s of other traffic flowing (target p99 under 20 ms), beside the same probes with
   no other traffic (the baseline, same run).

Both parts run with `--silences` (1,000) active silences for the benchmark's app
(bench/silence_mix.py: every kind of matcher, none holding anything the traffic raises but
the HARAKIRI rare line, which the last three hold, so the silencing path runs too). They
are created through `POST /v1/silences` of a first collector, timed; each ingest trial's
collector with the rules starts with that collector's silences file in its data directory
(as after a restart), and the latency part's collector gets them through the API again.
The ingest part's collectors with rules group their alarms (`--grouping on`:
`alarm-group-wait`/`alarm-group-interval` of `--group-wait`/`--group-interval` in the app
section); the latency part's do not (group-wait 0, the default: a probe goes out at once).
The baseline collectors have neither rules nor silences.

    .venv/bin/python bench/alarms.py                       # about four minutes
    .venv/bin/python bench/alarms.py --budget 60 --duration 2 --latency-seconds 10
    .venv/bin/python bench/alarms.py --silences 0 --grouping off   # as before issue 13
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import csender
from bench.harness import (
    CRYPTO_LISTENER,
    SECRET,
    Budget,
    Sampler,
    Sender,
    SendResult,
    Verdict,
    add_search_options,
    bench_collector,
    env_note,
    metric_sum,
    percentile,
    processes,
    ratio_line,
    search_note,
    search_spec,
    settle,
    trial_duration,
    udp_port,
    wait_quietly,
)
from bench.search import RateSearch, interleave
from bench.sender import bench_datagrams
from bench.silence_mix import silence_bodies
from bench.silence_setup import post_silences
from logwire.logcrypto import encrypt, frame
from tests.support.collector_proc import CollectorProcess
from tests.support.webhook import WebhookServer

RATIO_TARGET = 0.8
P99_TARGET_MS = 20.0
RARE_EVERY = 5000
# The C sender replays one pool, encoded when the run starts, for minutes: the listener
# takes its timestamps however old (the ingest trials' collectors, with and without rules).
INGEST_LISTENER = f"{CRYPTO_LISTENER}\nmax-skew = 1h"
PROBE_INTERVAL = 0.04

# Fifty rules an operator might keep for a Django/Celery app under uWSGI: one negative
# rule for health checks first, then errors that ordinary request and app lines never
# contain. The sender's rare lines match five of them; the probe rule is the latency
# part's. Ordinary traffic matches only the health-check rule.
RULES = r"""
not-log-alarm = hook,ops GET /healthz
log-alarm = hook Traceback \(most recent call last\)
log-alarm = ops OperationalError
log-alarm = ops ConnectionError: Error \d+ connecting to
log-alarm = hook HARAKIRI ON WORKER \d+
log-alarm = hook payment \d+ failed
log-alarm = probe ^alarm-probe seq=
log-alarm = hook,ops MemoryError
log-alarm = ops No space left on device
log-alarm = ops Too many open files
log-alarm = hook IntegrityError: duplicate key value
log-alarm = hook (?i)deadlock detected
log-alarm = ops FATAL: (?:too many connections|the database system is)
log-alarm = ops DAMN ! worker \d+ \(pid: \d+\) died
log-alarm = hook invalid request block size
log-alarm = hook uwsgi_response_write(?:v_headers|_body)_do\(\) TIMEOUT
log-alarm = hook (?:SIGPIPE|[Bb]roken pipe)
log-alarm = ops Permission denied
log-alarm = ops certificate verify failed
log-alarm = hook \bCRITICAL\b
log-alarm = hook (?i)out of memory
log-alarm = ops OOM[- ]kill
log-alarm = hook SoftTimeLimitExceeded
log-alarm = hook celery.*(?:WorkerLostError|Hard time limit)
log-alarm = ops => generated \d+ bytes in \d{5,} msecs
log-alarm = ops \(HTTP/1\.[01] 50[34]\) .*/api/v1/payments
log-alarm = hook (?:POST|PUT) /admin/
log-alarm = hook GET /\.env
log-alarm = hook GET /wp-login\.php
log-alarm = hook \.\./\.\./
log-alarm = ops slow query took \d{6,} ms
log-alarm = hook cache stampede
log-alarm = ops retrying job \d+ \(attempt (?:[5-9]|\d{2,})\)
log-alarm = hook Stripe(?:Error|APIError|CardError)
log-alarm = hook (?i)csrf verification failed
log-alarm = hook SuspiciousOperation
log-alarm = hook DisallowedHost
log-alarm = ops (?:psycopg2|pymysql)\.\w+Error
log-alarm = ops ssl\.SSLError
log-alarm = ops ReadTimeout|ConnectTimeout
log-alarm = hook UnicodeDecodeError
log-alarm = hook KeyError: '\w+'
log-alarm = hook RecursionError
log-alarm = ops Segmentation fault|core dumped
log-alarm = ops worker \d+ killed by signal
log-alarm = hook unhandled exception
log-alarm = hook (?i)panic:
log-alarm = ops [Dd]isk quota exceeded
log-alarm = ops (?i)rate limit exceeded
log-alarm = hook user \d+ locked out
""".strip()
RULE_COUNT = 50


SILENCES_FILE = "silences.json"


@dataclass(frozen=True)
class Setup:
    """What a collector with the rules gets besides them: grouping (the two settings'
    values, or None for none) and a silences file to start with."""

    group_wait: str | None = None
    group_interval: str | None = None
    silences_file: Path | None = None

    @property
    def grouping(self) -> bool:
        """Whether its alarms are grouped."""
        return self.group_wait is not None


def alarm_section(receiver_url: str, setup: Setup = Setup()) -> str:
    """The `[app:bench]` section: three webhook alarms, the rules, segfault and backlog,
    and the grouping settings when `setup` asks for them."""
    grouping = (f"alarm-group-wait = {setup.group_wait}\n"
                f"alarm-group-interval = {setup.group_interval}\n"
                if setup.group_wait is not None else "")
    return (f"\n[app:bench]\nalarm = hook webhook:{receiver_url}/hook\n"
            f"alarm = ops webhook:{receiver_url}/ops\n"
            f"alarm = probe webhook:{receiver_url}/probe\n{RULES}\n"
            f"alarm-segfault = ops\nalarm-backlog = ops\nalarm-freq = 3\n{grouping}")


def alarm_figures(metrics: dict[str, float]) -> tuple[int, int, int, int]:
    """(fired, delivered, silenced, pending) alarms, summed over every lane."""
    return (metric_sum(metrics, "collector_alarms_fired_total"),
            metric_sum(metrics, "collector_alarms_delivered_total"),
            metric_sum(metrics, "collector_alarms_silenced_total"),
            metric_sum(metrics, "collector_alarms_pending"))


def wait_alarms_out(collector: CollectorProcess, grouping: bool, timeout: float = 10.0
                    ) -> tuple[int, int, int]:
    """Wait (at most `timeout`) until the alarms fired are out: each delivered or
    silenced, or with grouping (a notification then carries several), none pending and
    no change for a second; (fired, delivered, silenced) then."""
    seen: list[tuple[int, int, int, int]] = []
    steady_since = [time.monotonic()]

    def out() -> bool:
        figures = alarm_figures(collector.metrics())
        if seen and figures != seen[-1]:
            steady_since[0] = time.monotonic()
        seen.append(figures)
        fired, delivered, silenced, pending = figures
        if not grouping:
            return delivered + silenced >= fired
        return pending == 0 and time.monotonic() - steady_since[0] >= 1.0

    wait_quietly(out, timeout)
    fired, delivered, silenced, _ = alarm_figures(collector.metrics())
    return fired, delivered, silenced


def make_silences(count: int, keep: Path) -> tuple[float, int]:
    """Create `count` silences through `POST /v1/silences` of a collector with the rules
    and keep its silences file at `keep`: (seconds the API took, silences it lists)."""
    with bench_collector(extra=alarm_section("http://127.0.0.1:9")) as collector:
        collector.start(timeout=30)
        seconds = post_silences(collector.url, silence_bodies(count), collector.token)
        listed = len(collector.get("/v1/silences")["silences"])
        shutil.copyfile(collector.data_dir / SILENCES_FILE, keep)
    return seconds, listed


def start_with(collector: CollectorProcess, setup: Setup) -> None:
    """Start a collector, with the setup's silences file in its data directory."""
    if setup.silences_file is not None:
        collector.data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(setup.silences_file, collector.data_dir / SILENCES_FILE)
    collector.start(timeout=30)


@dataclass
class IngestRun:
    """One collector at one rate."""

    sent: int
    seconds: float
    stored: int
    cpu_seconds: float
    main_cpu_seconds: float
    fired: int
    delivered: int
    silenced: int = 0

    @property
    def cpu_us_per_line(self) -> float:
        """Collector CPU (main process and store writer) per line sent."""
        return 1e6 * self.cpu_seconds / self.sent if self.sent else float("nan")

    @property
    def main_us_per_line(self) -> float:
        """CPU of the collector's main process (listeners, ingest, alarms) per line sent."""
        return 1e6 * self.main_cpu_seconds / self.sent if self.sent else float("nan")


@dataclass(frozen=True)
class Pool:
    """The C sender and its pool of the ingest part's traffic (bench.sender's mix,
    encoded once when the run starts)."""

    binary: Path
    path: Path
    lines: int


def write_pool(directory: Path, lines: int) -> Pool:
    """Build the C sender and write a pool of `lines` datagrams of the traffic."""
    binary = csender.build()
    path = directory / "alarms.pool"
    path.write_bytes(csender.pack(bench_datagrams(lines, SECRET, rare_every=RARE_EVERY)))
    return Pool(binary, path, lines)


class CSend:
    """`Sender`'s `go`/`close` over the C sender and a pool."""

    def __init__(self, pool: Pool, port: int, rate: float, duration: float) -> None:
        self._pool, self._port, self._rate = pool, port, rate
        self._count = min(pool.lines, int(rate * duration))
        self._seconds = duration * 1.5

    def go(self) -> SendResult:
        """Send the pool's first lines at the rate; the report."""
        return csender.send(self._pool.binary, self._pool.path, self._port, self._rate,
                            self._count, max_seconds=self._seconds)

    def close(self) -> None:
        """Nothing runs between trials."""


def run_ingest(rate: float, duration: float, rules: bool, setup: Setup = Setup(), *,
               pool: Pool | None = None) -> IngestRun:
    """A fresh collector (with the rules and `setup`, or with neither) at `rate` for
    `duration` seconds, sent by the C sender from `pool`, else by bench.sender."""
    setup = setup if rules else Setup()
    receiver = WebhookServer().start()
    try:
        with bench_collector(INGEST_LISTENER,
                             alarm_section(receiver.url, setup) if rules else ""
                             ) as collector:
            sender: Sender | CSend = (
                CSend(pool, udp_port(collector), rate, duration) if pool is not None else
                Sender(udp_port(collector), rate, duration,
                       extra=[f"--rare-every={RARE_EVERY}"]))
            try:
                start_with(collector, setup)
                sampler = Sampler(lambda: processes(collector))
                main = Sampler(lambda: processes(collector)[:1])
                sampler.start()
                main.start()
                result = sender.go()
                metrics = settle(collector, result.sent)
                sampler.stop()
                main.stop()
            finally:
                sender.close()
            fired, delivered, silenced = wait_alarms_out(collector, setup.grouping)
    finally:
        receiver.stop()
    stored = int(metrics.get("collector_store_lines_committed_total", 0))
    return IngestRun(result.sent, result.seconds, stored, sampler.cpu_end - sampler.cpu_start,
                     main.cpu_end - main.cpu_start, fired, delivered, silenced)


class Prober:
    """Sends `alarm-probe seq=N sent=T` lines (bench/web.2) every PROBE_INTERVAL."""

    def __init__(self, port: int, secret: str) -> None:
        self._address = ("127.0.0.1", port)
        self._secret = secret
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.seq = 0

    def run(self, seconds: float) -> list[int]:
        """Probe for `seconds`; the sequence numbers sent."""
        sent: list[int] = []
        deadline = time.monotonic() + seconds
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            self.seq += 1
            now = time.time()
            line = f"alarm-probe seq={self.seq} sent={now:.6f}\n".encode()
            datagram = encrypt(frame(line, time.time_ns() // 1000, b"bench/web.2"),
                               self._secret, "aes-256-cbc")
            self._sock.sendto(datagram, self._address)
            sent.append(self.seq)
            next_at += PROBE_INTERVAL
            time.sleep(max(0.0, next_at - time.monotonic()))
        return sent

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()


def probe_latencies(receiver: WebhookServer, seqs: list[int]) -> tuple[list[float], int]:
    """(milliseconds from send to arrival of the probes in `seqs`, how many never came)."""
    wanted = set(seqs)
    found: dict[int, float] = {}
    for request in receiver.requests:
        if request.path != "/probe":
            continue
        words = dict(w.split("=", 1) for w in request.json()["message"].split()[1:])
        seq = int(words["seq"])
        if seq in wanted:
            found.setdefault(seq, (request.arrived - float(words["sent"])) * 1000)
    return list(found.values()), len(wanted) - len(found)


@dataclass
class LatencyRun:
    """The latency part's figures."""

    idle_ms: list[float]
    idle_missing: int
    loaded_ms: list[float]
    loaded_missing: int
    expected: int
    stored: int
    silences: int = 0
    silences_seconds: float = 0.0
    silenced: int = 0
    probes_silenced: int = 0


def run_latency(seconds: float, idle_seconds: float, rate: float, silences: int = 0
                ) -> LatencyRun:
    """`silences` made through the API, then idle probes, then probes under `rate`
    lines/s."""
    receiver = WebhookServer().start()
    made, took = 0, 0.0
    try:
        with bench_collector(extra=alarm_section(receiver.url)) as collector:
            collector.start(timeout=30)
            if silences:
                took = post_silences(collector.url, silence_bodies(silences),
                                     collector.token)
                made = len(collector.get("/v1/silences")["silences"])
            prober = Prober(udp_port(collector), SECRET)
            sender: Sender | None = None
            try:
                idle = prober.run(idle_seconds)
                sender = Sender(udp_port(collector), rate, seconds,
                                extra=[f"--rare-every={RARE_EVERY}"])
                sender.wait_ready()
                sent_box: list[int] = []
                go = sender.go
                traffic = threading.Thread(target=lambda: sent_box.append(go().sent))
                traffic.start()
                loaded = prober.run(seconds)
                traffic.join(seconds * 3 + 30)
            finally:
                prober.close()
                if sender is not None:
                    sender.close()
            expected = prober.seq + (sent_box[0] if sent_box else 0)
            metrics = settle(collector, expected)
            wait_quietly(lambda: len(probe_latencies(receiver, idle + loaded)[0])
                         >= len(idle) + len(loaded), 10)
            _, _, silenced = wait_alarms_out(collector, grouping=False)
            probes_silenced = metric_sum(collector.metrics(),
                                         'collector_alarms_silenced_total{alarm="probe"')
        idle_ms, idle_missing = probe_latencies(receiver, idle)
        loaded_ms, loaded_missing = probe_latencies(receiver, loaded)
    finally:
        receiver.stop()
    stored = int(metrics.get("collector_store_lines_committed_total", 0))
    return LatencyRun(idle_ms, idle_missing, loaded_ms, loaded_missing, expected, stored,
                      made, took, silenced, probes_silenced)


Cpu = dict[tuple[bool, float], IngestRun]


def trial(rate: float, rules: bool, args: argparse.Namespace, lossless: Cpu,
          setup: Setup = Setup(), *, pool: Pool | None = None) -> bool:
    """Whether the collector (with the rules and `setup`, or with neither) stores every
    line at `rate`: one run, and `--retries` more if it missed (on a shared machine
    another process's burst can cost a run). A run that held is kept in `lossless` for
    its CPU per line."""
    seconds = trial_duration(rate, args.duration, args.max_lines)
    for attempt in range(1, args.retries + 2):
        run = run_ingest(rate, seconds, rules, setup, pool=pool)
        verdict = Verdict(rate, run.sent, run.stored, run.seconds, args.tolerance)
        print(f"{rate:8.0f} {'50 rules' if rules else 'none':>8} {attempt:>3} "
              f"{seconds:5.1f} {verdict.achieved:8.0f} {100 * (1 - verdict.loss):8.2f} "
              f"{verdict.mark:>7} {run.cpu_us_per_line:11.1f} {run.main_us_per_line:10.1f} "
              f"{f'{run.fired}/{run.delivered}/{run.silenced}':>18}", flush=True)
        if verdict.held:
            lossless[(rules, rate)] = run
            return True
    return False


def main() -> int:
    """Both parts; print the tables and the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_search_options(parser, budget=150.0, max_lines=450_000)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--idle-seconds", type=float, default=8.0)
    parser.add_argument("--latency-rate", type=float, default=10_000)
    parser.add_argument("--silences", type=int, default=1000,
                        help="active silences for app bench in both parts (0: none)")
    parser.add_argument("--grouping", choices=("on", "off"), default="on",
                        help="group the alarms of the ingest part's collectors with rules")
    parser.add_argument("--group-wait", default="1s",
                        help="alarm-group-wait with --grouping on (short enough that "
                        "groups go out within a trial)")
    parser.add_argument("--group-interval", default="1s",
                        help="alarm-group-interval with --grouping on")
    parser.add_argument("--sender", choices=("c", "python"), default="c",
                        help="the ingest part's sender: bench/csender.c replaying a pool "
                        "(rates far past Python's) or bench/sender.py")
    args = parser.parse_args()
    count = sum(1 for line in RULES.splitlines() if "log-alarm = " in line)
    assert count == RULE_COUNT, count
    spec = search_spec(args)
    grouping = (f"grouping on (alarm-group-wait {args.group_wait}, alarm-group-interval "
                f"{args.group_interval})" if args.grouping == "on" else "grouping off")
    print(f"# alarms benchmark: {env_note()}; {RULE_COUNT} log-alarm rules, "
          f"{args.silences} silences, {grouping}; one rare error line in {RARE_EVERY}; "
          f"{search_note(args)}")
    with tempfile.TemporaryDirectory(prefix="bench-silences-") as keep:
        pool: Pool | None = None
        if args.sender == "c":
            began = time.monotonic()
            pool = write_pool(Path(keep), args.max_lines)
            print(f"C sender: a pool of {pool.lines} lines encoded in "
                  f"{time.monotonic() - began:.1f} s", flush=True)
        silences_file: Path | None = None
        if args.silences:
            silences_file = Path(keep) / SILENCES_FILE
            took, listed = make_silences(args.silences, silences_file)
            print(f"{args.silences} silences created through POST /v1/silences in "
                  f"{took:.1f} s ({1000 * took / args.silences:.1f} ms each), {listed} "
                  "listed active; each ingest trial with rules starts with them", flush=True)
        setup = (Setup(args.group_wait, args.group_interval, silences_file)
                 if args.grouping == "on" else Setup(silences_file=silences_file))
        print(f"{'rate/s':>8} {'rules':>8} {'try':>3} {'secs':>5} {'sent/s':>8} "
              f"{'stored%':>8} {'verdict':>7} {'cpu us/line':>11} {'main us/l':>10} "
              f"{'alarms fired/ok/held':>18}")
        cpu: Cpu = {}
        baseline, ruled = RateSearch(spec), RateSearch(spec)
        budget = Budget(args.budget)
        interleave([(baseline, lambda r: trial(r, False, args, cpu, pool=pool)),
                    (ruled, lambda r: trial(r, True, args, cpu, setup, pool=pool))],
                   budget.out_of_time)
    print(f"\nmax zero-loss rate, no rules (baseline, same run): {baseline.describe()}")
    print(f"max zero-loss rate, {RULE_COUNT} rules, {args.silences} silences, "
          f"grouping {args.grouping}: {ruled.describe()}")
    print(ratio_line("rules", ruled.figure, "baseline", baseline.figure)
          + f" (target >= {RATIO_TARGET}); {budget.elapsed:.0f} s")
    # The steadier figure on a busy machine: CPU per line at the rates both held.
    # The three highest rates only: at low rates the fixed costs (timers, the API) swamp
    # the cost per line.
    paired = sorted(rate for rules, rate in cpu if rules and (False, rate) in cpu)[-3:]
    if paired:
        pairs = [(cpu[(False, r)].main_us_per_line, cpu[(True, r)].main_us_per_line)
                 for r in paired]
        ratios = sorted(bare / ruled for bare, ruled in pairs)
        print("main-process CPU per line at the three highest rates both held, without/with "
              "rules: "
              + ", ".join(f"{r:.0f}/s {b:.1f}/{w:.1f} us" for r, (b, w) in zip(
                  paired, pairs, strict=True))
              + f"; median ratio {ratios[len(ratios) // 2]:.2f} (the zero-loss ratio this "
              "predicts where the main process is the limit)")

    print(f"\n# latency: probe line sent -> webhook arrived; {args.silences} silences "
          f"active, group-wait 0; {args.idle_seconds:.0f} s idle, "
          f"then {args.latency_seconds:.0f} s with {args.latency_rate:.0f} lines/s of "
          f"other traffic; a probe every {PROBE_INTERVAL * 1000:.0f} ms", flush=True)
    run = run_latency(args.latency_seconds, args.idle_seconds, args.latency_rate,
                      args.silences)
    if args.silences:
        print(f"{run.silences} silences active (created through the API in "
              f"{run.silences_seconds:.1f} s); alarms held by a silence: {run.silenced}, "
              f"of them probes: {run.probes_silenced}")
    for label, values, missing in (("idle (baseline)", run.idle_ms, run.idle_missing),
                                   (f"{args.latency_rate:.0f} lines/s", run.loaded_ms,
                                    run.loaded_missing)):
        print(f"{label:>16}: {len(values)} probes, p50 {percentile(values, 0.5):.1f} ms, "
              f"p99 {percentile(values, 0.99):.1f} ms, max {max(values, default=0):.1f} ms,"
              f" missing {missing}")
    p99 = percentile(run.loaded_ms, 0.99)
    print(f"p99 under load: {p99:.1f} ms (target < {P99_TARGET_MS:.0f} ms); ratio to idle "
          f"p99: {p99 / percentile(run.idle_ms, 0.99):.2f}; lines stored "
          f"{run.stored}/{run.expected}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
