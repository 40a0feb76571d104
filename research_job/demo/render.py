"""Score -> MIDI -> mono waveform, for the demo corpus.

Three stages, each safe against what goes wrong with real scores:

1. :func:`score_to_midi` parses one movement with music21 and writes a MIDI file of only its first measures
   (enough for the clip): converting a whole quartet movement takes music21 many seconds.
2. :func:`clean_midi` loads that MIDI with pretty_midi, drops zero- and negative-length notes (pretty_midi
   writes their note-off *before* the note-on, and FluidSynth 2.3 then holds the note for ever: one such file
   once rendered to 16 GB), cuts the notes at the clip length, and in ``piano`` rendering puts every part on an
   acoustic grand piano so that instrumentation cannot leak the composer.
3. :func:`render_waveform` synthesises it: FluidSynth with a General MIDI soundfont when both are installed
   (``apt-get install fluidsynth fluid-soundfont-gm``), else a small additive synthesiser in numpy. FluidSynth
   runs as a subprocess with a wall-clock timeout and a cap on its output size; both raise :class:`RenderError`
   naming the work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from research_job.demo import RenderError
from research_job.errors import ConfigError, unknown_choice
from research_job.io.atomic import write_bytes

if TYPE_CHECKING:
    import pretty_midi

RENDERINGS: tuple[str, ...] = ("ensemble", "piano")
SYNTHS: tuple[str, ...] = ("auto", "fluidsynth", "additive")
#: Notes shorter than this (seconds) are dropped: zero-length notes make FluidSynth hang.
MIN_NOTE_SEC = 1e-3
#: Silence kept after the last note (release and reverb), seconds.
TAIL_SEC = 0.5
#: Peak level of a rendered waveform.
PEAK = 0.89
#: Soundfonts looked for, in order, when ``DEMO_SOUNDFONT`` is not set (Debian's fluid-soundfont-gm).
SOUNDFONT_CANDIDATES: tuple[str, ...] = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)


# ---------------------------------------------------------------------------------------------------------- score


def _quarters_for_seconds(score: object, seconds: float) -> float:
    """The score offset (in quarter notes) at which ``seconds`` of playback have elapsed, using its tempo marks."""
    elapsed = 0.0
    for start, end, mark in score.metronomeMarkBoundaries():  # type: ignore[attr-defined]
        qpm = mark.getQuarterBPM() or 120.0
        span = (end - start) * 60.0 / qpm
        if elapsed + span >= seconds:
            return float(start + (seconds - elapsed) * qpm / 60.0)
        elapsed += span
    return float(score.highestTime)  # type: ignore[attr-defined]


def _without_repeats(score: Any) -> Any:
    """A copy of ``score`` with repeat barlines, repeat brackets and jump marks (D.C., segno, ...) removed."""
    from music21 import bar, repeat, spanner, stream

    out = score.coreCopy() if hasattr(score, "coreCopy") else score.__deepcopy__()
    for m in out.recurse().getElementsByClass(stream.Measure):
        if isinstance(m.leftBarline, bar.Repeat):
            m.leftBarline = None
        if isinstance(m.rightBarline, bar.Repeat):
            m.rightBarline = bar.Barline("regular")
    for el in list(out.recurse().getElementsByClass((repeat.RepeatExpression, spanner.RepeatBracket))):
        site = el.activeSite
        if site is not None:
            site.remove(el)
    return out


def score_to_midi(
    score_path: str | os.PathLike[str], midi_path: str | os.PathLike[str], *, clip_sec: float
) -> None:
    """Parse one score file with music21 and atomically write the MIDI of (at least) its first ``clip_sec``.

    An ``Opus`` (ABC files that store each voice as a tune) is merged into one score. The score is cut at the
    end of the measure that contains the clip end (plus 2 s), so that the MIDI conversion stays fast.

    Raises:
        RenderError: the file cannot be parsed or converted (the message names the file).
    """
    from music21 import converter, stream
    from music21.midi.translate import music21ObjectToMidiFile

    try:
        score: Any = converter.parse(str(score_path))
        if isinstance(score, stream.Opus):
            score = score.mergeScores()
        attempts = [score]
        cut = _quarters_for_seconds(score, clip_sec + 2.0)
        if cut < score.highestTime:
            first_part = score.parts[0] if score.parts else score
            measures = list(first_part.getElementsByClass(stream.Measure))
            last = next((m.number for m in measures if m.offset + m.quarterLength >= cut), None)
            if last is not None and measures:
                short = score.measures(measures[0].number, last)
                # cutting can orphan a repeat sign; then play the cut without repeats, then the whole score
                attempts = [short, _without_repeats(short), score]
        for i, candidate in enumerate(attempts):
            try:
                data = music21ObjectToMidiFile(candidate).writestr()
                break
            except Exception:
                if i == len(attempts) - 1:
                    raise
    except Exception as exc:  # music21 raises many unrelated types on odd scores
        raise RenderError(
            f"Cannot convert score {str(score_path)!r} to MIDI: {type(exc).__name__}: {exc}"
        ) from exc
    write_bytes(midi_path, data)


# ----------------------------------------------------------------------------------------------------------- midi


def drop_degenerate_notes(pm: pretty_midi.PrettyMIDI, *, min_note_sec: float = MIN_NOTE_SEC) -> int:
    """Remove notes whose duration is below ``min_note_sec`` (zero or negative length); return how many."""
    dropped = 0
    for inst in pm.instruments:
        kept = [n for n in inst.notes if n.end - n.start >= min_note_sec]
        dropped += len(inst.notes) - len(kept)
        inst.notes = kept
    return dropped


def clean_midi(
    pm: pretty_midi.PrettyMIDI, *, clip_sec: float, rendering: str
) -> tuple[pretty_midi.PrettyMIDI, int]:
    """Make a MIDI safe and short for rendering: drop degenerate notes, skip leading silence, cut at ``clip_sec``.

    ``rendering="piano"`` puts every part on program 0 (acoustic grand piano); ``"ensemble"`` keeps the
    programs music21 wrote from the score's instruments (piano where the score names none). Drum tracks become
    pitched tracks, the demo has none. Returns the cleaned MIDI (the same object) and the number of notes dropped
    for being zero/negative length.

    Raises:
        ConfigError: unknown ``rendering`` or a non-positive ``clip_sec``.
    """
    if rendering not in RENDERINGS:
        raise ConfigError(unknown_choice("rendering", rendering, RENDERINGS))
    if not clip_sec > 0:
        raise ConfigError(f"clip length must be > 0 seconds, got {clip_sec}")
    dropped = drop_degenerate_notes(pm)
    starts = [n.start for inst in pm.instruments for n in inst.notes]
    shift = min(starts) if starts else 0.0
    for inst in pm.instruments:
        notes = []
        for n in inst.notes:
            n.start -= shift
            n.end = min(n.end - shift, clip_sec)
            if n.start < clip_sec and n.end - n.start >= MIN_NOTE_SEC:
                notes.append(n)
        inst.notes = notes
        # control changes / bends after the clip would only lengthen the file
        inst.control_changes = [c for c in inst.control_changes if c.time < shift + clip_sec]
        for c in inst.control_changes:
            c.time = max(0.0, c.time - shift)  # settings made before the first note still apply at 0
        inst.pitch_bends = []
        inst.is_drum = False
        if rendering == "piano":
            inst.program = 0
    pm.instruments = [inst for inst in pm.instruments if inst.notes]
    return pm, dropped


def notes_end(pm: pretty_midi.PrettyMIDI) -> float:
    """End time (seconds) of the last note, 0 for an empty MIDI."""
    return max((n.end for inst in pm.instruments for n in inst.notes), default=0.0)


# --------------------------------------------------------------------------------------------------------- synths


def find_soundfont() -> Path | None:
    """The General MIDI soundfont to use: ``$DEMO_SOUNDFONT`` if set, else the first of the Debian paths."""
    env = os.environ.get("DEMO_SOUNDFONT")
    if env:
        return Path(env) if Path(env).is_file() else None
    for cand in SOUNDFONT_CANDIDATES:
        if Path(cand).is_file():
            return Path(cand)
    return None


def fluidsynth_available() -> bool:
    """True when the ``fluidsynth`` program and a General MIDI soundfont are both installed."""
    return shutil.which("fluidsynth") is not None and find_soundfont() is not None


def resolve_synth(synth: str) -> str:
    """Turn ``auto`` into ``fluidsynth`` or ``additive``; check an explicit choice is usable.

    Raises:
        ConfigError: unknown synth, or ``fluidsynth`` asked for but not installed (with the apt line).
    """
    if synth not in SYNTHS:
        raise ConfigError(unknown_choice("synth", synth, SYNTHS))
    if synth == "auto":
        return "fluidsynth" if fluidsynth_available() else "additive"
    if synth == "fluidsynth" and not fluidsynth_available():
        raise ConfigError(
            "synth 'fluidsynth' needs the fluidsynth program and a GM soundfont: "
            "apt-get install -y --no-install-recommends fluidsynth fluid-soundfont-gm (or set DEMO_SOUNDFONT)"
        )
    return synth


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        rate, chans, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
        raw = w.readframes(n)
    if width != 2:
        raise RenderError(f"Unexpected FluidSynth output sample width {width} in {path}")
    x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    return x.reshape(-1, chans).mean(axis=1), rate


def render_fluidsynth(
    pm: pretty_midi.PrettyMIDI,
    *,
    sample_rate: int,
    work: str,
    timeout_s: float = 60.0,
    max_bytes: int | None = None,
    soundfont: str | os.PathLike[str] | None = None,
    executable: str = "fluidsynth",
) -> np.ndarray:
    """Render with the FluidSynth program; return a mono float32 waveform.

    The subprocess is killed when it runs past ``timeout_s`` seconds or its WAV output grows past
    ``max_bytes`` (default: 4x the expected size), so a stuck note can never fill the disk.

    Raises:
        RenderError: timeout, runaway output, non-zero exit, or missing program/soundfont; names ``work``.
    """
    sf = Path(soundfont) if soundfont else find_soundfont()
    if sf is None or not sf.is_file():
        raise RenderError(
            f"No General MIDI soundfont to render {work!r} (set DEMO_SOUNDFONT or install fluid-soundfont-gm)"
        )
    exe = shutil.which(executable)
    if exe is None:
        raise RenderError(f"FluidSynth program {executable!r} not found to render {work!r}")
    expected = int((notes_end(pm) + 5.0) * sample_rate * 2 * 2) + 1_000_000
    cap = max_bytes if max_bytes is not None else 4 * expected
    with tempfile.TemporaryDirectory(prefix="demo-render-") as tmp:
        mid, out = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        pm.write(str(mid))
        cmd = [exe, "-n", "-i", "-q", "-C", "0", "-g", "0.6", "-r", str(sample_rate)]
        cmd += ["-T", "wav", "-O", "s16", "-F", str(out), str(sf), str(mid)]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while True:
                try:
                    proc.wait(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if time.monotonic() - t0 > timeout_s:
                    raise RenderError(f"FluidSynth timed out after {timeout_s:g} s rendering {work!r}")
                size = out.stat().st_size if out.exists() else 0
                if size > cap:
                    raise RenderError(
                        f"FluidSynth output for {work!r} grew past {cap} bytes (a stuck note?); stopped"
                    )
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            if proc.stderr:
                proc.stderr.close()
        if proc.returncode != 0 or not out.exists():
            raise RenderError(f"FluidSynth failed on {work!r} (exit {proc.returncode}): {err.strip()[-300:]}")
        mono, rate = _read_wav(out)
    if rate != sample_rate:
        raise RenderError(f"FluidSynth rendered {work!r} at {rate} Hz, asked for {sample_rate} Hz")
    return mono


def _timbre(program: int) -> tuple[Sequence[float], float, float, float]:
    """(harmonic amplitudes, attack s, decay time constant s or 0 for sustained, vibrato depth) of a GM program."""
    family = program // 8
    if family in (0, 1):  # pianos, chromatic percussion: struck and decaying
        return (1.0, 0.45, 0.25, 0.12, 0.06, 0.03), 0.005, 0.9, 0.0
    if family == 2:  # organs
        return (1.0, 0.6, 0.35, 0.25, 0.15, 0.1), 0.02, 0.0, 0.0
    if family in (5, 6):  # strings, ensembles (incl. choir): bowed/sung, sustained, vibrato
        return (1.0, 0.5, 0.33, 0.25, 0.2, 0.16, 0.14), 0.06, 0.0, 0.004
    return (1.0, 0.4, 0.2, 0.1), 0.03, 0.0, 0.002


def render_additive(pm: pretty_midi.PrettyMIDI, *, sample_rate: int) -> np.ndarray:
    """A small additive synthesiser: a few harmonics per note with an attack/decay envelope by GM family.

    Deterministic and dependency-free; the fallback when FluidSynth is not installed.
    """
    total = int(np.ceil((notes_end(pm) + TAIL_SEC) * sample_rate)) + 1
    out = np.zeros(total, dtype=np.float64)
    release = 0.08
    for inst in pm.instruments:
        harmonics, attack, decay, vibrato = _timbre(inst.program)
        for n in inst.notes:
            f0 = 440.0 * 2.0 ** ((n.pitch - 69) / 12.0)
            i0 = int(round(n.start * sample_rate))
            length = int(round((n.end - n.start + release) * sample_rate))
            if length <= 0 or i0 >= total:
                continue
            length = min(length, total - i0)
            t = np.arange(length) / sample_rate
            phase = 2 * np.pi * f0 * t
            if vibrato:
                phase += (vibrato * f0 / 5.0) * np.sin(2 * np.pi * 5.0 * t)
            wave_ = np.zeros(length)
            for k, amp in enumerate(harmonics, start=1):
                if k * f0 >= sample_rate / 2:
                    break
                wave_ += amp * np.sin(k * phase)
            env = np.minimum(1.0, t / attack)
            if decay:
                env *= np.exp(-t / decay)
            held = n.end - n.start
            env *= np.clip(1.0 - (t - held) / release, 0.0, 1.0)
            out[i0 : i0 + length] += (n.velocity / 127.0) * env * wave_
    return out.astype(np.float32)


def render_waveform(
    pm: pretty_midi.PrettyMIDI,
    *,
    synth: str,
    sample_rate: int,
    clip_sec: float,
    work: str,
    timeout_s: float = 60.0,
) -> np.ndarray:
    """Render a cleaned MIDI to a mono float32 waveform of ``min(last note end, clip_sec) + TAIL_SEC`` seconds.

    The level is normalised to a peak of :data:`PEAK` and the last 0.25 s fade out.

    Raises:
        RenderError: nothing to play, silence, or a FluidSynth failure; the message names ``work``.
    """
    kind = resolve_synth(synth)
    end = notes_end(pm)
    if end <= 0:
        raise RenderError(f"{work!r} has no notes to render in its first {clip_sec:g} s")
    if kind == "fluidsynth":
        mono = render_fluidsynth(pm, sample_rate=sample_rate, work=work, timeout_s=timeout_s)
    else:
        mono = render_additive(pm, sample_rate=sample_rate)
    n = int(round((min(end, clip_sec) + TAIL_SEC) * sample_rate))
    if mono.size < n:
        mono = np.pad(mono, (0, n - mono.size))
    mono = np.asarray(mono[:n], dtype=np.float32)
    fade = min(n, int(0.25 * sample_rate))
    mono[n - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    if peak < 1e-4:
        raise RenderError(f"{work!r} rendered to silence (peak {peak:.2e}) with synth {kind!r}")
    return (mono * (PEAK / peak)).astype(np.float32)
