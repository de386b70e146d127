"""Memory checks before O(p^2) allocations: compare the size with what the device has free."""

from __future__ import annotations

import os

import torch

from .errors import InsufficientMemoryError

FRACTION_USABLE = 0.8  # of the free memory: leave room for the rest of the process


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Free memory on ``device`` in bytes (CUDA: ``mem_get_info``; CPU: MemAvailable, or psutil), or None
    when it cannot be read (then nothing is refused)."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    override = os.environ.get("INFLUENCE_WIDGETS_MEMORY_BYTES")  # tests and shared machines
    if override:
        return int(override)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return None


def format_bytes(n_bytes: float) -> str:
    """GiB from 1 GiB up, else MiB."""
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.1f} MiB"


def check_fits(n_bytes: int, what: str, alternatives: str, device: torch.device | str = "cpu") -> None:
    """Refuse, before allocating, an allocation of ``n_bytes`` that would not fit in 80 % of the free memory."""
    free = available_bytes(device)
    if free is None or n_bytes <= FRACTION_USABLE * free:
        return
    raise InsufficientMemoryError(
        f"{what} needs {format_bytes(n_bytes)} but only {format_bytes(free)} is free on {torch.device(device)}; "
        f"{alternatives}"
    )
