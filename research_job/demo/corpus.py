"""Which works of the music21 corpus make up the demo catalogue, and how they are grouped into albums.

The catalogue is planned from file names and file headers only (no score is parsed here), so planning is
instant and deterministic: every list is sorted, and the few seeded choices (which Bach chorales, which
Palestrina masses) use ``random.Random(seed)``.

Albums group naturally: a volume of chorales, the movements of one string quartet, the sections of one mass, one
book of madrigals. Tracks are drawn round-robin over composers, and within a composer round-robin over its albums,
so that a small catalogue still spreads over several albums per composer. One album of anonymous trecento mass
movements has no composer (``NULL`` in the database) to exercise that path downstream.

Composer strings are deliberately messy (``Bach, Johann Sebastian``, ``J.S. BACH ``, decomposed accents, extra
spaces); ``composer_aliases.yaml`` next to this file maps every variant, after standardisation, to one name.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from research_job.errors import ConfigError, unknown_choice

ALIASES_PATH = Path(__file__).with_name("composer_aliases.yaml")
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Composer:
    """A composer of the demo: a short key, the canonical name, and the raw spellings written to the database."""

    key: str
    canonical: str | None
    variants: tuple[str | None, ...]


# Variants are written in rotation to a composer's tracks. Standardisation (NFC, whitespace collapse, case-fold,
# "Last, First" -> "First Last", then composer_aliases.yaml) maps every one of them to ``canonical``.
COMPOSERS: tuple[Composer, ...] = (
    Composer(
        "bach",
        "Johann Sebastian Bach",
        (
            "Bach, Johann Sebastian",
            "Johann Sebastian Bach",
            "J.S. BACH ",
            "  johann   sebastian bach",
            "J. S. Bach",
        ),
    ),
    Composer(
        "palestrina",
        "Giovanni Pierluigi da Palestrina",
        (
            "Palestrina, Giovanni Pierluigi da",
            "Giovanni Pierluigi da Palestrina",
            "PALESTRINA",
            "Palestrina, Giovanni Perluigi da",  # music21's own (misspelt) metadata
        ),
    ),
    Composer(
        "monteverdi",
        "Claudio Monteverdi",
        ("Monteverdi, Claudio", "Claudio Monteverdi", "claudio monteverdi", "C. Monteverdi"),
    ),
    Composer(
        "beethoven",
        "Ludwig van Beethoven",
        (
            "Beethoven, Ludwig van",
            "Ludwig van Beethoven",
            "L. van Beethoven",
            "BEETHOVEN",
            "Ludwig  van Beethoven ",
        ),
    ),
    Composer(
        "mozart",
        "Wolfgang Amadeus Mozart",
        ("Mozart, Wolfgang Amadeus", "W.A. Mozart", "Wolfgang Amadeus Mozart", "W. A. MOZART"),
    ),
    Composer("haydn", "Joseph Haydn", ("Haydn, Joseph", "Franz Joseph Haydn", "Joseph Haydn", "J. Haydn")),
    Composer(
        "schumann-robert",
        "Robert Schumann",
        ("Schumann, Robert", "Robert Schumann", "R. Schumann", "ROBERT SCHUMANN"),
    ),
    Composer(
        "schumann-clara",
        "Clara Schumann",
        ("Schumann, Clara", "Clara Schumann", "Clara Wieck-Schumann", " clara  schumann"),
    ),
    Composer(
        "josquin",
        "Josquin des Prez",
        # the third is "Josquin des Prés" in decomposed (NFD) form: only NFC makes it match the alias
        ("Josquin des Prez", "Josquin Des Prez", "Josquin des Pre\u0301s", "Josquin"),
    ),
    Composer(
        "ciconia",
        "Johannes Ciconia",
        ("Ciconia, Johannes", "Johannes Ciconia", "Johannes  Ciconia", "J. Ciconia", "Jean Ciconia"),
    ),
    Composer(ANONYMOUS, None, (None,)),
)
COMPOSER_KEYS: tuple[str, ...] = tuple(c.key for c in COMPOSERS)


@dataclass(frozen=True)
class Work:
    """One track-to-be: a single movement or piece of the music21 corpus and its place in the catalogue."""

    track_id: str
    album_id: str
    track_no: int
    title: str
    composer_key: str
    corpus_path: str  # relative to the music21 corpus folder, with extension


@dataclass(frozen=True)
class Album:
    """An album: its id, its composer, and its works in track order."""

    album_id: str
    composer_key: str
    works: tuple[Work, ...]


def corpus_root() -> Path:
    """The folder of the corpus that ships with music21 (raises :class:`ConfigError` if music21 is missing)."""
    try:
        import music21
    except ImportError as exc:  # pragma: no cover - music21 is a dependency of the demo extra
        raise ConfigError("The demo corpus needs music21: pip install 'research-job[demo]'") from exc
    return Path(music21.__file__).parent / "corpus"


def slug(text: str) -> str:
    """A safe id fragment: lower case ASCII letters, digits and single hyphens."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not s:
        raise ConfigError(f"Cannot make an id from {text!r}")
    return s


def _album(album_id: str, composer_key: str, items: Iterable[tuple[str, str, str]]) -> Album:
    """Build an album from ``(track_id, title, corpus_path)`` tuples in track order."""
    works = tuple(
        Work(track_id, album_id, i, title, composer_key, path)
        for i, (track_id, title, path) in enumerate(items, start=1)
    )
    return Album(album_id, composer_key, works)


def _existing(root: Path, paths: Iterable[str]) -> list[str]:
    return [p for p in paths if (root / p).is_file()]


def _movements(root: Path, folder: str) -> list[str]:
    """``folder/movementN.mxl`` files sorted by N."""
    found = sorted((root / folder).glob("movement[0-9]*.mxl"), key=lambda p: int(re.sub(r"\D", "", p.stem)))
    return [f"{folder}/{p.name}" for p in found]


_ROMAN = ("I", "II", "III", "IV", "V", "VI")


def _quartet(
    root: Path, composer_key: str, folder: str, album_id: str, work_title: str, prefix: str
) -> Album:
    items = []
    for i, path in enumerate(_movements(root, folder)):
        items.append((f"{prefix}-mvt{i + 1}", f"{work_title}: {_ROMAN[i]}", path))
    return _album(album_id, composer_key, items)


def _bach(root: Path, rng: random.Random) -> list[Album]:
    # The 4-part chorales BWV 253-438 (one file each), four seeded volumes of eight.
    chorales = sorted(
        (
            int(m.group(1))
            for p in (root / "bach").glob("bwv*.mxl")
            if (m := re.fullmatch(r"bwv(\d+)", p.stem))
        ),
    )
    chorales = [n for n in chorales if 253 <= n <= 438]
    chosen = sorted(rng.sample(chorales, min(32, len(chorales))))
    albums = []
    for vol in range(4):
        nums = chosen[vol * 8 : (vol + 1) * 8]
        albums.append(
            _album(
                f"bach-chorales-vol{vol + 1}",
                "bach",
                ((f"bach-bwv{n}", f"Chorale BWV {n}", f"bach/bwv{n}.mxl") for n in nums),
            )
        )
    # The chorales of the Christmas Oratorio, one work.
    xmas = []
    for p in (root / "bach").glob("bwv248.*.mxl"):
        m = re.fullmatch(r"bwv248\.(\d+)-(\d)", p.stem)
        if m:
            xmas.append((int(m.group(1)), p.name))
    items = (
        (f"bach-bwv248-{n:02d}", f"Christmas Oratorio BWV 248: Chorale No. {n}", f"bach/{name}")
        for n, name in sorted(xmas)
    )
    albums.append(_album("bach-christmas-oratorio", "bach", items))
    return albums


_MASS_SECTIONS = (
    ("Kyrie", re.compile(r"Kyrie(_\d+)?(_[a-z])?")),
    ("Gloria", re.compile(r"Gloria(_\d+)?(_[a-z])?")),
    ("Credo", re.compile(r"Credo(_\d+)?(_[a-z])?")),
    ("Sanctus", re.compile(r"Sanctus(_\d+)?(_[a-z])?")),
    ("Agnus Dei", re.compile(r"Agnus(_I)?(_\d+)?(_[a-z])?")),
)


def _humdrum_title(path: Path) -> str | None:
    """The ``!!!OPR`` (parent work) reference record of a Humdrum file's header, if any."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.startswith("!"):
                return None
            if line.startswith("!!!OPR:"):
                return line.split(":", 1)[1].strip() or None
    return None


def _palestrina(root: Path, rng: random.Random) -> list[Album]:
    # File numbers do not identify a mass (Kyrie_06 and Gloria_06 belong to different masses); the Humdrum
    # header does, so masses are grouped by their !!!OPR record.
    masses: dict[str, list[str]] = {}
    for p in sorted((root / "palestrina").glob("*.krn")):
        title = _humdrum_title(p)
        if title:
            masses.setdefault(title, []).append(p.stem)
    complete: list[tuple[str, list[tuple[str, str]]]] = []
    for title in sorted(masses):
        stems = sorted(masses[title])
        sections = []
        for name, pattern in _MASS_SECTIONS:
            hits = [s for s in stems if pattern.fullmatch(s)]
            if hits:
                sections.append((name, hits[0]))
        if len(sections) == len(_MASS_SECTIONS):
            complete.append((title, sections))
    albums = []
    for title, sections in sorted(rng.sample(complete, min(5, len(complete)))):
        album_id = f"palestrina-{slug(title)}"
        items = (
            (f"{album_id}-{slug(name)}", f"{title}: {name}", f"palestrina/{stem}.krn")
            for name, stem in sections
        )
        albums.append(_album(album_id, "palestrina", items))
    return albums


def _monteverdi(root: Path) -> list[Album]:
    albums = []
    for book in (3, 4, 5):
        found = []
        for p in (root / "monteverdi").glob(f"madrigal.{book}.*.mxl"):
            m = re.fullmatch(rf"madrigal\.{book}\.(\d+)", p.stem)  # skips e.g. madrigal.3.1_old
            if m:
                found.append(int(m.group(1)))
        items = (
            (
                f"monteverdi-madrigal-{book}-{n:02d}",
                f"Madrigal Book {book} No. {n}",
                f"monteverdi/madrigal.{book}.{n}.mxl",
            )
            for n in sorted(found)
        )
        albums.append(_album(f"monteverdi-madrigals-book{book}", "monteverdi", items))
    return albums


def _beethoven(root: Path) -> list[Album]:
    albums = [
        _quartet(
            root,
            "beethoven",
            "beethoven/opus18no1",
            "beethoven-quartet-op18-1",
            "String Quartet Op. 18 No. 1",
            "beethoven-op18-1",
        )
    ]
    for n in (1, 2, 3):
        albums.append(
            _quartet(
                root,
                "beethoven",
                f"beethoven/opus59no{n}",
                f"beethoven-quartet-op59-{n}",
                f"String Quartet Op. 59 No. {n}",
                f"beethoven-op59-{n}",
            )
        )
    return albums


def _mozart(root: Path) -> list[Album]:
    return [
        _quartet(
            root, "mozart", f"mozart/k{k}", f"mozart-quartet-k{k}", f"String Quartet K. {k}", f"mozart-k{k}"
        )
        for k in (80, 155, 156, 458)
    ]


def _haydn(root: Path) -> list[Album]:
    return [
        _quartet(
            root,
            "haydn",
            "haydn/opus1no1",
            "haydn-quartet-op1-1",
            "String Quartet Op. 1 No. 1",
            "haydn-op1-1",
        ),
        _quartet(
            root,
            "haydn",
            "haydn/opus74no1",
            "haydn-quartet-op74-1",
            "String Quartet Op. 74 No. 1",
            "haydn-op74-1",
        ),
    ]


def _schumann_robert(root: Path) -> list[Album]:
    return [
        _quartet(
            root,
            "schumann-robert",
            "schumann_robert/opus41no1",
            "schumann-quartet-op41-1",
            "String Quartet Op. 41 No. 1",
            "schumann-op41-1",
        ),
        _album(
            "schumann-dichterliebe",
            "schumann-robert",
            [("schumann-op48-2", "Dichterliebe Op. 48 No. 2", "schumann_robert/opus48no2.mxl")],
        ),
    ]


def _schumann_clara(root: Path) -> list[Album]:
    polonaises = (
        (f"clara-schumann-op1-{n}", f"Polonaise Op. 1 No. {n}", f"schumann_clara/polonaise_op1n{n}.mxl")
        for n in (1, 2, 3, 4)
    )
    return [
        _album("clara-schumann-polonaises-op1", "schumann-clara", polonaises),
        _album(
            "clara-schumann-trio-op17",
            "schumann-clara",
            [("clara-schumann-op17-mvt3", "Piano Trio Op. 17: III", "schumann_clara/opus17/movement3.xml")],
        ),
    ]


def _josquin(root: Path) -> list[Album]:
    chansons = (
        ("milleRegrets", "Mille regrets"),
        ("adieuMesAmours", "Adieu mes amours"),
        ("petiteCamusette", "Petite camusette"),
        ("laPlusDesPlus", "La plus des plus"),
        ("fortunaDunGranTempo", "Fortuna d'un gran tempo"),
    )
    motets = (
        ("laDeplorationDeLaMorteDeJohannesOckeghem", "La deploration de la mort de Johannes Ockeghem"),
        ("oVenusBant", "O Venus bant"),
        ("4vPerIlludAveProlatum", "Per illud ave prolatum"),
    )

    def items(rows: Sequence[tuple[str, str]]) -> list[tuple[str, str, str]]:
        return [(f"josquin-{slug(t)}", t, f"josquin/{stem}.abc") for stem, t in rows]

    return [
        _album("josquin-chansons", "josquin", items(chansons)),
        _album("josquin-motets-and-laments", "josquin", items(motets)),
    ]


def _trecento(root: Path, volume: str) -> list[tuple[int, str, str]]:
    """``(number, title, corpus_path)`` of the trecento files of one PMFC volume, sorted by number."""
    out = []
    for p in (root / "trecento").glob(f"PMFC_{volume}_*"):
        m = re.fullmatch(rf"PMFC_{volume}_(\d+)-(.+)", p.stem)
        if m and p.suffix in {".xml", ".mxl"}:
            out.append((int(m.group(1)), m.group(2).replace("_", " ").strip(), f"trecento/{p.name}"))
    return sorted(out)


def _ciconia(root: Path) -> list[Album]:
    # PMFC volume 24 is Ciconia's works: mass movements (Gloria/Credo) and motets.
    mass: list[tuple[str, str, str]] = []
    motets: list[tuple[str, str, str]] = []
    for n, title, path in _trecento(root, "24"):
        (mass if re.match(r"(Gloria|Credo)", title) else motets).append(
            (f"ciconia-pmfc24-{n:02d}", re.sub(r"\s*Ciconia\s*\d*$", "", title), path)
        )
    motets.append(("ciconia-quod-jactatur", "Quod jactatur", "ciconia/quod_jactatur.xml"))
    return [_album("ciconia-mass-movements", "ciconia", mass), _album("ciconia-motets", "ciconia", motets)]


def _anonymous(root: Path) -> list[Album]:
    glorias = [(n, t, p) for n, t, p in _trecento(root, "13") if t == "Gloria"][:2]
    items = ((f"trecento-pmfc13-{n:02d}", f"Gloria (PMFC 13 No. {n})", p) for n, t, p in glorias)
    return [_album("trecento-anonymous-mass-movements", ANONYMOUS, items)]


def all_albums(seed: int = 0) -> list[Album]:
    """Every candidate album of the demo, composer by composer in :data:`COMPOSERS` order.

    Works whose file is missing from the installed music21 are left out (a different music21 version may
    ship a slightly different corpus); empty albums are dropped.
    """
    return list(_all_albums_cached(seed))


@lru_cache(maxsize=4)
def _all_albums_cached(seed: int) -> tuple[Album, ...]:
    root = corpus_root()
    rng = random.Random(seed)
    albums = (
        _bach(root, rng)
        + _palestrina(root, rng)
        + _monteverdi(root)
        + _beethoven(root)
        + _mozart(root)
        + _haydn(root)
        + _schumann_robert(root)
        + _schumann_clara(root)
        + _josquin(root)
        + _ciconia(root)
        + _anonymous(root)
    )
    out = []
    for album in albums:
        kept = set(_existing(root, (w.corpus_path for w in album.works)))
        works = [w for w in album.works if w.corpus_path in kept]
        if works:
            # renumber so that track numbers stay consecutive when a file is missing
            works = [
                Work(w.track_id, w.album_id, i, w.title, w.composer_key, w.corpus_path)
                for i, w in enumerate(works, 1)
            ]
            out.append(Album(album.album_id, album.composer_key, tuple(works)))
    return tuple(out)


def composer(key: str) -> Composer:
    """The :class:`Composer` of a key; raises :class:`ConfigError` naming the known keys."""
    for c in COMPOSERS:
        if c.key == key:
            return c
    raise ConfigError(unknown_choice("demo composer", key, COMPOSER_KEYS))


def select_works(n_tracks: int, *, seed: int = 0, composers: Sequence[str] | None = None) -> list[Work]:
    """Choose ``n_tracks`` works: round-robin over composers, and within a composer round-robin over albums.

    Albums are always filled from their first track, so a selection holds a prefix of every album it touches
    and track numbers stay consecutive. The result is sorted by ``(composer order, album_id, track_no)``.

    Raises:
        ConfigError: ``n_tracks`` < 1, an unknown composer key, or more tracks than the corpus can give.
    """
    if n_tracks < 1:
        raise ConfigError(f"n_tracks must be >= 1, got {n_tracks}")
    keys = list(COMPOSER_KEYS) if composers is None else [composer(k).key for k in composers]
    albums = all_albums(seed)
    queues: dict[str, list[Work]] = {}
    for key in keys:
        mine = [a.works for a in albums if a.composer_key == key]
        # interleave the composer's albums: first track of each album, then the second of each, ...
        depth = max((len(w) for w in mine), default=0)
        queues[key] = [works[i] for i in range(depth) for works in mine if i < len(works)]
    available = sum(len(q) for q in queues.values())
    if n_tracks > available:
        raise ConfigError(
            f"n_tracks={n_tracks} is more than the {available} works available for composers {keys}"
        )
    chosen: list[Work] = []
    taken = dict.fromkeys(keys, 0)
    while len(chosen) < n_tracks:
        for key in keys:
            if len(chosen) == n_tracks:
                break
            if taken[key] < len(queues[key]):
                chosen.append(queues[key][taken[key]])
                taken[key] += 1
    order = {k: i for i, k in enumerate(COMPOSER_KEYS)}
    return sorted(chosen, key=lambda w: (order[w.composer_key], w.album_id, w.track_no))


def composer_strings(works: Sequence[Work]) -> list[str | None]:
    """The raw composer string written for each work: the composer's variants in rotation, in ``works`` order."""
    seen: dict[str, int] = {}
    out: list[str | None] = []
    for w in works:
        c = composer(w.composer_key)
        j = seen.get(c.key, 0)
        seen[c.key] = j + 1
        out.append(c.variants[j % len(c.variants)])
    return out
