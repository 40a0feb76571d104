"""musicnn on ONNX Runtime (``musicnn-msd?runtime=onnx``): the same network, exported once, run by onnxruntime.

:func:`export` writes the PyTorch port's network (log-mel patches ``[B, 187, 96]`` -> the five per-patch outputs
of :class:`~research_job.models.musicnn.MusicnnNet`, the batch dimension dynamic) to an ONNX file with
``torch.onnx.export`` (the dynamo exporter, opset :data:`OPSET`), atomically. :func:`cached_model` keeps one
file per checkpoint and weights sha256 beside the weights (``<weights dir>/onnx/``), exporting it on first use,
so a worker process or a Ray actor that finds it there loads it without exporting (a concurrent export of the
same file is a harmless rename over an identical one). :class:`OnnxNet` runs it on the CPU execution provider
(CUDA when onnxruntime has it and the device asks for it) with the intra-op threads the caller's torch has, so
the embed engines' thread settings apply unchanged.

The log-mel front end stays in PyTorch (it is a small share of the time and keeps the two runtimes' inputs
bit-identical); only the network changes runtime. Parity with the PyTorch network is a test
(``tests/unit/test_onnx_runtime.py``: per-track cosine >= 0.99999 on every layer).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from research_job.errors import ModelError

LOG = logging.getLogger(__name__)

#: the per-patch outputs, in the exported graph's output order
OUTPUTS = ("mean_pool", "max_pool", "penultimate", "logits", "taggram")
OPSET = 18
RUNTIMES = ("torch", "onnx")


def _require() -> Any:
    try:
        import onnxruntime
    except ImportError as e:
        raise ModelError(
            "runtime=onnx needs onnxruntime (and onnx + onnxscript to export): pip install 'research-job[onnx]' "
            "(make install does), or runtime=torch"
        ) from e
    return onnxruntime


def outputs_module(net: Any) -> Any:
    """``net`` (whose forward returns a dict) as a module returning the :data:`OUTPUTS` tuple, in eval mode: what
    the exporters (ONNX, TorchScript) can trace, with named, ordered outputs."""
    import torch

    class _Outputs(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.inner(patches)
            return tuple(out[k] for k in OUTPUTS)

    return _Outputs(net.eval()).eval()


def export(net: Any, path: Path, max_batch: int = 4096) -> Path:
    """Write ``net`` (a :class:`~research_job.models.musicnn.MusicnnNet`) to ``path`` as ONNX, atomically.

    Raises:
        ModelError: the exporter (onnx, onnxscript) is not installed or fails.
    """
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        example = torch.zeros(2, 187, 96)
        batch = torch.export.Dim("batch", min=1, max=max_batch)
        torch.onnx.export(
            outputs_module(net), (example,), tmp, input_names=["patches"], output_names=list(OUTPUTS),
            dynamic_shapes={"patches": {0: batch}}, dynamo=True, optimize=True, opset_version=OPSET,
            external_data=False, verbose=False,
        )  # fmt: skip
        os.replace(tmp, path)
    except ImportError as e:
        raise ModelError(f"Exporting musicnn to ONNX needs onnx and onnxscript: {e}") from e
    except Exception as e:  # the exporter raises its own error types
        raise ModelError(f"Exporting musicnn to ONNX failed: {type(e).__name__}: {e}") from e
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def cached_model(net: Any, checkpoint: str, weights_sha256: str, root: Path) -> Path:
    """The ONNX file of this checkpoint's weights under ``root/onnx/``, exported first when absent."""
    path = Path(root) / "onnx" / f"{checkpoint}-{weights_sha256[:16]}-opset{OPSET}.onnx"
    if not path.is_file():
        LOG.info("Exporting %s to ONNX (once): %s", checkpoint, path)
        export(net, path)
    return path


class OnnxNet:
    """An ONNX Runtime session over an exported musicnn network; called like the network, on numpy arrays."""

    def __init__(self, path: Path, threads: int, device: str = "cpu") -> None:
        ort = _require()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(os.fspath(path), opts, providers=providers)
        except Exception as e:  # a corrupt or truncated file: name it
            raise ModelError(f"Cannot load the ONNX model {path}: {type(e).__name__}: {e}") from e
        self.path = Path(path)
        self.providers = self.session.get_providers()
        self.version = str(ort.__version__)

    def __call__(self, patches: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.session.run(None, {"patches": np.ascontiguousarray(patches, dtype=np.float32)})
        return dict(zip(OUTPUTS, outs, strict=True))
