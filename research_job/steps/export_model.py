"""export-model: a registry model's network -> an ONNX or TorchScript file + ``model_meta.json`` (+ Triton).

For serving the model outside this job (Triton, onnxruntime in another service, a C++ runtime): the network of a
musicnn spec (log-mel patches ``[B, 187, 96]`` -> the five per-patch outputs ``mean_pool``, ``max_pool``,
``penultimate``, ``logits``, ``taggram``; the batch dynamic) is exported, then run by its own runtime on seeded
patches next to the PyTorch port, and the parity (max absolute difference and least cosine per output) is
recorded in ``model_meta.json`` (schema ``model_meta``) with the spec, the source weights' sha256, the file's
size and sha256 and the exporter's versions. An export whose least cosine falls below :data:`MIN_COSINE` is
refused (nothing is left behind). The log-mel front end is not in the file: it is ``research_job.models.musicnn``
``LogMel`` (STFT 512 / hop 256 at 16 kHz, 96 Slaney mels, ``log10(10000 x + 1)``), which a caller reproduces.

``--triton`` (ONNX only) lays the file out as a Triton model repository: ``<out>/<name>/config.pbtxt``
(platform ``onnxruntime_onnx``, ``max_batch_size``, dynamic batching, one instance group of ``--instance-kind``)
and ``<out>/<name>/1/model.onnx``. Inside this job, ``musicnn-msd?runtime=onnx`` runs the same export (cached)
through :mod:`research_job.models.onnx_runtime`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from research_job import schema
from research_job.config import CommonConfig, option
from research_job.errors import ConfigError, ModelError
from research_job.io.atomic import write_text
from research_job.provenance import code_version, sha256_file, utc_now
from research_job.steps import Step

LOG = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
INSTANCE_KINDS = ("KIND_CPU", "KIND_GPU")
#: least per-output cosine (exported runtime vs the PyTorch port) an export must reach
MIN_COSINE = 0.99999
PARITY_PATCHES = 16
PARITY_SEED = 0


@dataclass(frozen=True)
class ExportModelConfig:
    """export-model: the network of ``--model`` (a musicnn spec) -> a model file + model_meta.json."""

    common: CommonConfig = field(default_factory=CommonConfig)
    format: str = option("onnx", "file format of the network", choices=FORMATS, kind="export format")
    out: Path | None = option(
        None, "folder to write into; unset = <artifacts-root>/models/<model name>-<format>"
    )
    triton: bool = option(False, "lay the ONNX file out as a Triton model repository with its config.pbtxt")
    max_batch_size: int = option(256, "with --triton: the largest batch of patches Triton may form")
    instance_kind: str = option(
        "KIND_CPU", "with --triton: where Triton runs the model instances", choices=INSTANCE_KINDS,
        kind="instance kind",
    )  # fmt: skip


def check(cfg: ExportModelConfig) -> None:
    """Refuse what cannot be exported before anything is loaded.

    Raises:
        ConfigError: --triton with TorchScript, or a batch size < 1.
    """
    if cfg.triton and cfg.format != "onnx":
        raise ConfigError(f"--triton lays out an ONNX model: use --format onnx (got {cfg.format!r})")
    if cfg.max_batch_size < 1:
        raise ConfigError(f"max_batch_size must be >= 1, got {cfg.max_batch_size}")


def _network(spec: str) -> Any:
    """The loaded musicnn encoder of ``spec`` (its ``net`` is what is exported)."""
    from research_job.models.musicnn import MusicnnEncoder
    from research_job.models.registry import load_model

    enc = load_model(spec)
    if not isinstance(enc, MusicnnEncoder):
        raise ConfigError(
            f"export-model exports musicnn networks; {spec!r} is a {type(enc).__name__}. "
            "Valid: musicnn-msd, musicnn-mtt (with their ?layer= and ?batch_size= options)"
        )
    return enc


def _export_torchscript(net: Any, path: Path) -> None:
    import torch

    from research_job.models.onnx_runtime import outputs_module

    with torch.inference_mode(False), torch.no_grad():
        traced = torch.jit.trace(outputs_module(net), torch.zeros(2, 187, 96), check_trace=False)
    tmp = path.with_name(path.name + ".tmp")
    traced.save(str(tmp))
    tmp.replace(path)


def _run_file(fmt: str, path: Path, patches: np.ndarray) -> tuple[dict[str, np.ndarray], str]:
    """The exported file's outputs on ``patches``, run by its own runtime, and that runtime's name."""
    from research_job.models.onnx_runtime import OUTPUTS, OnnxNet

    if fmt == "onnx":
        net = OnnxNet(path, threads=2)
        return net(patches), f"onnxruntime {net.version}"
    import torch

    module = torch.jit.load(str(path))
    with torch.no_grad():
        outs = module(torch.from_numpy(patches))
    return {k: v.numpy() for k, v in zip(OUTPUTS, outs, strict=True)}, f"torch.jit {torch.__version__}"


def parity(reference: dict[str, np.ndarray], exported: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per output: the largest absolute difference and the least row cosine between two sets of outputs."""
    out = {}
    for key, ref in reference.items():
        got = exported[key]
        if got.shape != ref.shape:
            raise ModelError(f"exported output {key!r} has shape {got.shape}, the port's {ref.shape}")
        norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
        cos = np.where(norms > 0, (ref * got).sum(axis=1) / np.maximum(norms, 1e-30), 1.0)
        out[key] = {"max_abs_diff": float(np.abs(got - ref).max()), "min_cosine": float(cos.min())}
    return out


def triton_config(name: str, outputs: dict[str, int], max_batch_size: int, instance_kind: str) -> str:
    """A Triton ``config.pbtxt`` for the ONNX network: dims without the batch (Triton adds it)."""
    outs = ",\n".join(f'  {{ name: "{k}" data_type: TYPE_FP32 dims: [ {d} ] }}' for k, d in outputs.items())
    preferred = sorted({b for b in (8, 32, max_batch_size) if b <= max_batch_size})
    return (
        f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {max_batch_size}\n'
        'input [\n  { name: "patches" data_type: TYPE_FP32 dims: [ 187, 96 ] }\n]\n'
        f"output [\n{outs}\n]\n"
        f"dynamic_batching {{\n  preferred_batch_size: [ {', '.join(map(str, preferred))} ]\n"
        "  max_queue_delay_microseconds: 2000\n}\n"
        f"instance_group [\n  {{ count: 1 kind: {instance_kind} }}\n]\n"
    )


def run(cfg: ExportModelConfig) -> dict[str, Any]:
    """Export the network of ``cfg.common.model``; write the file and its ``model_meta.json``.

    Returns:
        the ``model_meta.json`` dict.

    Raises:
        ConfigError: not a musicnn spec, bad options; ModelError: the exporter is missing or fails, or the
        exported file's parity with the port is below :data:`MIN_COSINE` (the file is removed).
    """
    import torch

    from research_job.models import onnx_runtime

    check(cfg)
    enc = _network(cfg.common.model)
    info = enc.info()
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", cfg.common.model).strip("_")
    out = cfg.out or cfg.common.artifacts_root / "models" / f"{safe}-{cfg.format}"
    name = enc.name
    if cfg.triton:
        folder = out / name / "1"
        meta_dir = out / name
    else:
        folder = meta_dir = out
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("model.onnx" if cfg.format == "onnx" else "model.pt")
    if cfg.format == "onnx":
        onnx_runtime.export(enc.net, path)
        import onnx
        import onnxscript

        exporter = f"torch.onnx (dynamo) {torch.__version__}, onnx {onnx.__version__}, onnxscript {onnxscript.__version__}"
    else:
        _export_torchscript(enc.net, path)
        exporter = f"torch.jit.trace {torch.__version__}"
    patches = np.random.default_rng(PARITY_SEED).standard_normal((PARITY_PATCHES, 187, 96)).astype(np.float32)
    reference = enc.patch_outputs_from_logmel(patches)
    got, runtime = _run_file(cfg.format, path, patches)
    figures = parity({k: reference[k] for k in onnx_runtime.OUTPUTS}, got)
    worst = min(v["min_cosine"] for v in figures.values())
    if worst < MIN_COSINE:
        path.unlink(missing_ok=True)
        raise ModelError(
            f"The exported {cfg.format} model departs from the PyTorch port (least cosine {worst:.7f} < "
            f"{MIN_COSINE}): not written"
        )
    dims = {k: int(reference[k].shape[1]) for k in onnx_runtime.OUTPUTS}
    triton = None
    if cfg.triton:
        config = meta_dir / "config.pbtxt"
        write_text(config, triton_config(name, dims, cfg.max_batch_size, cfg.instance_kind))
        triton = {
            "repository": str(out),
            "config": config.relative_to(meta_dir).as_posix(),
            "max_batch_size": cfg.max_batch_size,
            "instance_kind": cfg.instance_kind,
        }
    meta = {
        "schema_version": "1.0",
        "spec": cfg.common.model,
        "name": name,
        "version": str(info["version"]),
        "weights_sha256": info["weights_sha256"],
        "format": cfg.format,
        "opset": onnx_runtime.OPSET if cfg.format == "onnx" else None,
        "exporter": exporter,
        "file": path.relative_to(meta_dir).as_posix(),
        "size_bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "input": {
            "name": "patches",
            "dtype": "float32",
            "shape": [-1, 187, 96],
            "description": "log-mel patches: 187 frames (3 s at hop 256, 16 kHz) x 96 mels, log10(10000 x + 1)",
        },
        "outputs": [{"name": k, "shape": [-1, d]} for k, d in dims.items()],
        "parity": {
            "n_patches": PARITY_PATCHES,
            "seed": PARITY_SEED,
            "runtime": runtime,
            "per_output": figures,
        },
        "triton": triton,
        "created_at": utc_now(),
        "code_version": code_version(),
    }
    schema.write_artifact(meta_dir / "model_meta.json", "model_meta", meta)
    LOG.info(
        "Exported %s as %s: %s (%d bytes), least cosine to the port %.7f",
        cfg.common.model, cfg.format, path, meta["size_bytes"], worst,
    )  # fmt: skip
    return meta


def _show(cfg: ExportModelConfig, meta: dict[str, Any]) -> str:
    worst = min(v["min_cosine"] for v in meta["parity"]["per_output"].values())
    return f"{meta['format']} model: {meta['file']} ({meta['size_bytes']} bytes), least cosine to the port {worst:.7f}"


STEP = Step(
    name="export_model",
    config=ExportModelConfig,
    summary="Export a musicnn network to ONNX or TorchScript (+ a Triton repository) with its parity figures.",
    example="research-job export-model --model musicnn-msd --format onnx --out artifacts/models/musicnn-msd-onnx",
    run=run,
    check=check,
    show=_show,
)
