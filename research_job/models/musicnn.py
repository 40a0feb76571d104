"""musicnn (Pons & Serra, 2019) ported to PyTorch, loading the original TensorFlow checkpoints.

Preprocessing follows ``musicnn/extractor.py`` of the ``musicnn==0.1.0`` wheel: 16 kHz mono, STFT with n_fft 512,
hop 256, periodic Hann window, centred frames with reflect padding (librosa's default when musicnn was trained),
power spectrum, 96-band Slaney mel filterbank (librosa's default ``htk=False, norm='slaney'``, re-implemented
here), then ``log10(10000 * mel + 1)``. The original casts the mel power to float16 before the log, which
overflows to +inf on loud frames and turns pooled outputs into NaN; we stay in float32. The spectrogram is cut into
non-overlapping 3 s patches of 187 frames; like the original, the trailing partial patch is dropped. Tracks
shorter than one patch (where the original crashes) are repeat-padded to one patch, as musicnn's training
config did (``pad_short: repeat-pad``).

The network follows ``musicnn/models.py`` (``build_musicnn`` with 64 mid-end filters, 200 back-end units):
input batch norm; front end of two timbral convs (7x38, 7x67 over time x mel, 204 filters each, valid in
frequency, time zero-padded by 3) and three temporal convs (128x1, 64x1, 32x1, 51 filters, TF 'same'
padding), each ReLU -> batch norm -> max over frequency; mid end of three 1-D convs (k=7, 64 filters, ReLU ->
batch norm, the 2nd and 3rd residual), densely concatenated with the front end (561 + 3 * 64 = 753 features per
frame); back end of temporal max and mean pooling (interleaved max/mean as TF's flatten of ``[753, 2]``),
batch norm, dense 200 + ReLU + batch norm (``penultimate``), dense 50 + sigmoid (``taggram``). Batch norm is
TF's ``tf.compat.v1.layers.batch_normalization`` in inference mode (moving statistics, epsilon 1e-3).

A track's embedding is the chosen layer computed per patch and mean-pooled over all patches.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from research_job.errors import ModelError, unknown_choice
from research_job.models.musicnn_weights import checkpoint_files
from research_job.models.onnx_runtime import OPSET as ONNX_OPSET
from research_job.models.onnx_runtime import PRECISIONS, RUNTIMES
from research_job.models.tf_checkpoint import TensorBundle
from research_job.provenance import sha256_file, sha256_files

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
#: frames per 3 s patch: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
PATCH_FRAMES = 187
BN_EPSILON = 1e-3  # tf.compat.v1.layers.batch_normalization default
#: default patches per forward pass. On CPU small batches are faster per patch: one patch's first timbral conv
#: output (204 x 187 x 59 floats, 9 MB) stays in cache for the max over frequency that follows, eight patches'
#: (72 MB) do not. Measured on the 2-core bench VM (model part, 2 threads): 126x real time at 1 patch, 122x at 2,
#: 98x at 8; decode + model over 40 demo-corpus files: 109.7x at 2 vs 93.4x at 8. Accelerators keep 8.
CPU_BATCH_PATCHES = 2
ACCELERATOR_BATCH_PATCHES = 8

MTT_TAGS = ['guitar', 'classical', 'slow', 'techno', 'strings', 'drums', 'electronic', 'rock', 'fast', 'piano',
            'ambient', 'beat', 'violin', 'vocal', 'synth', 'female', 'indian', 'opera', 'male', 'singing', 'vocals',
            'no vocals', 'harpsichord', 'loud', 'quiet', 'flute', 'woman', 'male vocal', 'no vocal', 'pop', 'soft',
            'sitar', 'solo', 'man', 'classic', 'choir', 'voice', 'new age', 'dance', 'male voice', 'female vocal',
            'beats', 'harp', 'cello', 'no voice', 'weird', 'country', 'metal', 'female voice', 'choral']  # fmt: skip
MSD_TAGS = ['rock', 'pop', 'alternative', 'indie', 'electronic', 'female vocalists', 'dance', '00s',
            'alternative rock', 'jazz', 'beautiful', 'metal', 'chillout', 'male vocalists', 'classic rock', 'soul',
            'indie rock', 'Mellow', 'electronica', '80s', 'folk', '90s', 'chill', 'instrumental', 'punk', 'oldies',
            'blues', 'hard rock', 'ambient', 'acoustic', 'experimental', 'female vocalist', 'guitar', 'Hip-Hop',
            '70s', 'party', 'country', 'easy listening', 'sexy', 'catchy', 'funk', 'electro', 'heavy metal',
            'Progressive rock', '60s', 'rnb', 'indie pop', 'sad', 'House', 'happy']  # fmt: skip
TAGS = {"MSD_musicnn": MSD_TAGS, "MTT_musicnn": MTT_TAGS}
#: the tag set each checkpoint was trained on (named in embeddings/tags.json)
VOCABULARIES = {"MSD_musicnn": "Million Song Dataset (last.fm tags)", "MTT_musicnn": "MagnaTagATune"}

#: embedding layers and their dimensions
LAYERS = {"penultimate": 200, "mean_pool": 753, "max_pool": 753, "taggram": 50}
DEFAULT_LAYER = "penultimate"


# ---------------------------------------------------------------------------------------------------- frontend
def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney's auditory-toolbox mel scale (librosa ``htk=False``): linear below 1 kHz, log above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(
        f >= min_log_hz, min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep, mels
    )


def _mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """Slaney-normalised triangular mel filterbank [n_mels, 1 + n_fft // 2], float32, as librosa's
    ``filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)`` (fmin 0, fmax sr/2, htk=False, norm='slaney')."""
    fftfreqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


class LogMel(nn.Module):
    """Waveform [B, samples] at 16 kHz -> log-mel [B, frames, 96], float32 (musicnn's input representation)."""

    window: torch.Tensor
    mel: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True, dtype=torch.float32))
        self.register_buffer("mel", torch.from_numpy(mel_filterbank()))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            wave, N_FFT, HOP, window=self.window, center=True, pad_mode="reflect", return_complex=True
        )
        power = spec.real.square() + spec.imag.square()  # [B, 257, frames]
        mel = torch.matmul(self.mel, power)  # [B, 96, frames]
        return torch.log10(10000.0 * mel + 1.0).transpose(1, 2)


def log_mel(wave: np.ndarray) -> np.ndarray:
    """musicnn's log-mel spectrogram [frames, 96] of one mono 16 kHz waveform (float32; frames = 1 + n // 256)."""
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None]
    with torch.inference_mode():
        return LogMel()(x)[0].numpy()


def patches(logmel: np.ndarray) -> np.ndarray:
    """Cut a log-mel [frames, 96] into non-overlapping patches [n, 187, 96] as ``extractor.batch_data`` does
    (trailing partial patch dropped); shorter inputs are repeat-padded to one patch."""
    frames = logmel.shape[0]
    if frames == 0:
        raise ModelError("Cannot cut an empty spectrogram into musicnn patches")
    if frames < PATCH_FRAMES:
        logmel = np.tile(logmel, (math.ceil(PATCH_FRAMES / frames), 1))[:PATCH_FRAMES]
        frames = PATCH_FRAMES
    n = frames // PATCH_FRAMES
    return np.ascontiguousarray(logmel[: n * PATCH_FRAMES].reshape(n, PATCH_FRAMES, logmel.shape[1]))


# ---------------------------------------------------------------------------------------------------- network
class _BatchNorm(nn.Module):
    """Inference-mode batch norm over the channel axis ``dim`` with TF's parameters (gamma, beta, moving stats)."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, n: int, dim: int = 1):
        super().__init__()
        self.dim = dim
        for name in ("scale", "shift"):
            self.register_buffer(name, torch.zeros(n))

    def set_tf(self, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray) -> None:
        # fold TF's formula (x - mean) * gamma / sqrt(var + eps) + beta into one scale and shift
        scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + BN_EPSILON)
        self.scale.copy_(torch.from_numpy(scale.astype(np.float32)))
        self.shift.copy_(torch.from_numpy((beta - mean * scale).astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.dim()
        shape[self.dim] = -1
        return x * self.scale.view(shape) + self.shift.view(shape)


class _FreqMaxBlock(nn.Module):
    """conv -> ReLU -> batch norm -> max over frequency, computed as ``bn(relu(sign * max_f(sign * conv)))``.

    ReLU is non-decreasing and inference batch norm is ``x * scale + shift``, so the max over frequency of
    ``bn(relu(z))`` is ``bn(relu(max z))`` where ``scale >= 0`` and ``bn(relu(min z))`` where ``scale < 0``; with
    the weights of the negative-scale channels negated at load time (``min z = -max(-z)``, exact in floating
    point) one max over the small reduced tensor replaces three passes over the large conv output.
    """

    sign: torch.Tensor

    def __init__(self, out_channels: int, kernel: tuple[int, int]):
        super().__init__()
        self.conv = nn.Conv2d(1, out_channels, kernel)
        self.bn = _BatchNorm(out_channels)
        self.register_buffer("sign", torch.ones(out_channels))

    def load(self, kernel: np.ndarray, bias: np.ndarray, bn_params: tuple[np.ndarray, ...]) -> None:
        """Set TF weights: ``kernel`` [kh, kw, 1, out], ``bias`` [out], batch norm (gamma, beta, mean, var)."""
        self.bn.set_tf(*bn_params)
        sign = torch.where(self.bn.scale < 0, -1.0, 1.0)
        self.sign.copy_(sign)
        weight = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        self.conv.weight.copy_(weight * sign.view(-1, 1, 1, 1))
        assert self.conv.bias is not None
        self.conv.bias.copy_(torch.from_numpy(bias) * sign)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, T', F] (already padded) -> [B, out_channels, T]."""
        z = self.conv(x).amax(dim=3) * self.sign.view(1, -1, 1)
        return self.bn(F.relu(z))


class _TimeConv(nn.Module):
    """1-D convolution over time with zero 'same' padding, as an unfold + one GEMM.

    Equivalent to ``nn.Conv1d(in, out, k, padding=k // 2)``; the GEMM's blocked accumulation is ~10x closer to a
    float64 evaluation than oneDNN's direct convolution over 561 x 7 terms, which keeps the parity with TF tight.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 7):
        super().__init__()
        self.kernel = kernel
        #: set on the copy an exporter traces: one ``conv1d`` (what ONNX runtimes run fastest) instead of the
        #: unfold + GEMM, whose gather and transpose took a sixth of onnxruntime's time
        self.as_conv1d = False
        self.weight = nn.Parameter(torch.zeros(in_channels * kernel, out_channels), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(out_channels), requires_grad=False)

    def load(self, kernel: np.ndarray, bias: np.ndarray) -> None:
        """Set TF weights: ``kernel`` [k, in, 1, out] (TF convolves a [T, in, 1] image), ``bias`` [out]."""
        k, c, _, o = kernel.shape
        self.weight.copy_(torch.from_numpy(kernel[:, :, 0, :].transpose(1, 0, 2).reshape(c * k, o).copy()))
        self.bias.copy_(torch.from_numpy(bias))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """[B, in, T] -> [B, out, T]."""
        b, c, t = h.shape
        pad = self.kernel // 2
        if self.as_conv1d:
            weight = self.weight.view(c, self.kernel, -1).permute(2, 0, 1)  # [out, in, k]
            return F.conv1d(h, weight, self.bias, padding=pad)
        cols = (
            F.pad(h, (pad, pad)).unfold(2, self.kernel, 1).permute(0, 2, 1, 3).reshape(b * t, c * self.kernel)
        )
        return torch.addmm(self.bias, cols, self.weight).view(b, t, -1).transpose(1, 2)


class MusicnnNet(nn.Module):
    """musicnn ``build_musicnn`` (64 mid-end filters, 200 back-end units) in inference mode.

    ``forward(patches [B, 187, 96])`` returns a dict of per-patch outputs: ``mean_pool`` and ``max_pool``
    [B, 753], ``penultimate`` [B, 200], ``logits`` and ``taggram`` [B, 50].
    """

    TEMPORAL_KERNELS = (128, 64, 32)

    def __init__(self, n_classes: int = 50, n_mels: int = N_MELS):
        super().__init__()
        self.bn_input = _BatchNorm(1)
        self.timbral = nn.ModuleList(_FreqMaxBlock(204, (7, int(frac * n_mels))) for frac in (0.4, 0.7))
        self.temporal = nn.ModuleList(_FreqMaxBlock(51, (k, 1)) for k in self.TEMPORAL_KERNELS)
        self.midend = nn.ModuleList(_TimeConv(c, 64, 7) for c in (561, 64, 64))
        self.bn_midend = nn.ModuleList(_BatchNorm(64) for _ in range(3))
        self.bn_pool = _BatchNorm(1506)
        self.dense = nn.Linear(1506, 200)
        self.bn_dense = _BatchNorm(200)
        self.out = nn.Linear(200, n_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.bn_input(x.unsqueeze(1))  # [B, 1, T, F]
        time_padded = F.pad(x, (0, 0, 3, 3))
        front = []
        for block in self.timbral:
            front.append(block(time_padded))  # [B, 204, T]
        for k, block in zip(self.TEMPORAL_KERNELS, self.temporal, strict=True):
            # TF 'same' padding: the extra row of an even kernel goes after
            front.append(block(F.pad(x, (0, 0, (k - 1) // 2, k - 1 - (k - 1) // 2))))  # [B, 51, T]
        frontend = torch.cat(front, dim=1)  # [B, 561, T]
        feats = [frontend]
        h = frontend
        for i, (conv, bn) in enumerate(zip(self.midend, self.bn_midend, strict=True)):
            y = bn(F.relu(conv(h)))
            h = y if i == 0 else y + h
            feats.append(h)
        midend = torch.cat(feats, dim=1)  # [B, 753, T]
        max_pool = midend.amax(dim=2)
        mean_pool = midend.mean(dim=2)
        # TF flattens concat([max, mean], axis=2) of shape [B, 753, 2]: features interleave max_i, mean_i
        flat = torch.stack([max_pool, mean_pool], dim=2).reshape(x.shape[0], -1)
        penultimate = self.bn_dense(F.relu(self.dense(self.bn_pool(flat))))
        logits = self.out(penultimate)
        return {
            "mean_pool": mean_pool,
            "max_pool": max_pool,
            "penultimate": penultimate,
            "logits": logits,
            "taggram": torch.sigmoid(logits),
        }

    @torch.no_grad()
    def load_tf(self, bundle: TensorBundle) -> None:
        """Copy the weights from a musicnn checkpoint (variable names as in the wheel's checkpoints).

        Raises:
            CheckpointError: a variable is missing or has an unexpected shape.
        """

        def t(name: str, shape: tuple[int, ...]) -> np.ndarray:
            arr = bundle.read(name)
            if arr.shape != shape:
                raise ModelError(f"{bundle.index_path}: {name} has shape {arr.shape}, expected {shape}")
            return arr

        def bn(module: nn.Module, scope: str) -> None:
            assert isinstance(module, _BatchNorm)
            module.set_tf(*bn_params(scope, module.scale.numel()))

        def bn_params(scope: str, n: int) -> tuple[np.ndarray, ...]:
            return tuple(t(f"{scope}/{v}", (n,)) for v in ("gamma", "beta", "moving_mean", "moving_variance"))

        def freq_block(block: _FreqMaxBlock, scope: str, bn_scope: str) -> None:
            o, i, kh, kw = block.conv.weight.shape
            block.load(t(f"{scope}/kernel", (kh, kw, i, o)), t(f"{scope}/bias", (o,)), bn_params(bn_scope, o))

        def conv1d(module: nn.Module, scope: str) -> None:
            assert isinstance(module, _TimeConv)
            i, o = module.weight.shape
            module.load(
                t(f"{scope}/kernel", (module.kernel, i // module.kernel, 1, o)), t(f"{scope}/bias", (o,))
            )

        def dense(module: nn.Linear, scope: str) -> None:
            o, i = module.weight.shape
            module.weight.copy_(torch.from_numpy(t(f"{scope}/kernel", (i, o)).T.copy()))
            module.bias.copy_(torch.from_numpy(t(f"{scope}/bias", (o,))))

        # the checkpoint's layers are numbered in graph-construction order (models.py)
        bn(self.bn_input, "batch_normalization")
        for j, block in enumerate([*self.timbral, *self.temporal]):
            freq_block(block, "conv2d" if j == 0 else f"conv2d_{j}", f"batch_normalization_{j + 1}")
        for j, (conv, module) in enumerate(zip(self.midend, self.bn_midend, strict=True)):
            conv1d(conv, f"conv2d_{j + 5}")
            bn(module, f"batch_normalization_{j + 6}")
        bn(self.bn_pool, "batch_normalization_9")
        dense(self.dense, "dense")
        bn(self.bn_dense, "batch_normalization_10")
        dense(self.out, "dense_1")


# ---------------------------------------------------------------------------------------------------- encoder
class MusicnnEncoder:
    """The :class:`~research_job.models.base.Encoder` over a musicnn checkpoint.

    Attributes: ``tags`` (the 50 tag names, taggram order), ``tag_blocks`` (the same with the model and its
    vocabulary, :func:`research_job.models.base.tag_blocks_of`), ``layer`` (the embedding layer).
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        checkpoint: str,
        layer: str,
        device: str,
        batch_size: int,
        weights_root: str | None,
        runtime: str = "torch",
        precision: str = "fp32",
    ):
        prefix, files = checkpoint_files(checkpoint, weights_root)
        self.checkpoint = checkpoint
        self.layer = layer
        self.dim = LAYERS[layer]
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.name = f"musicnn-{checkpoint.split('_')[0].lower()}"
        self.tags = list(TAGS[checkpoint])
        self.tag_blocks = [
            {"model": self.name, "vocabulary": VOCABULARIES[checkpoint], "tags": list(self.tags)}
        ]
        self.weights_sha256 = sha256_files(files)
        self.net = MusicnnNet(len(self.tags))
        self.net.load_tf(TensorBundle(prefix))
        self.net.eval().to(self.device)
        self.frontend = LogMel().to(self.device)
        self.runtime = runtime
        self.precision = precision
        self.onnx: Any = None
        self.int8: dict[str, Any] | None = None
        from research_job.models.musicnn_weights import weights_dir

        #: the checkpoints' folder, where the ONNX and int8 files of this checkpoint are kept
        self.weights_folder = Path(weights_root) if weights_root is not None else weights_dir()
        if runtime == "onnx":
            from research_job.models import onnx_runtime

            root = self.weights_folder
            if precision == "int8":
                path = onnx_runtime.int8_model(checkpoint, self.weights_sha256, root)
                self.int8 = _int8_record(path, self.name)
            else:
                path = onnx_runtime.cached_model(self.net, checkpoint, self.weights_sha256, root)
            self.onnx = onnx_runtime.OnnxNet(path, torch.get_num_threads(), device)

    def patch_outputs_from_logmel(self, patches_: np.ndarray, port: bool = False) -> dict[str, np.ndarray]:
        """Run the network on log-mel patches [n, 187, 96]; per-patch outputs of every layer (float32).
        ``port``: the PyTorch port whatever the runtime (what exported files are checked against)."""
        outs: dict[str, list[np.ndarray]] = {}
        with torch.inference_mode():
            for start in range(0, len(patches_), self.batch_size):
                chunk = np.ascontiguousarray(patches_[start : start + self.batch_size], np.float32)
                if self.onnx is not None and not port:
                    for key, arr in self.onnx(chunk).items():
                        outs.setdefault(key, []).append(arr)
                    continue
                for key, val in self.net(torch.from_numpy(chunk).to(self.device)).items():
                    outs.setdefault(key, []).append(val.float().cpu().numpy())
        return {k: np.concatenate(v) for k, v in outs.items()}

    def logmel(self, wave: np.ndarray) -> np.ndarray:
        """Log-mel [frames, 96] of one waveform, repeat-padded to at least one patch."""
        wave = np.asarray(wave, dtype=np.float32).reshape(-1)
        if wave.size == 0:
            raise ModelError("Cannot embed an empty waveform")
        min_samples = (PATCH_FRAMES - 1) * HOP  # 1 + n // HOP >= PATCH_FRAMES
        if wave.size < min_samples:
            wave = np.tile(wave, math.ceil(min_samples / wave.size))
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(wave))[None].to(self.device)
            return self.frontend(x)[0].float().cpu().numpy()

    def patch_outputs(self, wave: np.ndarray) -> dict[str, np.ndarray]:
        """Per-3 s-patch outputs of one mono 16 kHz waveform: ``mean_pool``, ``max_pool`` [n, 753],
        ``penultimate`` [n, 200], ``logits``, ``taggram`` [n, 50] (columns named by ``self.tags``)."""
        return self.patch_outputs_from_logmel(patches(self.logmel(wave)))

    #: layers :meth:`embed_frames` can return per 3 s patch (the FrameEncoder protocol)
    frame_layers = LAYERS
    frame_sec = PATCH_FRAMES * HOP / SAMPLE_RATE
    hop_sec = PATCH_FRAMES * HOP / SAMPLE_RATE

    @property
    def front_end_key(self) -> tuple[Any, ...]:
        """Every musicnn checkpoint takes the same log-mel patches (the StagedEncoder protocol)."""
        return ("musicnn-logmel", SAMPLE_RATE, N_FFT, HOP, N_MELS, PATCH_FRAMES, str(self.device))

    @property
    def network_key(self) -> tuple[Any, ...]:
        """One checkpoint, runtime and precision (and batching) give one set of outputs, whatever the layer."""
        int8 = self.int8["sha256"] if self.int8 is not None else None
        return (
            "musicnn",
            self.weights_sha256,
            self.runtime,
            self.precision,
            int8,
            self.batch_size,
            str(self.device),
        )

    def front_end(self, batch: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The log-mel patches [n, 187, 96] of the whole batch and the patch bounds of each waveform."""
        cut = [patches(self.logmel(w)) for w in batch]
        bounds = np.cumsum([0, *(len(p) for p in cut)])
        return np.concatenate(cut), bounds

    def network(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's per-patch outputs (:meth:`patch_outputs_from_logmel`)."""
        return self.patch_outputs_from_logmel(inputs)

    def pool(
        self, outputs: dict[str, np.ndarray], bounds: np.ndarray, layers: Sequence[str]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The embedding layer mean-pooled over each waveform's patches, and the chosen layers per patch."""
        spans = list(zip(bounds[:-1], bounds[1:], strict=True))
        pooled = np.stack([outputs[self.layer][a:b].mean(axis=0) for a, b in spans]).astype(np.float32)
        frames = [
            np.concatenate([outputs[name][a:b] for name in layers], axis=1).astype(np.float32)
            if layers
            else np.zeros((b - a, 0), np.float32)
            for a, b in spans
        ]
        return pooled, frames

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """One vector per waveform: the chosen layer per patch, mean-pooled over the track's patches."""
        return self.embed_frames(batch, ())[0]

    def embed_frames(
        self, batch: Sequence[np.ndarray], layers: Sequence[str]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The pooled vectors of :meth:`embed` and, per waveform, the chosen layers' outputs per 3 s patch
        (concatenated in ``layers`` order), from one forward pass.

        Raises:
            ModelError: an unknown layer, naming the known ones.
        """
        check_layers(layers)
        if not len(batch):
            return np.zeros((0, self.dim), dtype=np.float32), []
        inputs, bounds = self.front_end(batch)
        return self.pool(self.network(inputs), bounds, layers)

    def info(self) -> dict[str, Any]:
        """Facts for ``embeddings_meta.json['model']``."""
        return {
            "name": self.name,
            "version": f"musicnn-0.1.0/{self.checkpoint}",
            "weights_sha256": self.weights_sha256,
            "pooling": "mean",
            "layer": self.layer,
            "params": {
                "checkpoint": self.checkpoint,
                "dim": self.dim,
                "sample_rate": SAMPLE_RATE,
                "n_fft": N_FFT,
                "hop_length": HOP,
                "stft_pad_mode": "reflect",
                "n_mels": N_MELS,
                "patch_frames": PATCH_FRAMES,
                "patch_hop_frames": PATCH_FRAMES,
                "log_compression": "log10(10000*mel+1), float32",
                "batch_size": self.batch_size,
                # only off the default, so folders embedded before runtimes existed stay this model's
                **(
                    {"runtime": "onnx", "onnx_opset": ONNX_OPSET, "onnxruntime": self.onnx.version}
                    if self.onnx is not None
                    else {}
                ),
                # int8 is another model: its file (hence its calibration) is part of what the vectors mean
                **(
                    {
                        "precision": "int8",
                        "int8_sha256": self.int8["sha256"],
                        "int8_calibration": self.int8["calibration"],
                    }
                    if self.int8 is not None
                    else {}
                ),
            },
        }


def _int8_record(path: Path, name: str) -> dict[str, Any]:
    """The installed int8 file's sha256 and calibration (its ``.json`` record), or a ModelError saying how to
    make it; a file whose bytes are not those recorded is refused."""
    import json

    record_path = path.with_suffix(".json")
    if not path.is_file() or not record_path.is_file():
        raise ModelError(
            f"No int8 model of {name} is installed ({path} missing). Calibrate one on catalogue audio first: "
            f"research-job export-model --model '{name}?runtime=onnx' --precision int8 --calibrate-from "
            "<version folder or audio folder> (make quantize does it on the demo corpus)"
        )
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        sha, calibration = record["sha256"], record["calibration"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"Unreadable int8 record {record_path}: {type(e).__name__}") from None
    if sha256_file(path) != sha:
        raise ModelError(
            f"{path} is not the int8 file its record {record_path.name} describes (sha256 differs)"
        )
    return {"sha256": sha, "calibration": calibration}


def check_layers(layers: Sequence[str]) -> None:
    """Raises ModelError for a layer musicnn has not, naming the ones it has."""
    for name in layers:
        if name not in LAYERS:
            raise ModelError(unknown_choice("musicnn frame layer", name, LAYERS))


def default_batch_patches(device: torch.device) -> int:
    """Patches per forward pass when none is given: ``CPU_BATCH_PATCHES`` on CPU, else ``ACCELERATOR_BATCH_PATCHES``."""
    return CPU_BATCH_PATCHES if device.type == "cpu" else ACCELERATOR_BATCH_PATCHES


def _as_int(name: str, value: int | str) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise ModelError(f"musicnn option {name}={value!r} is not an integer") from None
    if out < 1:
        raise ModelError(f"musicnn option {name}={value!r} must be >= 1")
    return out


def load(
    checkpoint: str = "MSD_musicnn",
    layer: str = DEFAULT_LAYER,
    device: str = "cpu",
    batch_size: int | str | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    runtime: str = "torch",
    precision: str = "fp32",
) -> MusicnnEncoder:
    """Load a musicnn encoder from the wheel's checkpoint (registry entry ``musicnn-msd`` / ``musicnn-mtt``).

    Args:
        checkpoint: ``MSD_musicnn`` or ``MTT_musicnn``.
        layer: embedding layer, one of ``penultimate`` (200-d), ``mean_pool``, ``max_pool`` (753-d), ``taggram`` (50).
        device: torch device string.
        batch_size: patches per forward pass (strings accepted, as from ``musicnn-msd?batch_size=32``); None:
            ``CPU_BATCH_PATCHES`` on CPU, ``ACCELERATOR_BATCH_PATCHES`` elsewhere.
        weights_dir: folder holding ``<checkpoint>/.index`` etc. (default ``$MUSICNN_WEIGHTS_DIR`` or
            ``<repo>/.cache/musicnn``).
        runtime: ``torch`` (the port) or ``onnx`` (the same network exported to ONNX once, run by onnxruntime:
            :mod:`research_job.models.onnx_runtime`).
        precision: ``fp32``, or ``int8`` (``runtime=onnx`` only): the network with its timbral convolutions
            quantised, as installed by ``export-model --precision int8`` (calibrated on catalogue audio).

    Raises:
        ModelError: unknown checkpoint / layer / bad option, or missing weights (says how to fetch them).
    """
    if checkpoint not in TAGS:
        raise ModelError(unknown_choice("musicnn checkpoint", checkpoint, TAGS))
    if layer not in LAYERS:
        raise ModelError(unknown_choice("musicnn layer", layer, LAYERS))
    if runtime not in RUNTIMES:
        raise ModelError(unknown_choice("musicnn runtime", runtime, RUNTIMES))
    if precision not in PRECISIONS:
        raise ModelError(unknown_choice("musicnn precision", precision, PRECISIONS))
    if precision == "int8" and runtime != "onnx":
        raise ModelError(
            f"musicnn precision=int8 runs on onnxruntime: add runtime=onnx (got runtime={runtime}), e.g. "
            f"musicnn-{checkpoint.split('_')[0].lower()}?runtime=onnx&precision=int8"
        )
    try:
        torch_device = torch.device(device)
    except RuntimeError as exc:
        raise ModelError(f"Bad torch device {device!r}: {exc}") from None
    if batch_size is None:
        batch_size = default_batch_patches(torch_device)
    return MusicnnEncoder(
        checkpoint, layer, str(torch_device), _as_int("batch_size", batch_size),
        None if weights_dir is None else os.fspath(weights_dir), runtime, precision,
    )  # fmt: skip
