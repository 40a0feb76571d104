"""Find the music in an extracted package and label each track: soundtrack, title, artist (with its source), license.

Works on a folder only (no apt, no network): the tests build such folders by hand. The steps:

* :func:`find_audio` lists every audio file of a package, plain files and members of ``.pk3`` (zip) archives,
  and sorts them into candidates and skipped files (sound effects, excluded files, files no ``album.json``
  lists), each skip with its reason;
* :func:`parse_dep5` reads a machine-readable ``debian/copyright`` (DEP-5) into paragraphs;
* :func:`label_track` resolves a candidate's labels from, in this order, ``album.json`` author, the ARTIST tag
  (through the package's alias table), a file-name rule of the recipe, the ``debian/copyright`` paragraph when
  it names one holder, the package's one credited composer; every source that said something is kept as
  evidence and a disagreement is reported;
* :func:`slug` and :func:`track_id_for` make the path-safe ids.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import unicodedata
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from research_job.realmusic import RealMusicError
from research_job.realmusic.sources import Recipe

AUDIO_EXTENSIONS = frozenset({"ogg", "oga", "opus", "mp3", "flac", "wav", "m4a", "aac"})
ARCHIVE_EXTENSIONS = frozenset({"pk3"})
MAX_ID_LENGTH = 128
#: order in which sources name a track's artist (the first one present wins)
ARTIST_SOURCES = ("album.json:author", "tag:ARTIST", "filename rule", "debian/copyright", "package composer")

_YEARS = re.compile(r"^(?:\d{4}(?:\s*[-–]\s*\d{4})?[\s,]*)+")
_EMAIL = re.compile(r"<[^>]*>|\S+@\S+")
_URL_PAREN = re.compile(r"\((?:https?://|www\.)[^)]*\)")
_URL = re.compile(r"(?:https?://|www\.)\S+")
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class AlbumEntry:
    """What an ``album.json`` says about one of its tracks."""

    folder: str  # the album's folder name, e.g. aftermath_soundtrack
    album_title: str
    track_no: int  # 1-based position in the album's track list
    title: str | None
    author: str | None


@dataclass(frozen=True)
class Candidate:
    """One audio file of a package that may become a track."""

    package: str
    logical_path: str  # path inside the extracted package; a .pk3 member: <archive path>/<member>
    file: Path  # the file on disk (the archive, for a member)
    member: str | None = None
    album: AlbumEntry | None = None

    @property
    def stem(self) -> str:
        return PurePosixPath(self.logical_path).stem

    @property
    def ext(self) -> str:
        return PurePosixPath(self.logical_path).suffix.lstrip(".").lower()

    def read_bytes(self) -> bytes:
        """The file's bytes, as stored (a .pk3 member is read with :mod:`zipfile`, never extracted to a path)."""
        if self.member is None:
            return self.file.read_bytes()
        with zipfile.ZipFile(self.file) as z:
            return z.read(self.member)


@dataclass(frozen=True)
class Skipped:
    """A file that is not in the corpus, and why."""

    package: str
    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"package": self.package, "path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class CopyrightParagraph:
    """One ``Files:`` paragraph of a DEP-5 ``debian/copyright``."""

    files: tuple[str, ...]
    holders: tuple[str, ...]  # cleaned: no years, e-mail addresses or URLs
    license: str


@dataclass(frozen=True)
class TrackLabel:
    """The labels of one track and where they came from."""

    album_id: str
    title: str
    artist: str | None
    artist_source: str  # one of ARTIST_SOURCES, or 'none'
    license: str
    evidence: Mapping[str, str] = field(default_factory=dict)  # source -> what it said (raw)
    conflicts: tuple[str, ...] = ()  # sources whose artist differs from the chosen one
    unaliased: tuple[str, ...] = ()  # artist-tag values the alias table does not know


# --- ids --------------------------------------------------------------------------------------------------


def slug(text: str) -> str:
    """ASCII, lower case, runs of anything but letters and digits -> ``-``; never empty (``x``)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    s = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return s or "x"


def bounded_id(text: str) -> str:
    """``text`` if it is at most :data:`MAX_ID_LENGTH` characters, else a prefix + 8 hex of its sha256."""
    if len(text) <= MAX_ID_LENGTH:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{text[: MAX_ID_LENGTH - 9].rstrip('-')}-{digest}"


def album_id_for(recipe: Recipe, candidate: Candidate) -> str:
    """The soundtrack id: the recipe's, or ``<recipe soundtrack>-<album folder slug>`` for album.json albums."""
    if candidate.album is not None:
        return bounded_id(f"{recipe.soundtrack}-{slug(candidate.album.folder)}")
    return bounded_id(recipe.soundtrack)


def track_id_for(album_id: str, candidate: Candidate) -> str:
    """``<album_id>-<file stem slug>``, at most :data:`MAX_ID_LENGTH` characters."""
    return bounded_id(f"{album_id}-{slug(candidate.stem)}")


def check_unique_ids(ids: Sequence[tuple[str, str]]) -> None:
    """Raise when two files would get the same track id.

    Args:
        ids: (track_id, logical path) pairs.

    Raises:
        RealMusicError: naming the id and both files.
    """
    seen: dict[str, str] = {}
    for track_id, path in ids:
        if track_id in seen:
            raise RealMusicError(f"Track id {track_id!r} would be given to both {seen[track_id]} and {path}")
        seen[track_id] = path


# --- finding the audio ------------------------------------------------------------------------------------


def _suffix(name: str) -> str:
    return PurePosixPath(name).suffix.lstrip(".").lower()


def _matches(path: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def _list_files(tree: Path, package: str) -> tuple[list[tuple[str, Path, str | None]], list[Skipped]]:
    """(logical path, file, member) of every audio file under ``tree`` (archives opened), and broken archives."""
    found: list[tuple[str, Path, str | None]] = []
    broken: list[Skipped] = []
    for p in sorted(tree.rglob("*")):
        if not p.is_file() or p.is_symlink():
            continue
        rel = p.relative_to(tree).as_posix()
        ext = _suffix(p.name)
        if ext in AUDIO_EXTENSIONS:
            found.append((rel, p, None))
        elif ext in ARCHIVE_EXTENSIONS:
            try:
                with zipfile.ZipFile(p) as z:
                    names = sorted(i.filename for i in z.infolist() if not i.is_dir())
            except (zipfile.BadZipFile, OSError) as exc:
                broken.append(Skipped(package, rel, f"not a readable zip archive: {exc}"))
                continue
            found.extend((f"{rel}/{n}", p, n) for n in names if _suffix(n) in AUDIO_EXTENSIONS)
    return found, broken


def _load_album(folder: Path) -> dict[str, AlbumEntry]:
    """album.json of ``folder``: file name -> entry.

    Raises:
        RealMusicError: the file is not JSON or has no track list.
    """
    path = folder / "album.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        tracks = data["tracks"]
        if not isinstance(tracks, list):
            raise TypeError("'tracks' is not a list")
        out = {}
        for i, t in enumerate(tracks, start=1):
            out[str(t["filename"])] = AlbumEntry(
                folder=folder.name,
                album_title=str(data.get("title") or folder.name),
                track_no=i,
                title=t.get("title"),
                author=t.get("author") or data.get("author"),
            )
        return out
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RealMusicError(f"Unreadable album.json {path}: {exc}") from exc


def find_audio(tree: Path, recipe: Recipe) -> tuple[list[Candidate], list[Skipped]]:
    """Every audio file of the extracted package ``tree``, sorted into candidates and skipped files.

    Raises:
        RealMusicError: ``tree`` is not a folder, or an album.json cannot be read.
    """
    if not tree.is_dir():
        raise RealMusicError(f"Extracted package {recipe.name} not found: {tree} is not a folder")
    files, skipped = _list_files(tree, recipe.name)
    candidates: list[Candidate] = []
    albums: dict[Path, dict[str, AlbumEntry]] = {}
    for rel, path, member in files:
        if not _matches(rel, recipe.music):
            skipped.append(Skipped(recipe.name, rel, recipe.not_music_reason))
            continue
        reason = next((r for p, r in recipe.exclude.items() if fnmatch.fnmatchcase(rel, p)), None)
        if reason is not None:
            skipped.append(Skipped(recipe.name, rel, reason))
            continue
        album = None
        if recipe.albums_json:
            folder = path.parent
            if member is not None or not (folder / "album.json").is_file():
                skipped.append(Skipped(recipe.name, rel, "not part of any album: no album.json lists it"))
                continue
            if folder not in albums:
                albums[folder] = _load_album(folder)
            album = albums[folder].get(path.name)
            if album is None:
                skipped.append(Skipped(recipe.name, rel, f"not listed in {folder.name}/album.json"))
                continue
        candidates.append(Candidate(recipe.name, rel, path, member, album))
    return candidates, skipped


# --- debian/copyright -------------------------------------------------------------------------------------


def _paragraphs(text: str) -> list[dict[str, list[str]]]:
    out: list[dict[str, list[str]]] = []
    current: dict[str, list[str]] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                out.append(current)
            current, key = {}, None
        elif line[0] in " \t":
            if key is not None:
                current[key].append(line.strip())
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            current[key] = [value.strip()] if value.strip() else []
    if current:
        out.append(current)
    return out


def clean_holder(line: str) -> str:
    """A copyright holder without leading years, e-mail addresses and URLs: ``2002 A B <a@b>`` -> ``A B``."""
    s = _YEARS.sub("", line)
    s = _URL_PAREN.sub("", _EMAIL.sub("", s))
    s = _URL.sub("", s)
    return _WS.sub(" ", s).strip(" ,")


def parse_dep5(text: str) -> list[CopyrightParagraph] | None:
    """The ``Files:`` paragraphs of a machine-readable ``debian/copyright``; ``None`` if it is not DEP-5."""
    paras = _paragraphs(text)
    if not paras or "format" not in paras[0]:
        return None
    out = []
    for p in paras:
        if "files" not in p:
            continue
        files = tuple(f for line in p["files"] for f in line.split())
        holders = tuple(h for h in (clean_holder(x) for x in p.get("copyright", [])) if h)
        lic = (p.get("license") or [""])[0]
        out.append(CopyrightParagraph(files, holders, lic))
    return out


def copyright_for(paragraphs: Sequence[CopyrightParagraph], path: str) -> CopyrightParagraph | None:
    """The paragraph covering ``path`` (DEP-5: the last matching one wins)."""
    found = None
    for p in paragraphs:
        if _matches(path, p.files):
            found = p
    return found


def _single_person(holders: Sequence[str]) -> str | None:
    """The one holder, if the paragraph names exactly one person-like holder (no lists, no placeholders)."""
    if len(holders) != 1:
        return None
    h = holders[0]
    if not h or h.casefold() == "no-copyright" or "," in h or "&" in h or " and " in h:
        return None
    return h


# --- labels -----------------------------------------------------------------------------------------------


def _tag_values(tags: Mapping[str, str], key: str) -> list[str]:
    """Values of a tag (FFmpeg joins repeated Vorbis comments with ';'), stripped, blanks dropped."""
    raw = next((v for k, v in tags.items() if k.upper() == key), None)
    if raw is None:
        return []
    return [v.strip() for v in str(raw).split(";") if v.strip()]


def _title_from_stem(stem: str, strip: str) -> str:
    if strip:
        stem = re.sub(f"^(?:{strip})", "", stem)
    words = _WS.sub(" ", re.sub(r"[_\-]+", " ", stem)).strip()
    return (words[:1].upper() + words[1:]) if words else stem


def label_track(
    candidate: Candidate,
    tags: Mapping[str, str],
    recipe: Recipe,
    copyright_paragraphs: Sequence[CopyrightParagraph] | None = None,
) -> TrackLabel:
    """Soundtrack, title, artist and license of one track; see the module docstring for the artist's order."""
    evidence: dict[str, str] = {}
    resolved: dict[str, str] = {}
    unaliased: list[str] = []

    if candidate.album is not None and candidate.album.author:
        evidence["album.json:author"] = resolved["album.json:author"] = str(candidate.album.author).strip()

    values = [v for v in _tag_values(tags, "ARTIST") if v.casefold() not in recipe.ignore_tags]
    if values:
        evidence["tag:ARTIST"] = ";".join(values)
        names = []
        for v in values:
            canonical = recipe.aliases.get(v.casefold())
            if canonical is None:
                unaliased.append(v)
                canonical = v
            if canonical not in names:
                names.append(canonical)
        resolved["tag:ARTIST"] = " & ".join(names)

    name = PurePosixPath(candidate.logical_path).name
    rule = next((a for p, a in recipe.artist_rules if fnmatch.fnmatchcase(name, p)), None)
    if rule is not None:
        evidence["filename rule"] = resolved["filename rule"] = rule

    paragraph = None
    if copyright_paragraphs is not None and recipe.copyright_path is not None:
        installed, source = recipe.copyright_path
        path = candidate.logical_path
        if path.startswith(installed):
            path = source + path[len(installed) :]
        paragraph = copyright_for(copyright_paragraphs, path)
        if paragraph is not None:
            evidence["debian/copyright"] = "; ".join(paragraph.holders)
            person = _single_person(paragraph.holders)
            if person is not None and recipe.artist_from_copyright:
                resolved["debian/copyright"] = recipe.aliases.get(person.casefold(), person)

    if recipe.composer:
        evidence["package composer"] = resolved["package composer"] = recipe.composer

    source = next((s for s in ARTIST_SOURCES if s in resolved), "none")
    artist = resolved.get(source)
    conflicts = tuple(s for s in ARTIST_SOURCES if s in resolved and resolved[s] != artist)

    license_ = next(
        (lic for p, lic in recipe.license_rules if fnmatch.fnmatchcase(candidate.logical_path, p)), ""
    )
    if not license_ and paragraph is not None and paragraph.license:
        license_ = paragraph.license
    license_ = license_ or recipe.license

    title = None
    if candidate.album is not None and candidate.album.title:
        title = str(candidate.album.title).strip()
    elif recipe.tag_titles:
        titles = _tag_values(tags, "TITLE")
        title = titles[0] if len(titles) == 1 else None
    title = title or _title_from_stem(candidate.stem, recipe.title_strip)

    return TrackLabel(
        album_id=album_id_for(recipe, candidate),
        title=title,
        artist=artist,
        artist_source=source,
        license=license_,
        evidence=evidence,
        conflicts=conflicts,
        unaliased=tuple(unaliased),
    )


def read_copyright(tree: Path, package: str) -> list[CopyrightParagraph] | None:
    """The DEP-5 paragraphs of ``usr/share/doc/<package>/copyright`` in ``tree``; ``None`` if absent or not DEP-5."""
    path = tree / "usr" / "share" / "doc" / package / "copyright"
    if not path.is_file():
        return None
    return parse_dep5(path.read_text(encoding="utf-8", errors="replace"))
