"""Profile a running collector under steady load: where its CPU per line goes.

One fresh collector (crypto aes-256-cbc listener, storage on, and with `--rules` the 50
`log-alarm` rules of bench/alarms.py) is fed `--rate` lines/s for `--duration` seconds by
bench/sender.py over 127.0.0.1, while `py-spy record` samples its main process and its
store writer (raw collapsed stacks, written to `--out`). It prints the CPU µs per line of
each process (psutil), the share of lines stored, and for each process the sampled time
grouped into the stages of the ingest path (decrypt, split, parse, records, alarms...),
as µs per line.

    .venv/bin/pip install py-spy    # not a dependency: only this script needs it
    .venv/bin/python bench/profile.py --rate 15000 --duration 10 --rules
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.alarms import RARE_EVERY, alarm_section
from bench.harness import Sampler, Sender, bench_collector, processes, settle, udp_port
from tests.support.webhook import WebhookServer

# Stage of a sample: the first of these (function name, file fragment) found in its stack,
# looked for from the innermost frame outwards. Order matters: inner stages first.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("idle (waiting)", "epoll_pwait", ""),
    ("idle (waiting)", "epoll_wait", ""),
    ("idle (waiting)", "PyThread_acquire_lock_timed", ""),
    ("idle (waiting)", "fdatasync", ""),
    ("idle (waiting)", "select", ""),
    ("idle (waiting)", "clock_nanosleep", ""),
    ("kernel: recvmsg", "recvmsg", ""),
    ("kernel: recvmsg", "recvmmsg", ""),
    ("kernel: recvmsg", "recvfrom", ""),
    ("kernel: recvmsg", "__libc_recvfrom", ""),
    ("kernel: write to the writer's pipe", "write", ""),
    ("garbage collector", "gc_collect_main", ""),
    ("decrypt (OpenSSL + CBC xor)", "decrypt", "decode/crypto.py"),
    ("decrypt (OpenSSL + CBC xor)", "decrypt_batch", "decode/crypto.py"),
    ("split lines", "split_lines", "decode/text.py"),
    ("parse request line", "parse_request_line", "requestlog.py"),
    ("worker map", "worker", "requestlog.py"),
    ("worker map", "learn", "requestlog.py"),
    ("alarms engine", "consume", "alarms/"),
    ("alarms engine", "", "alarms/"),
    ("fan-out (followers)", "consume", "fanout.py"),
    ("store queueing + marshal", "append", "store/"),
    ("store queueing + marshal", "", "store/"),
    ("records + ids (ingest.accept)", "accept", "collector/ingest.py"),
    ("records + ids (ingest.accept)", "take", "collector/ingest.py"),
    ("records + ids (ingest.accept)", "accept_many", "collector/ingest.py"),
    ("records + ids (ingest.accept)", "_build", "collector/ingest.py"),
    ("crypto decoder, batch (decode_many)", "decode_many", "decode/crypto.py"),
    ("check + prefix (decoder.decode)", "decode", "decode/crypto.py"),
    ("check + prefix (decoder.decode)", "_decrypt", "decode/crypto.py"),
    ("check + prefix (decoder.decode)", "_is_replay", "decode/crypto.py"),
    ("stats + datagram_received", "datagram_received", "listen/udp.py"),
    ("stats + datagram_received", "settled", "listen/handoff.py"),
    ("stats + datagram_received", "datagrams_received", "listen/udp.py"),
    ("stats + datagram_received", "batch", "listen/handoff.py"),
    ("stats + datagram_received", "take", "listen/intake.py"),
    ("receive loop (listen/recv.py)", "", "listen/recv.py"),
    ("receive loop (listen/recv.py)", "_readable", "listen/udp.py"),
    ("http api / metrics", "", "aiohttp/"),
    ("http api / metrics", "", "collector/api/"),
)


def function_name(frame: str) -> str:
    """`decrypt` of `CryptoKey.decrypt (collector/decode/crypto.py:45)`."""
    return frame.partition(" (")[0].rpartition(".")[2]


def stage_of(stack: str) -> str:
    """The stage a collapsed stack (`frame;frame;...`, outermost first) is counted under."""
    frames = stack.split(";")
    for frame in reversed(frames):
        for stage, name, where in STAGES:
            if where in frame and (not name or function_name(frame) == name):
                return stage
    if any("uv_run" in f or "uvloop" in f or "Runner.run" in f for f in frames):
        return "event loop (uvloop, callbacks)"
    return "other"


def read_collapsed(path: Path) -> Counter[str]:
    """Samples per stage from a py-spy `--format raw` file."""
    stages: Counter[str] = Counter()
    if not path.exists():
        return stages
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stages[stage_of(stack)] += int(count)
    return stages


def main() -> int:
    """Run the load, sample, print the breakdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=15_000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rules", action="store_true", help="the 50 log-alarm rules")
    parser.add_argument("--sample-rate", type=int, default=250, help="py-spy samples/s")
    parser.add_argument("--native", action="store_true",
                        help="C frames too (uvloop, OpenSSL); pauses the process to sample")
    parser.add_argument("--no-spy", action="store_true",
                        help="CPU per line only, without sampling (for before/after runs)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/collector-profile"))
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not args.no_spy and not os.path.exists(spy):
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    receiver = WebhookServer().start()
    try:
        extra = alarm_section(receiver.url) if args.rules else ""
        with bench_collector(extra=extra) as collector:
            sender = Sender(udp_port(collector), args.rate, args.duration,
                            extra=[f"--rare-every={RARE_EVERY}"])
            try:
                collector.start(timeout=30)
                procs = processes(collector)
                spies: list[tuple[str, subprocess.Popen[bytes] | None]] = []
                for name, proc in zip(("main", "writer"), procs, strict=False):
                    if args.no_spy:
                        spies.append((name, None))
                        continue
                    spies.append((name, subprocess.Popen(
                        [spy, "record", "--pid", str(proc.pid), "--format", "raw",
                         "--rate", str(args.sample_rate),
                         *(["--native"] if args.native else ["--nonblocking"]),
                         "--duration", str(int(args.duration) + 1),
                         "--output", str(args.out / f"{name}.txt")],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
                time.sleep(0.5)
                each = [Sampler(lambda p=p: [p]) for p in procs]  # type: ignore[misc]
                for s in each:
                    s.start()
                result = sender.go()
                metrics = settle(collector, result.sent)
                for s in each:
                    s.stop()
                for _, spy_process in spies:
                    if spy_process is not None:
                        spy_process.wait(timeout=args.duration + 60)
            finally:
                sender.close()
    finally:
        receiver.stop()
    stored = int(metrics.get("collector_store_lines_committed_total", 0))
    load = os.getloadavg()
    print(f"rate {args.rate:.0f}/s for {result.seconds:.1f} s, sent {result.sent}, "
          f"stored {100 * stored / max(1, result.sent):.2f} %, rules "
          f"{'50' if args.rules else 'none'}, load average {load[0]:.2f} {load[1]:.2f}")
    for (name, _), sampler in zip(spies, each, strict=False):
        cpu_us = 1e6 * (sampler.cpu_end - sampler.cpu_start) / max(1, result.sent)
        if args.no_spy:
            print(f"{name}: {cpu_us:.1f} CPU µs per line (psutil)")
            continue
        stages = read_collapsed(args.out / f"{name}.txt")
        # Idle samples (only taken with --native) are not CPU: shares are of the rest.
        idle = stages.pop("idle (waiting)", 0)
        total = sum(stages.values()) or 1
        print(f"\n{name}: {cpu_us:.1f} CPU µs per line (psutil), {total} samples on CPU, "
              f"{idle} idle ({args.out / name}.txt)")
        for stage, count in stages.most_common():
            print(f"  {stage:<36} {100 * count / total:5.1f} %  "
                  f"{cpu_us * count / total:6.1f} µs/line")
    return 0


if __name__ == "__main__":
    sys.exit(main())
