"""The embedded demo catalogue: real compositions from music21's corpus rendered to real audio in several codecs.

:func:`research_job.demo.build.build_demo_corpus` writes a SQLite catalogue (one ``tracks`` table) and a local
object store laid out like an S3 bucket, so that ``make demo`` runs the whole pipeline with no cloud account.
Modules: ``corpus`` (which works, albums, composer spellings), ``render`` (score -> MIDI -> waveform),
``encode`` (waveform -> m4a/mp3/ogg/flac/wav bytes), ``build`` (the catalogue, the store, the cache).
"""

from __future__ import annotations

from research_job.errors import ResearchJobError


class DemoCorpusError(ResearchJobError):
    """The demo corpus cannot be built (no work rendered, a bad option, a broken cache)."""


class RenderError(DemoCorpusError):
    """One work cannot be turned into audio (parse failure, timeout, runaway output, silence). Names the work."""
