"""musicnn on ONNX Runtime (``musicnn-msd?runtime=onnx``): the same network, exported once, run by onnxruntime.

:func:`export` writes the PyTorch port's network (log-mel patches ``[B, 187, 96]`` -> the five per-patch outputs
of :class:`~research_job.models.musicnn.MusicnnNet`, the batch dimension dynamic) to an ONNX file with
``torch.onnx.export`` (the dynamo exporter, opset :data:`OPSET`), atomically. :func:`cached_model` keeps one
file per checkpoint and weights sha256 beside the weights (``<weights dir>/onnx/``), exporting it on first use,
so a worker process or a Ray actor that finds it there loads it without exporting (a concurrent export of the
same file is a harmless rename over an identical one). :class:`OnnxNet` runs it on the CPU execution provider
(CUDA when onnxruntime has it and the device asks for it) with the intra-op threads the caller's torch has, so
the embed engines' thread settings apply unchanged.

:func:`quantize_int8` writes the int8 version of such a file (``precision=int8``): static QDQ through
``onnxruntime.quantization`` on the timbral convolutions only, calibrated on catalogue patches that
``research-job export-model --precision int8`` supplies and installed at :func:`int8_model`, where the encoder
loads it (never exported implicitly: calibration needs the catalogue's audio).

The log-mel front end stays in PyTorch (it is a small share of the time and keeps the two runtimes' inputs
bit-identical); only the network changes runtime. Parity with the PyTorch network is a test
(``tests/unit/test_onnx_runtime.py``: per-track cosine >= 0.99999 on every layer).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from research_job.errors import ModelError
from research_job.io.atomic import atomic_path

LOG = logging.getLogger(__name__)

#: the per-patch outputs, in the exported graph's output order
OUTPUTS = ("mean_pool", "max_pool", "penultimate", "logits", "taggram")
OPSET = 18
#: the exported graph's revision, part of the cached file's name (r2: the mid-end as conv1d)
GRAPH_REVISION = "r2"
RUNTIMES = ("torch", "onnx")
PRECISIONS = ("fp32", "int8")
#: int8 calibration: patches per calibration batch, and the method (ranges of each quantised tensor)
CALIBRATION_BATCH = 8
CALIBRATION_METHOD = "MinMax"


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
    """A copy of ``net`` (whose forward returns a dict) as a module returning the :data:`OUTPUTS` tuple, in eval
    mode: what the exporters (ONNX, TorchScript) can trace, with named, ordered outputs. The copy's mid-end
    convolutions run as ``conv1d`` (``_TimeConv.as_conv1d``); ``net`` itself is left as it is."""
    import copy

    import torch

    net = copy.deepcopy(net)
    for module in net.modules():
        if hasattr(module, "as_conv1d"):
            module.as_conv1d = True

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

    try:
        with atomic_path(path) as tmp:
            example = torch.zeros(2, 187, 96)
            batch = torch.export.Dim("batch", min=1, max=max_batch)
            torch.onnx.export(
                outputs_module(net), (example,), os.fspath(tmp), input_names=["patches"],
                output_names=list(OUTPUTS), dynamic_shapes={"patches": {0: batch}}, dynamo=True, optimize=True,
                opset_version=OPSET, external_data=False, verbose=False,
            )  # fmt: skip
    except ImportError as e:
        raise ModelError(f"Exporting musicnn to ONNX needs onnx and onnxscript: {e}") from e
    except Exception as e:  # the exporter raises its own error types
        raise ModelError(f"Exporting musicnn to ONNX failed: {type(e).__name__}: {e}") from e
    return path


def cached_model(net: Any, checkpoint: str, weights_sha256: str, root: Path) -> Path:
    """The ONNX file of this checkpoint's weights under ``root/onnx/``, exported first when absent."""
    path = Path(root) / "onnx" / f"{checkpoint}-{weights_sha256[:16]}-opset{OPSET}-{GRAPH_REVISION}.onnx"
    if not path.is_file():
        LOG.info("Exporting %s to ONNX (once): %s", checkpoint, path)
        export(net, path)
    return path


class _CountScaleNotes(logging.Filter):
    """Counts, instead of printing, onnxruntime's one root-logger line per weight channel whose scale it raised."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Increased scale"):
            self.count += 1
            return False
        return True


def int8_nodes(model: Any) -> list[str]:
    """The convolutions :func:`quantize_int8` quantises: those over time x frequency (the two timbral convs, ~80 %
    of the FLOPs). The temporal convs (k x 1) and the mid end stay float32: on the bench machine onnxruntime's
    int8 kernels ran the single-column temporal convs 4-7x slower than float32, the timbral ones ~1.5x faster."""
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        dims = weights.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if dims is not None and len(dims) == 4 and dims[2] > 1 and dims[3] > 1:
            out.append(node.name)
    return out


def quantize_int8(fp32_path: Path, path: Path, patches: np.ndarray) -> dict[str, Any]:
    """Write the int8 (static QDQ) version of the float32 ONNX file ``fp32_path`` to ``path``, atomically.

    The timbral convolutions (:func:`int8_nodes`) get per-channel int8 weights and uint8 activations whose ranges
    are calibrated on ``patches`` (log-mel patches of catalogue audio, ``[n, 187, 96]``) with
    :data:`CALIBRATION_METHOD`. Weights use 7 of their 8 bits (``reduce_range``): on CPUs without VNNI,
    onnxruntime's u8 x s8 kernels sum pairs in int16, which saturates with full-range weights (per-track cosine to
    float32 fell to 0.96 on the demo corpus; 0.998 with 7-bit weights); VNNI machines lose nothing that matters.

    Returns:
        the quantisation record (method, nodes, patches) for ``model_meta.json`` / ``embeddings_meta.json``.

    Raises:
        ModelError: onnxruntime's quantisation tools are missing or fail, or there are no patches.
    """
    _require()
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    patches = np.ascontiguousarray(patches, dtype=np.float32)
    if patches.ndim != 3 or len(patches) == 0:
        raise ModelError(f"int8 calibration needs log-mel patches [n, 187, 96]; got shape {patches.shape}")
    nodes = int8_nodes(onnx.load(os.fspath(fp32_path), load_external_data=False))

    class _Patches(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.batches = iter(
                [
                    {"patches": patches[i : i + CALIBRATION_BATCH]}
                    for i in range(0, len(patches), CALIBRATION_BATCH)
                ]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    quiet = _CountScaleNotes()
    root_logger = logging.getLogger()
    root_logger.addFilter(quiet)
    try:
        with atomic_path(path) as tmp:
            quantize_static(
                os.fspath(fp32_path), os.fspath(tmp), _Patches(), quant_format=QuantFormat.QDQ, per_channel=True,
                reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                op_types_to_quantize=["Conv"], nodes_to_quantize=nodes,
                calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHOD),
            )  # fmt: skip
    except Exception as e:  # onnxruntime.quantization raises its own error types
        raise ModelError(f"int8 quantisation of {fp32_path} failed: {type(e).__name__}: {e}") from e
    finally:
        root_logger.removeFilter(quiet)
    if quiet.count:
        LOG.info(
            "int8: %d weight channels (near-zero filters) got a larger scale to keep their bias", quiet.count
        )
    return {
        "format": "QDQ",
        "weights": "int8 per output channel, symmetric, 7-bit range (reduce_range)",
        "activations": "uint8 per tensor, asymmetric",
        "calibration_method": CALIBRATION_METHOD,
        "nodes": nodes,
        "n_patches": int(len(patches)),
    }


def int8_model(checkpoint: str, weights_sha256: str, root: Path) -> Path:
    """Where the int8 file of this checkpoint's weights is installed (``export-model --precision int8``), with
    its calibration record beside it (same name, ``.json``)."""
    return Path(root) / "onnx" / f"{checkpoint}-{weights_sha256[:16]}-opset{OPSET}-{GRAPH_REVISION}-int8.onnx"


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
