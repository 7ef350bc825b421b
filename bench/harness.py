"""Shared harness of the benchmark scripts: device checks, machine description, load average, timing and tables.

The scripts in ``bench/`` import it as ``bench.harness`` after putting the repository root on ``sys.path``, so
``python bench/<script>.py`` works from the repository root.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence

import torch


# ---------------------------------------------------------------------------------------------------- devices
def parse_device(spec: str) -> torch.device:
    """Parse the ``--device`` argument.

    Args:
        spec: a torch device string such as ``cpu``, ``cuda`` or ``cuda:1``.

    Returns:
        The torch device.

    Raises:
        SystemExit: ``spec`` is not a torch device.
    """
    try:
        return torch.device(spec)
    except RuntimeError as err:
        raise SystemExit(f"--device: not a torch device: {spec!r} ({err})") from err


def check_device(device: torch.device) -> None:
    """Fail clearly when the requested device cannot run: CUDA absent, an index past the visible GPUs, or a device
    type other than cpu and cuda.

    Args:
        device: the requested device.

    Raises:
        SystemExit: with a message that names ``--device`` and what is wrong.
    """
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"--device {device}: CUDA is not available (torch {torch.__version__}, built for CUDA "
                             f"{torch.version.cuda}, torch.cuda.is_available() is False); run this on a machine with "
                             "an NVIDIA GPU and a working driver, or use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SystemExit(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif device.type != "cpu":
        raise SystemExit(f"--device must be cpu, cuda or cuda:N, got {device}")


def use_device(device: torch.device, set_current: bool = True) -> torch.device:
    """Give a bare ``cuda`` device the current index, so that every CUDA call gets one.

    Args:
        device: a device that passed :func:`check_device`.
        set_current: also make it the current CUDA device (``torch.cuda.set_device``).

    Returns:
        ``device`` itself on the CPU, ``cuda:<index>`` on CUDA.
    """
    if device.type != "cuda":
        return device
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if set_current:
        torch.cuda.set_device(device)
    return device


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (``torch.cuda.synchronize`` on CUDA; nothing on the CPU).

    Args:
        device: the device the timed work runs on.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    """Reset the CUDA peak-memory counter (nothing on the CPU).

    Args:
        device: the benchmarked device.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float | None:
    """Peak CUDA memory allocated since the last :func:`reset_peak_memory`.

    Args:
        device: the benchmarked device.

    Returns:
        GiB (2**30 bytes) on CUDA, ``None`` on the CPU.
    """
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


# ---------------------------------------------------------------------------------------------------- machine
def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else what :mod:`platform` knows.

    Returns:
        e.g. ``"AMD EPYC 7R13 Processor"``.
    """
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    """The 1, 5 and 15 minute load averages.

    Returns:
        ``"0.52 0.61 0.70"``, or ``"n/a"`` where the OS does not report them.
    """
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def machine(device: torch.device, cpu: str | None = None) -> str:
    """One line describing the machine: OS, CPU, core count, torch version and threads, device.

    Args:
        device: the benchmarked device (a CUDA device must be available).
        cpu: the CPU field; default ``"CPU <model name>"`` (:func:`cpu_model`).

    Returns:
        The description, fields separated by ``" | "``.
    """
    dev = "cpu"
    if device.type == "cuda":
        dev = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    cpu = f"CPU {cpu_model()}" if cpu is None else cpu
    return (f"{platform.platform()} | {cpu} | os.cpu_count()={os.cpu_count()} | "
            f"torch {torch.__version__} threads={torch.get_num_threads()} | device {dev}")


def print_header(device: torch.device, argv: list[str] | None, cpu: str | None = None) -> None:
    """Print the exact command, the machine line and the load average at start.

    Args:
        device: the benchmarked device.
        argv: the arguments given to the script's ``main`` (``None``: ``sys.argv[1:]``).
        cpu: the CPU field of the machine line (see :func:`machine`).
    """
    print("command:", "python " + " ".join([os.path.relpath(sys.argv[0])] + (argv or sys.argv[1:])))
    print("machine:", machine(device, cpu))
    print_load_average("start")


def print_load_average(when: str) -> None:
    """Print ``load average (1/5/15 min) at <when>: ...``.

    Args:
        when: ``"start"`` or ``"end"``.
    """
    print(f"load average (1/5/15 min) at {when}: {load_average()}")


# ---------------------------------------------------------------------------------------------------- timing
def add_timing_args(ap: argparse.ArgumentParser, unit: str) -> None:
    """Add ``--warmup --warmup_s --repeats --min_repeat_s`` (see :func:`time_steps`).

    Args:
        ap: the script's parser.
        unit: what one timing covers, for the help texts (``"case"``, ``"variant"``).
    """
    ap.add_argument("--warmup", type=int, default=3, help=f"minimum warm-up steps per {unit}")
    ap.add_argument("--warmup_s", type=float, default=1.0, help=f"minimum warm-up seconds per {unit}")
    ap.add_argument("--repeats", type=int, default=7, help=f"timed repeats per {unit} (the median is reported)")
    ap.add_argument("--min_repeat_s", type=float, default=0.5, help="each repeat runs enough steps to last this long")


def timing_settings(args: argparse.Namespace) -> str:
    """Describe the timing options added by :func:`add_timing_args`.

    Args:
        args: parsed arguments with ``warmup``, ``warmup_s``, ``repeats`` and ``min_repeat_s``.

    Returns:
        e.g. ``"warmup>=3 steps and >=1 s, median of 7 repeats of >=0.5 s"``.
    """
    return (f"warmup>={args.warmup} steps and >={args.warmup_s:g} s, median of {args.repeats} repeats of "
            f">={args.min_repeat_s:g} s")


def time_steps(step: Callable[[], torch.Tensor], device: torch.device, *, warmup: int, warmup_s: float,
               repeats: int, min_repeat_s: float) -> tuple[list[float], int, float]:
    """Warm up, then time ``repeats`` blocks of ``k`` consecutive steps between device synchronisations.

    Warm-up runs at least ``warmup`` steps and ``warmup_s`` seconds; one more step is timed alone to choose ``k``, the
    smallest number of steps that lasts ``min_repeat_s`` seconds (at least 1).

    Args:
        step: runs one full step and returns its loss (no host synchronisation inside).
        device: the device ``step`` runs on.
        warmup: minimum warm-up steps.
        warmup_s: minimum warm-up seconds.
        repeats: timed blocks.
        min_repeat_s: minimum seconds of one block, which sets ``k``.

    Returns:
        Seconds per step of each block, ``k`` and the last step's loss.
    """
    t0, done = time.perf_counter(), 0
    while done < warmup or time.perf_counter() - t0 < warmup_s:
        step()
        done += 1
    sync(device)
    t0 = time.perf_counter()
    step()
    sync(device)
    k = max(1, math.ceil(min_repeat_s / (time.perf_counter() - t0)))
    per_step = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(k):
            loss = step()
        sync(device)
        per_step.append((time.perf_counter() - t0) / k)
    return per_step, k, float(loss.detach().float())


# ---------------------------------------------------------------------------------------------------- tables
def min_max(values: Sequence[float], scale: float = 1.0) -> str:
    """The range of ``values`` times ``scale`` with two decimals, e.g. ``"12.31-12.90"``.

    Args:
        values: timings.
        scale: factor applied first (``1e3``: seconds to milliseconds).

    Returns:
        ``"<min>-<max>"``.
    """
    return f"{min(values) * scale:.2f}-{max(values) * scale:.2f}"


def print_table_header(columns: Sequence[tuple[str, str]]) -> None:
    """Print a Markdown table's title row and its rule.

    Args:
        columns: ``(title, format spec)`` per column, the spec an alignment and a width such as ``"<15"`` or ``">8"``;
            each rule cell is the width plus the two spaces around the cell.
    """
    print_table_row(format(title, spec) for title, spec in columns)
    print("|" + "|".join("-" * (int(spec[1:]) + 2) for _, spec in columns) + "|")


def print_table_row(cells: Iterable[str]) -> None:
    """Print one Markdown table row of already formatted cells: ``| a | b | c |``.

    Args:
        cells: the cell texts, in column order.
    """
    print("| " + " | ".join(cells) + " |")
