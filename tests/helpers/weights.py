"""A weights folder of a test's own: the shared musicnn checkpoint linked in, so whatever a test exports or
installs beside the weights (ONNX files, int8 files and their records) stays in the test's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from research_job.errors import ModelError
from research_job.models import musicnn_weights


def linked_weights(root: Path, checkpoint: str = "MSD_musicnn") -> Path:
    """``root`` with ``<checkpoint>/`` linked to the real checkpoint folder (skips the test when the weights are
    not fetched); returns ``root``, for ``weights_dir=``."""
    try:
        _, files = musicnn_weights.checkpoint_files(checkpoint)
    except ModelError as exc:
        pytest.skip(f"musicnn weights missing ({exc})")
    root.mkdir(parents=True, exist_ok=True)
    (root / checkpoint).symlink_to(Path(files[0]).resolve().parent, target_is_directory=True)
    return root
