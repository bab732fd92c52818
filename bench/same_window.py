"""Code changes compared in the same window: several fanout builds (and the floor) at once.

Server CPU per delivery moves 10-40 % from one run to the next on a shared 2-core
machine (its neighbours come and go), far more than most code changes move it:
sequential rounds (``bench/fanout_vs_article.py``) cannot tell a 3 % change from noise.
Here every variant runs at the same time, each server pinned to CPU 0 with its own
load (``fanout bench``, pinned to CPU 1), and their CPU is read over the same window:
whatever the machine does then, it does to all of them. Between two fanout builds the
ratio within a round holds to about 2 % where the rounds' absolute figures move by 30 %
(the floor's, a different program, moves more). Ratios are to the first variant.

Use it to rank code changes, not for RESULTS.md's figures: servers sharing a core share
its caches, which raises each one's cost, fanout's more than the floor's (its Python
per publish runs on colder caches), so ratios to the floor come out higher here than
in ``bench/fanout_vs_article.py``, which runs one server at a time.

    .venv/bin/python bench/same_window.py --variant before=HEAD~1 --variant after=. --floor

A variant is NAME=WHERE: WHERE is a directory holding a checkout of fanout (its
``src`` goes first on the server's PYTHONPATH; ``.`` is this working tree) or a git
revision, checked out for the run into a temporary worktree that is removed after it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fanout.lab.interrupt import run_interruptible
from fanout.lab.net import free_port
from fanout.lab.observe import ServerProcess
from fanout.settings import NO_CLIENT_LIMITS
from fanout_vs_article import children_on, pin_threads, server_command
from nodes import stop
from results_md import HOST, ROOT, user_system_s

SERVER_CPUS = (0,)
LOAD_CPUS = (1,)
WARMUP_S = 4.0  # clients connected and sending before the window opens
WINDOW_S = 8.0
TAIL_S = 1.0  # sending goes on past the window: every server is loaded throughout


@dataclass
class Variant:
    name: str
    src: Path | None  # None: the floor server
    rounds: list[float] = field(default_factory=list)  # server CPU us per publish
    user: list[float] = field(default_factory=list)
    lost: int = 0


def parse_variant(text: str) -> tuple[str, str]:
    name, sep, where = text.partition("=")
    if not sep or not name or not where:
        raise argparse.ArgumentTypeError(
            f"expected NAME=WHERE (a directory or a git revision), got {text!r}"
        )
    if name == "floor":
        raise argparse.ArgumentTypeError("'floor' is the floor server's name: use --floor")
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise argparse.ArgumentTypeError(f"a variant's name is letters, digits, - _ . : {name!r}")
    return name, where


@contextlib.contextmanager
def checkouts(specs: list[tuple[str, str]]) -> Iterator[list[Variant]]:
    """Each variant's source directory; git revisions checked out meanwhile."""
    made: list[Path] = []
    try:
        variants = []
        for name, where in specs:
            path = Path(where)
            if not path.is_dir():
                known = subprocess.run(
                    ["git", "rev-parse", "--verify", "--quiet", f"{where}^{{commit}}"],
                    cwd=ROOT,
                    capture_output=True,
                    check=False,
                )
                if known.returncode != 0:
                    raise SystemExit(f"{name}: {where!r} is neither a directory nor a git revision")
                tree = Path(tempfile.mkdtemp(prefix=f"same-window-{name}-"))
                tree.rmdir()
                subprocess.run(
                    ["git", "worktree", "add", "--detach", "--quiet", str(tree), where],
                    cwd=ROOT,
                    check=True,
                )
                made.append(tree)
                path = tree
            src = path.resolve() / "src"
            if not (src / "fanout" / "__init__.py").is_file():
                raise SystemExit(f"{name}: no fanout package under {src}")
            variants.append(Variant(name, src))
        yield variants
    finally:
        for tree in made:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False
            )


def one_round(variants: list[Variant], args: argparse.Namespace, out: Path, round_no: int) -> None:
    duration = WARMUP_S + WINDOW_S + TAIL_S
    with contextlib.ExitStack() as stack:
        servers: list[tuple[Variant, ServerProcess, int]] = []
        for v in variants:
            port = free_port()
            if v.src is None:
                command, env = server_command("floor", port), {}
            else:
                command = [*server_command("fanout", port), *NO_CLIENT_LIMITS]
                env = {"PYTHONPATH": str(v.src)}
            log = out / "logs" / f"{v.name}-{round_no}.log"
            server = stack.enter_context(
                ServerProcess.start(shlex.join(command), log, env=env, cwd=ROOT)
            )
            server.wait_listening(HOST, port, 30.0)
            pin_threads(server.pid, SERVER_CPUS)
            servers.append((v, server, port))
        loads = []
        for v, _, port in servers:
            argv = [sys.executable, "-m", "fanout.cli", "bench", f"ws://{HOST}:{port}/ws"]
            argv += ["--mode", "plain" if v.src is None else args.mode]
            argv += ["--receivers", str(args.subscribers), "--rate", str(args.rate)]
            argv += ["--duration", str(duration), "--drain", "3", "--quiet"]
            argv += ["--fail-on", "never", "--out", str(out / f"{v.name}-{round_no}.json")]
            with children_on(LOAD_CPUS):
                quiet = subprocess.DEVNULL
                load = subprocess.Popen(argv, stdout=quiet, stderr=quiet)
            stack.callback(stop, load)
            loads.append(load)
        time.sleep(WARMUP_S)
        before = [user_system_s(server.pid) for _, server, _ in servers]
        started = time.monotonic()
        time.sleep(WINDOW_S)
        after = [user_system_s(server.pid) for _, server, _ in servers]
        publishes = args.rate * (time.monotonic() - started)
        for load in loads:
            load.wait(timeout=duration + 60)
    for (v, _, _), (u0, s0), (u1, s1) in zip(servers, before, after, strict=True):
        v.rounds.append(1e6 * (u1 + s1 - u0 - s0) / publishes)
        v.user.append(1e6 * (u1 - u0) / publishes)
        lost, sent = outcome(out / f"{v.name}-{round_no}.json")
        v.lost += lost
        if sent < 0.95 * args.rate * (duration - 1):
            # Its load could not keep the rate (CPU 1 short): its window is not comparable.
            print(f"  {v.name}: only {sent} messages sent in round {round_no}", flush=True)


def outcome(path: Path) -> tuple[int, int]:
    """Messages the run's lab results count as lost, and sent ((1, 0) without them)."""
    try:
        totals = json.loads(path.read_text())["totals"]
        return int(totals["lost"]), int(totals["sent"])
    except (OSError, ValueError, KeyError, TypeError):
        return 1, 0


def report(variants: list[Variant], base: Variant) -> list[str]:
    lines = [
        f"{'variant':<16} {'us/publish median':>18} {'user':>8}   ratio to {base.name} by round",
    ]
    for v in variants:
        ratios = [a / b for a, b in zip(v.rounds, base.rounds, strict=True)]
        shown = " ".join(f"{r:.3f}" for r in ratios)
        lines.append(
            f"{v.name:<16} {statistics.median(v.rounds):>18.0f} {statistics.median(v.user):>8.0f}"
            f"   {shown}  (median {statistics.median(ratios):.3f})"
            + ("" if v.lost == 0 else f"  LOST {v.lost}")
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--variant", action="append", type=parse_variant, default=[], metavar="NAME=WHERE",
        help="a fanout build: NAME=DIR (a checkout; '.' is this tree) or NAME=GITREV",
    )  # fmt: skip
    parser.add_argument("--floor", action="store_true", help="run the floor server too")
    parser.add_argument("--mode", choices=("plain", "v1"), default="plain")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument(
        "--rate", type=float, default=200.0,
        help="msg/s per server (default: 200; every server's load shares CPU 1)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    if len(args.variant) + args.floor < 2:
        parser.error("give at least two variants (or one and --floor)")
    if len({name for name, _ in args.variant}) != len(args.variant):
        parser.error("variant names must differ")
    if args.rounds < 1 or args.subscribers < 1 or args.rate <= 0:
        parser.error("--rounds, --subscribers and --rate must be positive")
    out = ROOT / "bench" / "out" / f"same_window-{time.strftime('%Y%m%d-%H%M%S')}"
    with checkouts(args.variant) as variants:
        if args.floor:
            variants.append(Variant("floor", None))
        for n in range(args.rounds):
            order = variants if n % 2 == 0 else variants[::-1]
            one_round(order, args, out, n + 1)
            figures = ", ".join(f"{v.name} {v.rounds[-1]:.0f}" for v in variants)
            print(
                f"round {n + 1}/{args.rounds}: us of server CPU per publish: {figures}", flush=True
            )
        base = variants[0]
        print("\n".join(report(variants, base)))
        if args.json:
            rows = [
                {
                    "name": v.name,
                    "us_per_publish": v.rounds,
                    "user_us_per_publish": v.user,
                    "lost": v.lost,
                }
                for v in variants
            ]
            doc = {"args": {k: str(a) for k, a in vars(args).items()}, "variants": rows}
            args.json.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    # Ctrl-C or a kill (SIGTERM) stops the servers and processes the run started.
    sys.exit(run_interruptible(main))
