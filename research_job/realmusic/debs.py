"""Fetch, verify and extract the pinned ``.deb`` files: the only part of the build that needs apt and dpkg.

Layout of the cache folder::

    debs/<name>_<version>_all.deb          the downloads, kept: a rerun checks their sha256 and downloads nothing
    extracted/<name>_<version>/            ``dpkg -x`` of each; ``.complete.json`` (written last) names the .deb digest

:func:`apt_download` is the one function that touches the network. A file whose sha256 differs from the pin is
refused with :class:`~research_job.realmusic.ChecksumError` naming the package and both digests; a cached file
that fails the check is downloaded once more before that.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from research_job.io.atomic import write_json
from research_job.provenance import sha256_file
from research_job.realmusic import ChecksumError, RealMusicError
from research_job.realmusic.sources import DebPackage

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_MARKER = ".complete.json"


def verify_deb(path: Path, pkg: DebPackage) -> None:
    """Check that ``path`` has ``pkg``'s pinned sha256.

    Raises:
        ChecksumError: naming the package, the file, the expected and the actual digest.
    """
    actual = sha256_file(path)
    if actual != pkg.sha256:
        raise ChecksumError(
            f"{pkg.name} {pkg.version}: sha256 of {path} is {actual}, expected {pkg.sha256}; refusing to use it"
        )


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise RealMusicError(
            f"{cmd[0]} not found: the real-music corpus needs Debian's apt and dpkg"
        ) from exc


def apt_download(pkg: DebPackage, dest_dir: Path) -> Path:
    """``apt-get download name=version`` into ``dest_dir``; returns the downloaded file (not yet verified).

    When apt does not know the version (empty or stale package lists) and this process is root, runs
    ``apt-get update`` once and tries again.

    Raises:
        RealMusicError: apt failed; the message carries apt's last lines.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["apt-get", "download", "-q", f"{pkg.name}={pkg.version}"]
    done = _run(cmd, cwd=dest_dir)
    if done.returncode != 0 and hasattr(os, "geteuid") and os.geteuid() == 0:
        log.info("realmusic: apt-get download %s failed; running apt-get update once", pkg.name)
        _run(["apt-get", "update", "-q"])
        done = _run(cmd, cwd=dest_dir)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise RealMusicError(
            f"apt-get download {pkg.name}={pkg.version} failed (exit {done.returncode}): {tail}. "
            "Run `apt-get update` (as root) and check that Debian 12 (bookworm) main is in the apt sources"
        )
    path = dest_dir / pkg.filename
    if not path.is_file():
        found = sorted(p.name for p in dest_dir.glob(f"{pkg.name}_*.deb"))
        raise RealMusicError(f"apt-get download {pkg.name}={pkg.version} wrote {found}, not {pkg.filename}")
    return path


def ensure_deb(pkg: DebPackage, cache_dir: Path) -> tuple[Path, bool]:
    """The verified ``.deb`` of ``pkg`` in ``cache_dir/debs``, downloaded unless a cached copy verifies.

    Returns ``(path, downloaded)``.

    Raises:
        ChecksumError: the download does not have the pinned sha256 (the file is removed).
        RealMusicError: apt failed.
    """
    debs = cache_dir / "debs"
    path = debs / pkg.filename
    if path.is_file():
        try:
            verify_deb(path, pkg)
            return path, False
        except ChecksumError as exc:
            log.warning("realmusic: cached %s fails its check, downloading again: %s", path.name, exc)
            path.unlink()
    debs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".partial-{pkg.name}-", dir=debs) as tmp:
        got = apt_download(pkg, Path(tmp))
        try:
            verify_deb(got, pkg)
        except ChecksumError:
            got.unlink()
            raise
        os.replace(got, path)
    return path, True


def extract_deb(deb: Path, pkg: DebPackage, cache_dir: Path) -> Path:
    """``dpkg -x`` of a verified ``.deb`` into ``cache_dir/extracted/<name>_<version>``, reused when complete.

    The tree is built in a temporary folder and renamed into place, then marked complete with the digest of
    the ``.deb`` it came from; an incomplete or stale tree is removed and extracted again.

    Raises:
        RealMusicError: dpkg failed.
    """
    root = cache_dir / "extracted"
    dest = root / f"{pkg.name}_{pkg.version}"
    marker = dest / _MARKER
    if marker.is_file():
        with contextlib.suppress(ValueError, OSError):
            if json.loads(marker.read_text()).get("sha256") == pkg.sha256:
                return dest
    if dest.exists():
        shutil.rmtree(dest)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".partial-{pkg.name}-", dir=root))
    try:
        done = _run(["dpkg", "-x", str(deb), str(tmp)])
        if done.returncode != 0:
            raise RealMusicError(f"dpkg -x {deb} failed (exit {done.returncode}): {done.stderr.strip()}")
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_json(marker, {"package": pkg.name, "version": pkg.version, "sha256": pkg.sha256})
    return dest


def fetch_package(pkg: DebPackage, cache_dir: Path) -> tuple[Path, bool]:
    """Download (or reuse), verify and extract one package; returns ``(extracted tree, downloaded)``."""
    deb, downloaded = ensure_deb(pkg, cache_dir)
    return extract_deb(deb, pkg, cache_dir), downloaded
