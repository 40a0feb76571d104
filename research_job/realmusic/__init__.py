"""The real-music development corpus: recorded game soundtracks from seven pinned Debian packages.

:func:`research_job.realmusic.build.build_realmusic_corpus` fetches the packages (``apt-get download``, sha256
checked, ``dpkg -x``), finds every audio file in them (plain files and members of ``.pk3`` zip archives), labels
each track with its soundtrack and artist, and writes the same SQLite ``tracks`` table and local object store as
the demo corpus, plus a ``labels`` table saying where each label came from. Modules: ``sources`` (the pinned
packages and what is known about each), ``debs`` (download, verify, extract), ``scan`` (audio files, tags,
``album.json``, ``debian/copyright``, labels and ids), ``build`` (probe, store, catalogue, report, CLI).
"""

from __future__ import annotations

from research_job.errors import ResearchJobError


class RealMusicError(ResearchJobError):
    """The real-music corpus cannot be built (apt or dpkg failed, an id collides, nothing usable was found)."""


class ChecksumError(RealMusicError):
    """A downloaded or cached ``.deb`` does not have its pinned sha256. Names the package and both digests."""
