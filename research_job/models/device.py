"""Device and dtype choice for the torch backends.

``device``: ``auto`` (CUDA if available, else Apple MPS, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
``dtype``: ``auto`` (float16 on CUDA, float32 elsewhere), ``float32`` or ``float16``; float16 is accepted on
CUDA only, because CPU half-precision kernels are slow or missing and MPS half results drift.
"""

from __future__ import annotations

import re
from typing import Any

from research_job.errors import ModelError, unknown_choice

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPES = ("auto", "float32", "float16")
_DTYPE_ALIASES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


def _mps_available(torch: Any) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str = "auto") -> str:
    """Return the torch device string to use for ``device``.

    Raises:
        ModelError: unknown device name, or an explicitly requested device that is not available here.
    """
    import torch

    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available(torch):
            return "mps"
        return "cpu"
    if name == "cpu":
        return "cpu"
    if name == "mps":
        if not _mps_available(torch):
            raise ModelError(
                "device 'mps' requested but Apple MPS is not available here; use device=auto or cpu"
            )
        return "mps"
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match:
        if not torch.cuda.is_available():
            raise ModelError(
                f"device {device!r} requested but CUDA is not available here; use device=auto or cpu"
            )
        if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
            raise ModelError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
        return name
    raise ModelError(unknown_choice("device", device, DEVICES))


def resolve_dtype(dtype: str, device: str) -> Any:
    """Return the ``torch.dtype`` for ``dtype`` on the resolved ``device`` (see module docstring).

    Raises:
        ModelError: unknown dtype, or float16 requested off CUDA.
    """
    import torch

    name = str(dtype).strip().lower()
    on_cuda = device.startswith("cuda")
    if name == "auto":
        return torch.float16 if on_cuda else torch.float32
    if name not in _DTYPE_ALIASES:
        raise ModelError(unknown_choice("dtype", dtype, DTYPES))
    if _DTYPE_ALIASES[name] == "float16":
        if not on_cuda:
            raise ModelError(f"dtype {dtype!r} is only supported on CUDA (device is {device!r}); use float32")
        return torch.float16
    return torch.float32


def dtype_name(dtype: Any) -> str:
    """``torch.float16`` -> ``"float16"`` (for metadata)."""
    return str(dtype).removeprefix("torch.")
