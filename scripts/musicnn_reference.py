"""Produce musicnn reference outputs with the ORIGINAL TensorFlow graph and checkpoint (run by hand, not in CI).

Needs a separate virtualenv with TensorFlow and librosa (never the project venv)::

    python3 -m venv /work/venv-tf && /work/venv-tf/bin/pip install tensorflow-cpu numpy librosa
    /work/venv-tf/bin/python scripts/musicnn_reference.py [--weights-dir .cache/musicnn] [--out tests/data/musicnn_ref]

``musicnn.extractor`` cannot be used: it needs ``tf.compat.v1.layers`` (gone with Keras 3 in TF >= 2.16) and its
weight restore sits in a bare ``except:`` that silently keeps random weights. Instead this script imports the
checkpoint's own graph (``.meta``, with the stale ``_output_shapes`` attributes stripped), restores it, asserts
that every variable holds exactly the checkpoint's value, feeds the mel-spectrogram placeholder in inference mode
and fetches the pooling / penultimate / logits / taggram tensors.

Written per checkpoint (``MSD_musicnn``, ``MTT_musicnn``), into ``--out``:

* ``inputs.npz``: seeded int16 waveforms (``wave_<clip>``, 16 kHz; float = int16 / 32768), their log-mel
  spectrograms computed with librosa as musicnn does but in float32 (``logmel_<clip>``, reflect-padded STFT as in
  the librosa versions musicnn was trained with), and the patches fed to TF (``patches``, [n, 187, 96]) with
  ``patch_clip`` naming each patch's source (``random`` = seeded uniform log-mel values).
* ``<checkpoint>.npz``: TF outputs per patch: ``mean_pool``, ``max_pool``, ``penultimate``, ``logits``, ``taggram``.
* ``<checkpoint>_tensors.json``: name -> dtype, shape, sha256 of every tensor as read by TF's checkpoint reader.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np

SR, N_FFT, HOP, N_MELS, PATCH = 16000, 512, 256, 96, 187
CHECKPOINTS = ("MSD_musicnn", "MTT_musicnn")
FETCH = {
    "mean_pool": "model/moments/Squeeze:0",
    "max_pool": "model/Max:0",
    "penultimate": "model/batch_normalization_10/batchnorm/add_1:0",
    "logits": "model/dense_1/BiasAdd:0",
    "taggram": "model/Sigmoid:0",
}


def make_waves() -> dict[str, np.ndarray]:
    """Seeded test clips, quantised to int16 so that both sides read bit-identical samples."""
    rng = np.random.default_rng(20240601)
    t = np.arange(int(6.5 * SR)) / SR
    # "tones": decaying harmonic notes (piano-like plucks) on a random melody, plus a little noise
    tones = np.zeros_like(t)
    for start in np.arange(0, 6.5, 0.4):
        f0 = 220.0 * 2 ** (rng.integers(0, 24) / 12)
        seg = t >= start
        tt = t[seg] - start
        note = sum(np.sin(2 * np.pi * f0 * h * tt) / h**1.5 for h in range(1, 8)) * np.exp(-3.0 * tt)
        tones[seg] += 0.15 * note
    tones += 0.005 * rng.standard_normal(t.size)
    # "loud": clipped full-scale saw + kick-like thumps + noise: mel power far above float16's range after *10000
    tl = np.arange(int(3.5 * SR)) / SR
    loud = 0.9 * (2 * ((110 * tl) % 1.0) - 1) + 0.8 * np.sin(2 * np.pi * 55 * tl) * (np.exp(-8 * (tl % 0.5)))
    loud += 0.2 * rng.standard_normal(tl.size)
    waves = {"tones": tones, "loud": np.clip(loud, -1, 1)}
    return {k: np.round(np.clip(v, -1, 32767 / 32768) * 32768).astype(np.int16) for k, v in waves.items()}


def librosa_logmel(wave: np.ndarray) -> np.ndarray:
    import librosa

    mel = librosa.feature.melspectrogram(
        y=wave, sr=SR, hop_length=HOP, n_fft=N_FFT, n_mels=N_MELS, pad_mode="reflect"
    ).T.astype(np.float32)
    return np.log10(np.float32(10000) * mel + np.float32(1)).astype(np.float32)


def make_inputs() -> dict[str, np.ndarray]:
    waves = make_waves()
    out: dict[str, np.ndarray] = {}
    patches, names = [], []
    for name, q in waves.items():
        wave = q.astype(np.float32) / 32768
        logmel = librosa_logmel(wave)
        out[f"wave_{name}"] = q
        out[f"logmel_{name}"] = logmel
        # extractor.batch_data: non-overlapping 187-frame patches, trailing partial patch dropped
        for start in range(0, logmel.shape[0] - PATCH + 1, PATCH):
            patches.append(logmel[start : start + PATCH])
            names.append(name)
        # what the original's float16 cast does to this clip
        f16 = np.log10(10000 * librosa_logmel_power(wave).astype(np.float16) + 1)
        print(
            f"{name}: {np.isinf(f16).mean():.1%} of original float16 log-mel values are inf", file=sys.stderr
        )
    rng = np.random.default_rng(7)
    patches.append(rng.uniform(0.0, 4.0, size=(PATCH, N_MELS)).astype(np.float32))
    names.append("random")
    out["patches"] = np.stack(patches).astype(np.float32)
    out["patch_clip"] = np.array(names)
    return out


def librosa_logmel_power(wave: np.ndarray) -> np.ndarray:
    import librosa

    return librosa.feature.melspectrogram(
        y=wave, sr=SR, hop_length=HOP, n_fft=N_FFT, n_mels=N_MELS, pad_mode="reflect"
    ).T


def run_tf(prefix: str, patches: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    tf.compat.v1.disable_eager_execution()
    meta = meta_graph_pb2.MetaGraphDef()
    with open(prefix + ".meta", "rb") as f:
        meta.ParseFromString(f.read())
    for node in meta.graph_def.node:
        if "_output_shapes" in node.attr:
            del node.attr["_output_shapes"]
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    tensors = {}
    for name, shape in sorted(reader.get_variable_to_shape_map().items()):
        value = reader.get_tensor(name)
        tensors[name] = {
            "dtype": str(value.dtype),
            "shape": list(shape),
            "sha256": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest(),
        }
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, prefix)  # raises on failure: no bare except here
            variables = tf.compat.v1.global_variables()
            assert variables, "no variables in the imported graph"
            for var in variables:
                name = var.op.name
                assert reader.has_tensor(name), f"variable {name} is not in the checkpoint"
                np.testing.assert_array_equal(sess.run(var), reader.get_tensor(name), err_msg=name)
            print(f"{prefix}: all {len(variables)} variables restored from the checkpoint", file=sys.stderr)
            x = graph.get_tensor_by_name("model/Placeholder:0")
            is_training = graph.get_tensor_by_name("model/Placeholder_2:0")
            assert x.dtype == tf.float32 and x.shape.as_list() == [None, PATCH, N_MELS], x
            assert is_training.dtype == tf.bool, is_training
            fetched = sess.run({k: graph.get_tensor_by_name(v) for k, v in FETCH.items()},
                               feed_dict={x: patches, is_training: False})  # fmt: skip
    out = {k: np.asarray(v, dtype=np.float32).reshape(len(patches), -1) for k, v in fetched.items()}
    np.testing.assert_allclose(out["taggram"], 1 / (1 + np.exp(-out["logits"].astype(np.float64))), atol=1e-6)
    return out, tensors


def main() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--weights-dir",
        default=os.environ.get("MUSICNN_WEIGHTS_DIR", os.path.join(root, ".cache", "musicnn")),
    )
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "musicnn_ref"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    inputs = make_inputs()
    np.savez_compressed(os.path.join(args.out, "inputs.npz"), **inputs)
    for ckpt in CHECKPOINTS:
        outputs, tensors = run_tf(os.path.join(args.weights_dir, ckpt) + os.sep, inputs["patches"])
        np.savez_compressed(os.path.join(args.out, f"{ckpt}.npz"), **outputs)
        with open(os.path.join(args.out, f"{ckpt}_tensors.json"), "w") as f:
            json.dump(tensors, f, indent=1, sort_keys=True)
            f.write("\n")
        print(ckpt, {k: v.shape for k, v in outputs.items()}, file=sys.stderr)


if __name__ == "__main__":
    main()
