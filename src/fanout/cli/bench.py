"""``fanout bench URL``: drive a WebSocket server, account for every message, say why it broke."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

from fanout.lab.config import BenchConfig
from fanout.lab.gate import ExitCode, FailOn
from fanout.lab.interrupt import sigterm_as_interrupt

EPILOG = """\
examples:
  fanout baseline &        # the article's server on :8001
  fanout bench ws://127.0.0.1:8001/ws --receivers 50 --rate 200 --duration 10
  fanout bench ws://127.0.0.1:8001/ws --receivers 20 --slow 1 --slow-after 2
  fanout bench ws://127.0.0.1:8000/ws --mode v1 --rate max --window 128
  fanout bench ws://127.0.0.1:8002/ws --sender-url ws://127.0.0.1:8001/ws --mode v1
  fanout bench ws://127.0.0.1:8001/ws --server-cmd 'fanout baseline --binary' \\
      --kind png --size 4MiB --rate 5
  fanout bench ws://127.0.0.1:8001/ws --server-cmd 'fanout baseline' --sweep \\
      --sizes 200,64k,1m --rates 100,1000 --receivers-list 10,100 --slow-shares 0,0.1
  fanout report run.json -o report.html

Every run is bounded in time and count and targets this machine only. The results JSON
(--out) is read by `fanout report`; its layout is in docs/lab-results.md.

exit status (for CI, with --junit FILE for a JUnit XML report):
  0  healthy: no verdict at or above --fail-on
  1  a verdict at or above --fail-on (default: break; a sweep: at any point)
  2  bad arguments: nothing was run
  3  an invalid run, which cannot be trusted: nothing listening at the URL, the server
     command died before listening, or the load generator was the bottleneck
  130  interrupted (Ctrl-C or SIGTERM): the server --server-cmd started and the load
     generator's processes are stopped, nothing is written
"""


# The run's defaults are BenchConfig's: one place for them.
DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(BenchConfig)}


def _size(text: str) -> int:
    from fanout.lab.config import ConfigError, parse_size

    try:
        return parse_size(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _rate(text: str) -> float | None:
    if text.strip().lower() in ("max", "fast", "unlimited"):
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not a rate: {text!r} (messages/s per sender, or 'max')"
        ) from exc
    return value


def _list(convert: Any) -> Any:
    def parse(text: str) -> list[Any]:
        items = [t for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        try:
            return [convert(t) for t in items]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from exc

    return parse


def _float(text: str) -> float:
    return float(text)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from exc


def _writable(text: str) -> Path:
    """A file path the run can write at its end, checked now rather than after the run:
    not a directory, under a directory that exists (or can be made) and is writable."""
    import os

    if not text.strip():
        raise argparse.ArgumentTypeError("expected a file name")
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: permission denied")
    ancestor = path.absolute().parent
    while not ancestor.exists():  # missing directories are made when the file is written
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {str(ancestor)!r} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(
            f"cannot write {text!r}: permission denied in {str(ancestor)!r}"
        )
    return path


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "bench",
        help="load-test any WebSocket server on this machine and explain what breaks",
        description="Drive a WebSocket server with receivers and senders, account for every"
        " message (delivered, lost, duplicated, out of order, latency), observe the server"
        " (CPU, memory, socket queues, log) and end with a verdict naming the cause.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", help="ws://127.0.0.1:PORT/PATH (may hold {room} in plain mode)")
    load = p.add_argument_group("load")
    load.add_argument(
        "--sender-url",
        help="senders connect here instead of URL, e.g. another node of the same hub"
        " (default: URL)",
    )
    load.add_argument(
        "--mode",
        choices=["plain", "v1"],
        default=DEFAULTS["mode"],
        help="plain: any server, the header rides in the payload; v1: fanout.v1 with"
        " subscribe/publish, acks and gaps (default: %(default)s)",
    )
    load.add_argument(
        "--receivers",
        type=_int,
        default=DEFAULTS["receivers"],
        help="receiving connections (default: %(default)s)",
    )
    load.add_argument(
        "--senders",
        type=_int,
        default=DEFAULTS["senders"],
        help="sending connections (default: %(default)s)",
    )
    load.add_argument(
        "--rooms",
        type=_int,
        default=DEFAULTS["rooms"],
        help="rooms to spread clients over (default: %(default)s)",
    )
    load.add_argument(
        "--size",
        type=_size,
        default=DEFAULTS["size"],
        help="bytes per message: 200, 64k, 1MiB (default: %(default)s)",
    )
    load.add_argument(
        "--kind",
        choices=["text", "binary", "jpeg", "png"],
        default=DEFAULTS["kind"],
        help="payload: text, random binary, or a real JPEG/PNG image of --size"
        " (default: %(default)s)",
    )
    load.add_argument(
        "--rate",
        type=_rate,
        default=DEFAULTS["rate"],
        help="messages/s per sender, or 'max' for as fast as the window allows"
        " (default: %(default)s)",
    )
    load.add_argument(
        "--window",
        type=_int,
        default=DEFAULTS["window"],
        help="in-flight messages per sender with --rate max: unacked (v1) or not yet"
        " echoed back (plain) (default: %(default)s)",
    )
    load.add_argument(
        "--count",
        type=_int,
        help="messages per sender at most; sending stops at the count or the duration",
    )
    load.add_argument(
        "--ramp",
        type=float,
        default=DEFAULTS["ramp_s"],
        help="seconds to ramp the rate up from 0 (default: %(default)s)",
    )
    load.add_argument(
        "--duration",
        type=float,
        default=DEFAULTS["duration_s"],
        help="seconds of sending (default: %(default)s)",
    )
    load.add_argument(
        "--drain",
        type=float,
        default=DEFAULTS["drain_s"],
        help="seconds to wait for late messages before counting them lost (default: %(default)s)",
    )
    load.add_argument(
        "--processes",
        type=_int,
        default=DEFAULTS["processes"],
        help="generator processes (default: %(default)s)",
    )
    clients = p.add_argument_group("misbehaving clients")
    clients.add_argument(
        "--slow",
        type=_int,
        default=DEFAULTS["slow"],
        help="receivers (among --receivers) that stop reading (default: %(default)s)",
    )
    clients.add_argument(
        "--slow-after",
        type=float,
        default=DEFAULTS["slow_after_s"],
        help="seconds after the start when slow receivers stop reading (default: %(default)s)",
    )
    clients.add_argument(
        "--churn",
        type=_int,
        default=DEFAULTS["churn"],
        help="extra receivers that disconnect and reconnect (default: %(default)s)",
    )
    clients.add_argument(
        "--churn-every",
        type=float,
        default=DEFAULTS["churn_every_s"],
        help="seconds between reconnects of a churning receiver (default: %(default)s)",
    )
    clients.add_argument(
        "--churn-abort",
        action="store_true",
        help="churning receivers vanish (TCP reset) instead of closing cleanly",
    )
    server = p.add_argument_group("the server")
    server.add_argument(
        "--server-cmd",
        help="start this server command for the run and stop it after (its PID, CPU,"
        " memory and log are observed)",
    )
    server.add_argument(
        "--server-pid", type=_int, help="observe an already running server on this machine"
    )
    server.add_argument(
        "--metrics-url",
        help="its Prometheus endpoint (default: http://HOST:PORT/metrics when it answers)",
    )
    server.add_argument(
        "--slo-p99-ms",
        type=float,
        default=DEFAULTS["slo_p99_ms"],
        help="p99 latency above which the run counts as broken (default: %(default)s)",
    )
    sweep = p.add_argument_group("sweep (--sweep)")
    sweep.add_argument(
        "--sweep",
        action="store_true",
        help="run a grid of short runs and print the breaking points",
    )
    sweep.add_argument("--sizes", type=_list(_size), help="sizes to sweep (default: --size)")
    sweep.add_argument(
        "--rates", type=_list(_float), help="rates to sweep, increasing (default: --rate)"
    )
    sweep.add_argument(
        "--receivers-list", type=_list(int), help="receiver counts to sweep (default: --receivers)"
    )
    sweep.add_argument(
        "--slow-shares",
        type=_list(_float),
        help="shares of slow receivers, e.g. 0,0.1 (default: 0)",
    )
    out = p.add_argument_group("output and exit status")
    out.add_argument(
        "--out",
        "-o",
        type=_writable,
        help="results JSON (default: fanout-run-<time>.json or fanout-sweep-<time>.json)",
    )
    out.add_argument(
        "--fail-on",
        choices=[level.value for level in FailOn],
        default=FailOn.BREAK.value,
        help="exit 1 when a verdict is at least this severe: warn, break, or never"
        " (default: %(default)s)",
    )
    out.add_argument(
        "--junit",
        type=_writable,
        metavar="FILE",
        help="also write a JUnit XML report: a test case per run or sweep point, failed"
        " by its verdicts at or above --fail-on, in error when the run is invalid",
    )
    out.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    p.set_defaults(handler=run)


def _config(args: argparse.Namespace) -> Any:
    from fanout.lab.config import BenchConfig

    return BenchConfig(
        url=args.url,
        sender_url=args.sender_url,
        mode=args.mode,
        receivers=args.receivers,
        senders=args.senders,
        rooms=args.rooms,
        size=args.size,
        kind=args.kind,
        rate=args.rate,
        window=args.window,
        count=args.count,
        ramp_s=args.ramp,
        duration_s=args.duration,
        drain_s=args.drain,
        slow=args.slow,
        slow_after_s=args.slow_after,
        churn=args.churn,
        churn_every_s=args.churn_every,
        churn_abort=args.churn_abort,
        processes=args.processes,
        slo_p99_ms=args.slo_p99_ms,
        server_pid=args.server_pid,
        server_cmd=args.server_cmd,
        metrics_url=args.metrics_url,
    )


def _default_out(kind: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(f"fanout-{kind}-{stamp}.json")


def run(args: argparse.Namespace) -> int:
    # SIGTERM (a CI job's time-out, ``kill``) ends a run as Ctrl-C does, through the
    # same clean-up: the server ``--server-cmd`` started runs in its own session, so
    # nothing else would stop it.
    with sigterm_as_interrupt():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        from rich.console import Console

        from fanout.lab import gate, results
        from fanout.lab.config import ConfigError
        from fanout.lab.observe import ObserveError
        from fanout.lab.runner import RunError
    except ImportError as exc:  # the lab's extra dependencies are missing
        print(
            f"fanout bench: the lab needs its extras ({exc.name} is missing):"
            " pip install 'fanout[lab]'",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    console = Console(stderr=True)
    argv = ["fanout", *sys.argv[1:]]
    fail_on = FailOn(args.fail_on)
    started = time.monotonic()
    try:
        config = _config(args)
        if args.sweep:
            doc = _sweep(args, config, console, argv)
        else:
            doc = _single(args, config, console, argv)
    except ConfigError as exc:
        print(f"fanout bench: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except (ObserveError, RunError) as exc:
        # The run could not take place: nothing to trust, nothing written but the report.
        print(f"fanout bench: {exc}", file=sys.stderr)
        cases = [gate.unmade(f"{args.url}: the run could not take place", str(exc))]
        if not _junit(args, cases, fail_on, argv):
            return ExitCode.USAGE
        print(f"fanout bench: {gate.outcome_line(cases, fail_on)}", file=sys.stderr)
        return ExitCode.INVALID
    except KeyboardInterrupt:
        print("fanout bench: interrupted, nothing written", file=sys.stderr)
        return 130
    out = args.out or _default_out("sweep" if args.sweep else "run")
    try:
        results.write(doc, out)
    except OSError as exc:
        print(f"fanout bench: cannot write the results to {out}: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    console.print(
        f"results written to [bold]{out}[/bold]; `fanout report {out} -o report.html` draws them"
    )
    if args.sweep:
        cases = gate.sweep_cases(doc, fail_on)
    else:
        cases = gate.run_cases(doc, fail_on, time.monotonic() - started)
    if not _junit(args, cases, fail_on, argv):
        return ExitCode.USAGE
    code = gate.exit_code(cases)
    style = "green" if code is ExitCode.HEALTHY else "bold red"
    console.print(f"[{style}]{gate.outcome_line(cases, fail_on)}[/{style}]", highlight=False)
    return code


def _junit(args: argparse.Namespace, cases: Any, fail_on: FailOn, argv: list[str]) -> bool:
    """Write the JUnit report if asked to; False when it could not be written."""
    if args.junit is None:
        return True
    from fanout.lab.junit import write_junit

    try:
        write_junit(cases, args.junit, fail_on, command=argv)
    except OSError as exc:
        print(f"fanout bench: cannot write the JUnit report {args.junit}: {exc}", file=sys.stderr)
        return False
    print(f"fanout bench: JUnit report written to {args.junit}", file=sys.stderr)
    return True


def _single(args: argparse.Namespace, config: Any, console: Any, argv: list[str] | None) -> Any:
    from fanout.lab.document import RunDoc
    from fanout.lab.progress import Progress
    from fanout.lab.report.terminal import render_run_summary
    from fanout.lab.session import run_bench

    if args.quiet:
        doc = run_bench(config, argv=argv)
    else:
        with Progress(config, console) as progress:
            doc = run_bench(config, argv=argv, progress=progress, server_sample=progress.server)
    console.print(render_run_summary(RunDoc(Path(args.url), doc)))
    return doc


def _sweep(args: argparse.Namespace, config: Any, console: Any, argv: list[str] | None) -> Any:
    from fanout.lab.document import SweepDoc
    from fanout.lab.progress import Progress
    from fanout.lab.report.terminal import render_sweep_summary
    from fanout.lab.session import run_bench
    from fanout.lab.sweep import Axes, sweep

    if config.rate is None and args.rates is None:
        from fanout.lab.config import ConfigError

        raise ConfigError("a sweep needs fixed rates (--rates 100,1000), not --rate max")
    axes = Axes(
        sizes=tuple(args.sizes or [config.size]),
        rates=tuple(args.rates or [config.rate]),
        receivers=tuple(args.receivers_list or [config.receivers]),
        slow_shares=tuple(args.slow_shares or [0.0]),
    )
    # Validate every corner of the grid before the first run.
    for size in (axes.sizes[0], axes.sizes[-1]):
        for receivers in (axes.receivers[0], axes.receivers[-1]):
            config.replace(
                size=size,
                rate=axes.rates[-1],
                receivers=receivers,
                slow=round(receivers * axes.slow_shares[-1]),
            )

    def one(step: Any, label: str) -> dict[str, Any]:
        if args.quiet:
            return run_bench(step)
        with Progress(step, console, label="  ") as progress:
            return run_bench(step, progress=progress, server_sample=progress.server)

    doc = sweep(config, axes, one, argv=argv, announce=None if args.quiet else console.print)
    console.print(render_sweep_summary(SweepDoc(Path(args.url), doc)))
    return doc
