"""The seven pinned Debian packages of the real-music corpus, and what is known about the music in each.

Versions and sha256 digests are those of Debian 12 (bookworm) as ``apt-cache show <pkg>`` reports them; a
download with any other digest is refused. Each :class:`Recipe` says where a package keeps its music, which
audio files are not music, how tag spellings map to one artist name, and which artist made which file where
neither the tags nor ``debian/copyright`` say it per file. Every such rule names its evidence, and the build
records for every track which source gave its artist (``labels.artist_source``).

Artist names are written the way ``debian/copyright`` (or ``album.json``) writes them, without e-mail addresses
and URLs, and never with a comma: the export step reads ``Last, First`` as a name to reorder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DebPackage:
    """One pinned ``.deb``: ``apt-get download name=version`` must give a file with this sha256."""

    name: str
    version: str
    sha256: str
    size: int

    @property
    def filename(self) -> str:
        """The file name ``apt-get download`` writes (an epoch's ``:`` is written ``%3a``)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_all.deb"


@dataclass(frozen=True)
class Recipe:
    """How to read one package's music. Patterns are :func:`fnmatch.fnmatchcase` patterns (``*`` crosses ``/``).

    A *logical path* is a file's path inside the extracted package (``usr/share/...``); a member of a ``.pk3``
    archive gets the archive's path followed by the member name (``.../0music.pk3/music/x.ogg``).
    """

    package: DebPackage
    #: album_id of every track (packages whose albums come from ``album.json`` prefix it to the album's folder)
    soundtrack: str
    #: logical paths of music files; any other audio file in the package is skipped with ``not_music_reason``
    music: tuple[str, ...]
    not_music_reason: str = "not in the package's music folder"
    #: logical-path pattern -> why that music file is left out
    exclude: Mapping[str, str] = field(default_factory=dict)
    #: albums are folders holding an ``album.json`` (title, author, tracks[{filename, title, author}])
    albums_json: bool = False
    #: (installed prefix, source prefix): logical path -> the path ``debian/copyright`` uses for the file
    copyright_path: tuple[str, str] | None = None
    #: take the artist from the ``debian/copyright`` paragraph covering the file when it names one holder
    artist_from_copyright: bool = False
    #: the one composer the package credits as a whole (used when nothing names the track's artist)
    composer: str | None = None
    composer_evidence: str = ""
    #: casefolded artist-tag value -> canonical artist
    aliases: Mapping[str, str] = field(default_factory=dict)
    #: casefolded artist-tag values that name nobody
    ignore_tags: frozenset[str] = frozenset()
    #: (file-name pattern, artist): who made the file, where tags and copyright do not say it per file
    artist_rules: tuple[tuple[str, str], ...] = ()
    artist_rules_evidence: str = ""
    #: license of every track unless ``debian/copyright`` or a ``license_rules`` pattern says otherwise
    license: str = ""
    license_rules: tuple[tuple[str, str], ...] = ()
    #: use a single-valued TITLE tag as the title (else the file name)
    tag_titles: bool = True
    #: regular expression removed from the start of a file stem before it becomes a title
    title_strip: str = ""

    @property
    def name(self) -> str:
        return self.package.name


PACKAGES: dict[str, DebPackage] = {
    p.name: p
    for p in (
        DebPackage(
            "asc-music", "1.3-6", "369f2d396adb8db9003ef73b797d529e284a7764a5ff4b59a50a4c8b9294da5f", 10317876
        ),
        DebPackage(
            "hyperrogue-music",
            "12.0q-1",
            "61ab9f4c2169442d85f42c42d26e80c1a18b93c741f3d44f1b9d83015904e7f7",
            63836788,
        ),
        DebPackage(
            "nexuiz-music",
            "2.5.2-12",
            "d1a7d6e2c0a5bbe6670dbf73354e38f742597310d425e373250fc71a636f8dda",
            84012080,
        ),
        DebPackage(
            "planetblupi-music-ogg",
            "1.14.2-3",
            "7d89a6d00b43cdb601e35256ab1a62814d203b5922cfed6a0e73e98486e82fa6",
            60112692,
        ),
        DebPackage(
            "singularity-music",
            "007-2",
            "139ba1e408eeb0a72f1fff3760ca46558b9f81bed97dc8c0efa108c4007f4845",
            51636048,
        ),
        DebPackage(
            "ufoai-music",
            "2.5-2",
            "2465d55e9dce75a3a2a1ad1c8ca67da84e251c04e0965d63a8562b2d9f76f9e6",
            210239176,
        ),
        DebPackage(
            "warzone2100-music",
            "4.3.3-3",
            "d3b2c9f90ea5438d45d4aff18339a03ec808e1affa9dac91f7dad61cb15ee64e",
            85730052,
        ),
    )
}

_CRYSTAN = 'Christian "Crystan" Hoffmann'
_VANETHIAN = 'Manuel "Vanethian" Marino'
_ELYSIS = 'Gerd "elysis" Raudenbusch'
_MEOBLAST = 'Braden "meoblast001" Walters'

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            PACKAGES["asc-music"],
            soundtrack="asc",
            music=("usr/share/games/asc/music/*",),
            copyright_path=("usr/share/games/asc/music/", ""),
            artist_from_copyright=True,
            composer="Michael Kievernagel",
            composer_evidence="debian/copyright: 'Files: * / Copyright: 2002 Michael Kievernagel'",
            license="GPL-2+",
        ),
        Recipe(
            PACKAGES["hyperrogue-music"],
            soundtrack="hyperrogue",
            music=("usr/share/hyperrogue/music/*",),
            not_music_reason="sound effect (usr/share/hyperrogue/sounds/), not music",
            copyright_path=("usr/share/hyperrogue/", ""),
            artist_from_copyright=True,
            # the hr3-* files are tagged ARTIST=NeonCorridor; debian/copyright credits exactly those eleven
            # files to Shawn Parrotte, whose project name that is
            aliases={"neoncorridor": "Shawn Parrotte", "will savino": "Will Savino"},
            license="CC-BY-SA-3.0",
            # TITLE tags accumulate the titles of earlier files ("Living Caves;Crossroads;Desert;...")
            tag_titles=False,
            title_strip=r"hr3?-(savino-|domina-)?",
        ),
        Recipe(
            PACKAGES["nexuiz-music"],
            soundtrack="nexuiz",
            music=("*/music.pk3/sound/cdtracks/*",),
            exclude={
                "*/cdtracks/thunder.ogg": "sound effect, not music: four thunder claps, each decaying into "
                "digital silence (11,025 Hz, no tags)",
            },
            aliases={
                "gerd (elysis) raudenbusch": _ELYSIS,
                "elysis": _ELYSIS,
                "www.elysis.de": _ELYSIS,
                "braden walters": _MEOBLAST,
                'braden "meoblast001" walters': _MEOBLAST,
                "blkrbt": "blkrbt",
                "parapraxis": "Parapraxis",
            },
            # debian/copyright names the game (Alientrap, Lee Vermeulen) and GPL-2+, no composer
            license="GPL-2+",
        ),
        Recipe(
            PACKAGES["planetblupi-music-ogg"],
            soundtrack="planetblupi",
            music=("usr/share/planetblupi/music/*",),
            # debian/copyright credits the whole game (Mathieu Schroeter; Daniel Roux, EPSITEC SA & Denis
            # Dumoulin) and no composer; the files carry no tags: the artist stays unknown (NULL)
            license="GPL-3+",
        ),
        Recipe(
            PACKAGES["singularity-music"],
            soundtrack="singularity",
            music=("usr/share/games/singularity/music/*",),
            composer="Max McCracken",
            composer_evidence="debian/copyright: 'Upstream Authors: Max McCracken'; README: 'Thanks to Max "
            "McCracken for providing these tunes'",
            aliases={"maxstack": "Max McCracken"},
            license="CC-BY-SA-3.0",
        ),
        Recipe(
            PACKAGES["ufoai-music"],
            soundtrack="ufoai",
            music=("*/0music.pk3/music/*",),
            exclude={
                "*/music/dynamictest-*": "a dynamic-music test excerpt, not a track (the name gives "
                "the cut: 'battle-41-74sec', 'normal-08-35sec')",
            },
            copyright_path=("usr/share/games/ufoai/base/0music.pk3/", "base/"),
            aliases={
                'christian "crystan" hoffmann': _CRYSTAN,
                "www.indiedb.com/members/crystan": _CRYSTAN,
                "manuel 'vanethian' marino": _VANETHIAN,
                "karl macklin": "Karl Macklin",
                "paulb": "Paul Bee",
                "sebastian ahlen": "Sebastian Ahlen",
            },
            ignore_tags=frozenset({"<unknown>"}),
            artist_rules=(
                ("Crystan-*", _CRYSTAN),
                ("David0*", "David Reeves (Destructavator)"),
                ("Marine*", '"Marine" Baklund'),
                ("Psymong*", "Simon Green (Psymong)"),
                ("van_*", _VANETHIAN),
                ("karlmacklin_*", "Karl Macklin"),
                ("azrael1.ogg", "azrael1322"),
                ("TheThings-Slippycurb.ogg", "Slippycurb"),
                ("AlexFightmare.ogg", "Alex Parker"),
                ("ufo[12].ogg", "Paul Bee"),
            ),
            artist_rules_evidence="debian/copyright paragraphs list several holders per group of files; "
            "each rule pairs a file-name prefix with the holder of that name in the paragraph covering it "
            "(AlexFightmare: the one 'Alex' there; ufo1/ufo2: tagged 'paulb', paragraph lists Paul Bee)",
            license="GPL-2+",
        ),
        Recipe(
            PACKAGES["warzone2100-music"],
            soundtrack="warzone2100",
            music=("usr/share/games/warzone2100/music/*",),
            albums_json=True,
            license="GPL-2+",
            license_rules=(
                (
                    "*/albums/aftermath_soundtrack/track3_enhanced.opus",
                    "GPL-2+ (derived from Martin Severn's "
                    "original_soundtrack/track3, albums/aftermath_soundtrack/license.txt)",
                ),
                ("*/albums/aftermath_soundtrack/*", "CC-BY-SA-3.0+ or GPL-2+ (album license.txt)"),
                ("*/albums/legacy_soundtrack/*", "CC-BY-SA-3.0+ or GPL-2+ (album license.txt)"),
            ),
        ),
    )
}
