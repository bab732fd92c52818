"""Whether the load generator, not the server, was the bottleneck."""

from __future__ import annotations

from fanout.lab import fmt
from fanout.lab.diagnosis._run import Run
from fanout.lab.diagnosis._values import mean, num, numbers
from fanout.lab.document import Cause, Severity, Verdict

#: A generator process at or above this share of one core cannot be trusted to have
#: offered the load it was asked to: the run is invalid.
GENERATOR_CPU_LIMIT = 90.0


def generator_cpu(run: Run) -> list[float]:
    """Per-process CPU (% of one core): the generator's figures, else the timeline's mean."""
    per_process = numbers(run.generator.get("cpu_percent"))
    if per_process:
        return per_process
    columns: dict[int, list[float]] = {}
    for tick in run.ticks:
        for i, cpu in enumerate(numbers(tick.get("generator_cpu"))):
            columns.setdefault(i, []).append(cpu)
    return [mean(columns[i]) or 0.0 for i in sorted(columns)]


def saturated_processes(run: Run) -> list[tuple[int | None, float]]:
    """(process index, CPU %) at or over the limit; index None when only the max is known."""
    cpus = generator_cpu(run)
    found: list[tuple[int | None, float]] = [
        (i, cpu) for i, cpu in enumerate(cpus) if cpu >= GENERATOR_CPU_LIMIT
    ]
    highest = num(run.generator.get("max_cpu_percent"))
    if not found and highest is not None and highest >= GENERATOR_CPU_LIMIT:
        found.append((None, highest))
    return found


def _name(index: int | None) -> str:
    return "a generator process" if index is None else f"generator process {index}"


def reasons(run: Run) -> list[str]:
    return [
        f"{_name(i)} used {fmt.short_pct(cpu)} of a core"
        f" (limit {fmt.short_pct(GENERATOR_CPU_LIMIT)}):"
        " the lab, not the server, may have been the bottleneck"
        for i, cpu in saturated_processes(run)
    ]


def generator_saturated(run: Run) -> Verdict | None:
    found = saturated_processes(run)
    if not found:
        return None
    index, cpu = max(found, key=lambda item: item[1])
    more = f" and {len(found) - 1} more" if len(found) > 1 else ""
    cpus = generator_cpu(run)
    highest = num(run.generator.get("max_cpu_percent"))
    return Verdict(
        Cause.GENERATOR_SATURATED,
        Severity.WARN,
        f"the load generator was the bottleneck ({_name(index)}{more} at {fmt.short_pct(cpu)}"
        " of a core), so this run does not measure the server: use more generator processes",
        {
            "cpu_percent": cpus,
            "max_cpu_percent": highest if highest is not None else max(cpus, default=cpu),
            "saturated_processes": [i for i, _ in found if i is not None],
            "limit_percent": GENERATOR_CPU_LIMIT,
            "processes": len(cpus) or None,
        },
    )
