"""Locate and obtain musicnn's pretrained TensorFlow checkpoints.

The checkpoints ship inside the PyPI wheel ``musicnn==0.1.0`` (``musicnn/MSD_musicnn/``, ``MTT_musicnn``,
``MSD_vgg``, ``MTT_vgg``). The wheel's dependency pins are obsolete, so it is never installed: :func:`fetch`
runs ``pip download --no-deps``, checks the wheel's sha256 and unzips only the checkpoint folders into the
weights dir (``$MUSICNN_WEIGHTS_DIR``, else ``<repo>/.cache/musicnn``, git-ignored).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from research_job.errors import ModelError, unknown_choice
from research_job.provenance import sha256_file, sha256_files

log = logging.getLogger(__name__)

WHEEL_REQUIREMENT = "musicnn==0.1.0"
WHEEL_NAME = "musicnn-0.1.0-py3-none-any.whl"
#: sha256 of the wheel on PyPI (checked after download)
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
#: checkpoint folders inside the wheel
CHECKPOINTS = ("MSD_musicnn", "MTT_musicnn", "MSD_vgg", "MTT_vgg")
#: sha256_files([.data-00000-of-00001, .index]) of the checkpoints this project ports
KNOWN_SHA256 = {
    "MSD_musicnn": "6c4f696871946a5b2ede8348233ee33ba15515aeff686bfa7fdaabf18df2bfa3",
    "MTT_musicnn": "8a048ac36eca3dfea887aeb8cc89fc989d4162fab8d6129d7981174083e77031",
}
ENV_VAR = "MUSICNN_WEIGHTS_DIR"
HOW_TO_FETCH = "run `make weights` (or `python scripts/fetch_musicnn_weights.py [--dest DIR]`)"


def repo_root() -> Path:
    """The checkout this package lives in."""
    return Path(__file__).resolve().parents[2]


def weights_dir() -> Path:
    """``$MUSICNN_WEIGHTS_DIR`` if set, else ``<repo>/.cache/musicnn``."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else repo_root() / ".cache" / "musicnn"


def checkpoint_files(checkpoint: str, root: str | os.PathLike[str] | None = None) -> tuple[str, list[str]]:
    """Return the checkpoint prefix (``<dir>/<checkpoint>/``) and its ``.data`` + ``.index`` files.

    Raises:
        ModelError: unknown checkpoint name, or its files are missing (the message says how to fetch them).
    """
    if checkpoint not in CHECKPOINTS:
        raise ModelError(unknown_choice("musicnn checkpoint", checkpoint, CHECKPOINTS))
    base = Path(root) if root is not None else weights_dir()
    folder = base / checkpoint
    files = [folder / ".data-00000-of-00001", folder / ".index"]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise ModelError(
            f"musicnn weights {checkpoint!r} not found (missing {', '.join(missing)}). To get them, {HOW_TO_FETCH}; "
            f"it downloads the {WHEEL_REQUIREMENT} wheel from PyPI and unpacks its checkpoints into {base} "
            f"(set ${ENV_VAR} to use another folder)."
        )
    return str(folder) + os.sep, [str(p) for p in files]


def extract_wheel(
    wheel: str | os.PathLike[str], dest: str | os.PathLike[str], checkpoints: tuple[str, ...] = CHECKPOINTS
) -> list[Path]:
    """Unzip the checkpoint folders of a musicnn wheel into ``dest/<checkpoint>/`` (each folder atomically).

    Raises:
        ModelError: the wheel has the wrong checksum, or lacks a requested checkpoint.
    """
    wheel = Path(wheel)
    digest = sha256_file(wheel)
    if digest != WHEEL_SHA256:
        raise ModelError(f"{wheel}: sha256 {digest} differs from the known {WHEEL_NAME} ({WHEEL_SHA256})")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        for ckpt in checkpoints:
            if ckpt not in CHECKPOINTS:
                raise ModelError(unknown_choice("musicnn checkpoint", ckpt, CHECKPOINTS))
            members = [n for n in names if n.startswith(f"musicnn/{ckpt}/") and not n.endswith("/")]
            if not members:
                raise ModelError(f"{wheel}: no musicnn/{ckpt}/ folder")
            tmp = Path(tempfile.mkdtemp(prefix=f".{ckpt}.", dir=dest))
            os.chmod(tmp, 0o755)
            try:
                for m in members:
                    target = tmp / Path(m).name
                    with zf.open(m) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                        dst.flush()
                        os.fsync(dst.fileno())
                final = dest / ckpt
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp)
            if ckpt in KNOWN_SHA256:
                _, files = checkpoint_files(ckpt, dest)
                got = sha256_files(files)
                if got != KNOWN_SHA256[ckpt]:
                    raise ModelError(
                        f"{final}: checkpoint sha256 {got} differs from the known {KNOWN_SHA256[ckpt]}"
                    )
            log.info("unpacked %s -> %s", ckpt, final)
            out.append(final)
    return out


def fetch(
    dest: str | os.PathLike[str] | None = None,
    checkpoints: tuple[str, ...] = CHECKPOINTS,
    wheel: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Download the musicnn wheel with ``pip download --no-deps`` (unless ``wheel`` is given) and unpack its
    checkpoints into ``dest`` (default :func:`weights_dir`). Returns the checkpoint folders.

    Raises:
        ModelError: pip fails (offline, PyPI unreachable) or the wheel is not the known one.
    """
    target = Path(dest) if dest is not None else weights_dir()
    if wheel is not None:
        return extract_wheel(wheel, target, checkpoints)
    with tempfile.TemporaryDirectory(prefix="musicnn-wheel-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-d",
            tmp,
            WHEEL_REQUIREMENT,
        ]
        log.info("running %s", " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ModelError(
                f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
            )
        found = sorted(Path(tmp).glob("musicnn-*.whl"))
        if not found:
            raise ModelError(f"pip download produced no musicnn wheel in {tmp}: {os.listdir(tmp)}")
        return extract_wheel(found[0], target, checkpoints)
