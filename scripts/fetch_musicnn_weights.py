"""Obtain musicnn's pretrained checkpoints: ``pip download --no-deps musicnn==0.1.0`` and unzip only the checkpoint
folders into the weights dir (``$MUSICNN_WEIGHTS_DIR``, else ``<repo>/.cache/musicnn``).

Usage: ``python scripts/fetch_musicnn_weights.py [--dest DIR] [--checkpoint MSD_musicnn ...] [--wheel FILE]``
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from research_job.errors import ResearchJobError  # noqa: E402
from research_job.models import musicnn_weights  # noqa: E402


@click.command()
@click.option(
    "--dest",
    type=click.Path(file_okay=False),
    default=None,
    help="target folder (default: $MUSICNN_WEIGHTS_DIR or <repo>/.cache/musicnn)",
)
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    type=click.Choice(musicnn_weights.CHECKPOINTS),
    help="checkpoint(s) to unpack (default: all four)",
)
@click.option(
    "--wheel",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="use an already downloaded musicnn-0.1.0 wheel instead of pip download",
)
def main(dest: str | None, checkpoints: tuple[str, ...], wheel: str | None) -> None:
    """Download the musicnn wheel (no dependencies) and unpack its checkpoints."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        folders = musicnn_weights.fetch(dest, checkpoints or musicnn_weights.CHECKPOINTS, wheel)
    except ResearchJobError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    for f in folders:
        click.echo(str(f))


if __name__ == "__main__":
    main()
