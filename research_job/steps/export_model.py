"""export-model: a registry model's network -> an ONNX or TorchScript file + ``model_meta.json`` (+ Triton).

For serving the model outside this job (Triton, onnxruntime in another service, a C++ runtime): the network of a
musicnn spec (log-mel patches ``[B, 187, 96]`` -> the five per-patch outputs ``mean_pool``, ``max_pool``,
``penultimate``, ``logits``, ``taggram``; the batch dynamic) is exported, then run by its own runtime on seeded
patches next to the PyTorch port, and the parity (max absolute difference and least cosine per output) is
recorded in ``model_meta.json`` (schema ``model_meta``) with the spec, the source weights' sha256, the file's
size and sha256 and the exporter's versions. An export whose least cosine falls below :data:`MIN_COSINE` is
refused (nothing is left behind). The log-mel front end is not in the file: it is ``research_job.models.musicnn``
``LogMel`` (STFT 512 / hop 256 at 16 kHz, 96 Slaney mels, ``log10(10000 x + 1)``), which a caller reproduces.

``--precision int8`` (ONNX only) writes the network with its two timbral convolutions quantised (static QDQ,
:func:`research_job.models.onnx_runtime.quantize_int8`), calibrated on ``--calibration-tracks`` tracks drawn
(seeded) from ``--calibrate-from`` (a version folder's ``audio_cache/`` or any folder of audio) and checked on
``--parity-tracks`` others: per-track cosine of every pooled output to the PyTorch port >= :data:`INT8_MIN_COSINE`,
or nothing is written. The file and its record (sha256, calibration set, parity) are also installed beside the
checkpoint's weights, where ``<model>?runtime=onnx&precision=int8`` loads them.

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
from research_job.io.atomic import write_bytes, write_json, write_text
from research_job.provenance import code_version, sha256_bytes, sha256_file, utc_now
from research_job.steps import Step

LOG = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
INSTANCE_KINDS = ("KIND_CPU", "KIND_GPU")
#: least per-output cosine (exported runtime vs the PyTorch port) an export must reach
MIN_COSINE = 0.99999
PARITY_PATCHES = 16
PARITY_SEED = 0
PRECISIONS = ("fp32", "int8")
#: least per-track cosine (pooled over the track's patches) an int8 file must keep to the port on every output
INT8_MIN_COSINE = 0.995
CALIBRATION_SEED = 0
AUDIO_SUFFIXES = (".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".wav", ".aiff", ".aif")


@dataclass(frozen=True)
class ExportModelConfig:
    """export-model: the network of ``--model`` (a musicnn spec) -> a model file + model_meta.json."""

    common: CommonConfig = field(default_factory=CommonConfig)
    format: str = option("onnx", "file format of the network", choices=FORMATS, kind="export format")
    out: Path | None = option(
        None, "folder to write into; unset = <artifacts-root>/models/<model name>-<format>"
    )
    precision: str = option(
        "fp32", "fp32, or int8: the timbral convolutions quantised (static QDQ, per-channel weights), calibrated "
        "on --calibrate-from and installed where '<model>?runtime=onnx&precision=int8' finds it",
        choices=PRECISIONS, kind="precision",
    )  # fmt: skip
    calibrate_from: Path | None = option(
        None, "with --precision int8: catalogue audio to calibrate on, a version folder (its audio_cache/) or a "
        "folder of audio files",
    )  # fmt: skip
    calibration_tracks: int = option(32, "with --precision int8: tracks calibrated on (seeded choice)")
    parity_tracks: int = option(
        16, "with --precision int8: other tracks of the same folder the int8 file is checked on (per-track "
        f"cosine to the PyTorch port >= {INT8_MIN_COSINE} on every output, or nothing is written)",
    )  # fmt: skip
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
    if cfg.precision == "int8":
        if cfg.format != "onnx":
            raise ConfigError(
                f"--precision int8 writes an ONNX model: use --format onnx (got {cfg.format!r})"
            )
        if cfg.calibrate_from is None:
            raise ConfigError(
                "--precision int8 needs --calibrate-from: a version folder (its audio_cache/) or a folder of "
                "audio files from the catalogue"
            )
        if not Path(cfg.calibrate_from).is_dir():
            raise ConfigError(f"--calibrate-from {cfg.calibrate_from} is not a folder")
        if cfg.calibration_tracks < 1 or cfg.parity_tracks < 1:
            raise ConfigError(
                f"calibration_tracks and parity_tracks must be >= 1, got {cfg.calibration_tracks} and "
                f"{cfg.parity_tracks}"
            )
    elif cfg.calibrate_from is not None:
        raise ConfigError("--calibrate-from calibrates an int8 model: add --precision int8")


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


def calibration_files(folder: Path, n_calibration: int, n_parity: int) -> tuple[list[Path], list[Path]]:
    """The audio files under ``folder`` (``audio_cache/`` when it is a version folder), shuffled with
    :data:`CALIBRATION_SEED`: the first ``n_calibration`` to calibrate on, the next ``n_parity`` to check on.

    Raises:
        ConfigError: fewer than two audio files (calibration and parity need one each).
    """
    root = Path(folder)
    if (root / "audio_cache").is_dir():
        root = root / "audio_cache"
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if len(files) < 2:
        raise ConfigError(
            f"--calibrate-from {folder}: {len(files)} audio files found ({', '.join(AUDIO_SUFFIXES)}); int8 "
            "needs at least 2 (calibration and parity tracks)"
        )
    order = np.random.default_rng(CALIBRATION_SEED).permutation(len(files))
    shuffled = [files[i] for i in order]
    n_cal = min(n_calibration, len(files) - 1)
    return shuffled[:n_cal], shuffled[n_cal : n_cal + n_parity]


def _track_patches(
    enc: Any, files: list[Path], full_scale: bool = False
) -> tuple[list[np.ndarray], list[Path], int]:
    """Log-mel patches per decodable file (the ones decoded, and how many were skipped). ``full_scale`` adds
    each track's patches once more at full-scale peak, so the calibrated ranges cover the loudest master the
    catalogue may hold, not only the levels of the tracks drawn (log-mel is log power: a louder copy is a
    shift up, and values past the calibrated range clip)."""
    from research_job.errors import ResearchJobError
    from research_job.io.audio import decode_audio
    from research_job.models.musicnn import patches

    out, kept, skipped = [], [], 0
    for f in files:
        try:
            wave, _ = decode_audio(f, enc.sample_rate)
            cut = patches(enc.logmel(wave))
            peak = float(np.abs(wave).max()) if wave.size else 0.0
            if full_scale and 0.0 < peak < 0.99:
                cut = np.concatenate([cut, patches(enc.logmel(wave / peak))])
            out.append(cut)
            kept.append(f)
        except ResearchJobError as e:  # one bad file never sinks the calibration
            LOG.warning("int8 calibration: skipping %s: %s", f, e)
            skipped += 1
    return out, kept, skipped


def track_parity(reference: list[dict[str, np.ndarray]], got: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Per output: the least and median per-track cosine of the patch outputs mean-pooled over each track (what
    an embedding is), and the largest absolute difference of any patch output."""
    out = {}
    for key in reference[0]:
        cos, diff = [], 0.0
        for r, g in zip(reference, got, strict=True):
            a, b = r[key].mean(axis=0), g[key].mean(axis=0)
            cos.append(float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-30)))
            diff = max(diff, float(np.abs(r[key] - g[key]).max()))
        out[key] = {"max_abs_diff": diff, "min_cosine": min(cos), "median_cosine": float(np.median(cos))}
    return out


def _quantize(cfg: ExportModelConfig, enc: Any, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Export float32, calibrate int8 on catalogue audio into ``path``; (quantisation record, parity)."""
    from research_job.models import onnx_runtime

    assert cfg.calibrate_from is not None
    cal_files, parity_files = calibration_files(cfg.calibrate_from, cfg.calibration_tracks, cfg.parity_tracks)
    cal, kept, skipped = _track_patches(enc, cal_files, full_scale=True)
    if not cal:
        raise ModelError(
            f"int8 calibration: none of the {len(cal_files)} files under {cfg.calibrate_from} decoded"
        )
    # the float32 file runtime=onnx caches beside the weights (exported here when absent)
    fp32 = onnx_runtime.cached_model(enc.net, enc.checkpoint, enc.weights_sha256, enc.weights_folder)
    record = onnx_runtime.quantize_int8(fp32, path, np.concatenate(cal))
    digest = sha256_bytes("".join(sha256_file(f) for f in kept).encode())
    root = Path(cfg.calibrate_from)
    record["calibration"] = {
        "source": str(root),
        "seed": CALIBRATION_SEED,
        "n_tracks": len(kept),
        "n_skipped": skipped,
        "files": [f.relative_to(root).as_posix() for f in kept],
        "sha256": digest,
    }
    checks, _, _ = _track_patches(enc, parity_files)
    if not checks:
        path.unlink(missing_ok=True)
        raise ModelError(f"int8 parity: none of the {len(parity_files)} held-out files decoded")
    from research_job.models.onnx_runtime import OnnxNet

    net = OnnxNet(path, threads=2)
    reference = [enc.patch_outputs_from_logmel(p, port=True) for p in checks]
    got = [net(p) for p in checks]
    parity_ = {
        "n_patches": int(sum(len(p) for p in checks)),
        "seed": CALIBRATION_SEED,
        "runtime": f"onnxruntime {net.version}",
        "inputs": f"{len(checks)} held-out tracks of {root} (not calibrated on); cosine per track, pooled",
        "min_cosine_required": INT8_MIN_COSINE,
        "per_output": track_parity(reference, got),
    }
    return record, parity_


def install_int8(enc: Any, path: Path, meta: dict[str, Any]) -> Path:
    """Copy the int8 file where ``<model>?runtime=onnx&precision=int8`` loads it (the checkpoint's weights
    folder, :func:`~research_job.models.onnx_runtime.int8_model`), its record (sha256, calibration, parity)
    beside it; the file first, the record last, so a half-done install is never taken for one."""
    from research_job.models import onnx_runtime

    dest = onnx_runtime.int8_model(enc.checkpoint, enc.weights_sha256, enc.weights_folder)
    dest.parent.mkdir(parents=True, exist_ok=True)
    record = dest.with_suffix(".json")
    record.unlink(missing_ok=True)
    write_bytes(dest, path.read_bytes())
    q = meta["quantization"]
    calibration = {k: q["calibration"][k] for k in ("source", "n_tracks", "sha256")}
    calibration["n_patches"] = q["n_patches"]
    body = {"sha256": meta["sha256"], "calibration": calibration, "quantization": q, "parity": meta["parity"]}
    write_json(record, body)
    LOG.info("int8 model installed for %s?runtime=onnx&precision=int8: %s", enc.name.split("?")[0], dest)
    return dest


def _output_dims(enc: Any) -> dict[str, int]:
    """Each exported output's width (the port on one seeded patch)."""
    from research_job.models.onnx_runtime import OUTPUTS

    one = np.random.default_rng(PARITY_SEED).standard_normal((1, 187, 96)).astype(np.float32)
    outs = enc.patch_outputs_from_logmel(one, port=True)
    return {k: int(outs[k].shape[1]) for k in OUTPUTS}


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
    quantization = None
    if cfg.precision == "int8":
        import onnx
        import onnxruntime

        quantization, parity_ = _quantize(cfg, enc, path)
        exporter = (
            f"torch.onnx (dynamo) {torch.__version__}, onnx {onnx.__version__}, onnxruntime.quantization "
            f"{onnxruntime.__version__}"
        )
        worst = min(v["min_cosine"] for v in parity_["per_output"].values())
        required = INT8_MIN_COSINE
    else:
        if cfg.format == "onnx":
            onnx_runtime.export(enc.net, path)
            import onnx
            import onnxscript

            exporter = (
                f"torch.onnx (dynamo) {torch.__version__}, onnx {onnx.__version__}, onnxscript "
                f"{onnxscript.__version__}"
            )
        else:
            _export_torchscript(enc.net, path)
            exporter = f"torch.jit.trace {torch.__version__}"
        patches = (
            np.random.default_rng(PARITY_SEED).standard_normal((PARITY_PATCHES, 187, 96)).astype(np.float32)
        )
        reference = enc.patch_outputs_from_logmel(patches, port=True)
        got, runtime = _run_file(cfg.format, path, patches)
        figures = parity({k: reference[k] for k in onnx_runtime.OUTPUTS}, got)
        worst = min(v["min_cosine"] for v in figures.values())
        required = MIN_COSINE
        parity_ = {
            "n_patches": PARITY_PATCHES,
            "seed": PARITY_SEED,
            "runtime": runtime,
            "inputs": f"{PARITY_PATCHES} patches of seeded Gaussian noise; cosine per patch",
            "min_cosine_required": MIN_COSINE,
            "per_output": figures,
        }
    if worst < required:
        path.unlink(missing_ok=True)
        raise ModelError(
            f"The exported {cfg.precision} {cfg.format} model departs from the PyTorch port (least cosine "
            f"{worst:.7f} < {required}; {parity_['inputs']}): not written"
        )
    dims = _output_dims(enc)
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
        "parity": parity_,
        "precision": cfg.precision,
        "quantization": quantization,
        "triton": triton,
        "created_at": utc_now(),
        "code_version": code_version(),
    }
    schema.write_artifact(meta_dir / "model_meta.json", "model_meta", meta)
    if quantization is not None:
        meta["installed"] = str(install_int8(enc, path, meta))
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
