"""Make the teaching demo's spoken stories: ``assets/demo/<story>.{flac,TextGrid}`` + ``stories.json``.

Six public-domain Aesop fables (G. F. Townsend's 1867 translation) are spoken with
espeak-ng, one word at a time, so every word's onset and offset is exact by construction:

1. each word is synthesised on its own (``espeak-ng -w``, 22050 Hz), its leading and
   trailing silence is trimmed with one fixed rule (samples below -40 dB of the word's
   peak, keeping a 5 ms margin), it is resampled to 16 kHz and given 3 ms fades;
2. the pieces are concatenated with fixed pauses (between words, after a comma, after a
   sentence), counted in samples at 16 kHz, so a word's onset is the running sample count
   divided by 16000 and its offset adds the piece's length;
3. every phrase (the words up to a comma or a sentence end) gets its own loudness, drawn
   once from a fixed per-story seed (uniform in [-10, 0] dB), so the sound level varies
   within a story as a narrator's does, independently of the word rate;
4. the audio is written as 16-bit FLAC (16 kHz mono), the TextGrid has a ``words`` tier
   (LeBel style: lower-case words, ``sp`` for pauses) and a coarse ``phones`` tier (one
   interval per word holding espeak's phoneme string for it, ``sp`` for pauses).

Re-run it with ``python tools/make_demo_stimuli.py`` (needs the espeak-ng program; the
outputs are committed, so users never need it). The output is deterministic for a given
espeak-ng version.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from encoding_core.common.errors import EncodingCoreError, InputError  # noqa: E402
from encoding_core.common.storage import atomic_output, atomic_write_text  # noqa: E402
from encoding_core.assembly.textgrid import write_textgrid  # noqa: E402

logger = logging.getLogger("make_demo_stimuli")

SAMPLE_RATE = 16000
ESPEAK_RATE = 22050
TRIM_TOP_DB = 40.0
TRIM_MARGIN_S = 0.005
FADE_S = 0.003
LEADING_SILENCE_S = 0.5
TRAILING_SILENCE_S = 1.0
WORD_GAP_S = 0.04
CLAUSE_PAUSE_S = 0.22
SENTENCE_PAUSE_S = 0.45
TITLE_PAUSE_S = 0.8
PEAK_LEVEL = 0.8
PHRASE_GAIN_RANGE_DB = (-10.0, 0.0)

SOURCE = ("Aesop's Fables, translated by George Fyler Townsend (London: George Routledge "
          "and Sons, 1867); public domain (Project Gutenberg eBook #21).")


@dataclass(frozen=True)
class StorySpec:
    """One fable: file stem, title, Townsend's text, and espeak-ng voice settings."""

    name: str
    title: str
    text: str
    voice: str
    speed_wpm: int
    pitch: int


STORIES: tuple[StorySpec, ...] = (
    StorySpec(
        name="wolf_and_lamb", title="The Wolf and the Lamb", voice="en-us", speed_wpm=155, pitch=45,
        text=("A Wolf, meeting with a Lamb astray from the fold, resolved not to lay violent hands on "
              "him, but to find some plea to justify to the Lamb the Wolf's right to eat him. He thus "
              "addressed him: \"Sirrah, last year you grossly insulted me.\" \"Indeed,\" bleated the "
              "Lamb in a mournful tone of voice, \"I was not then born.\" Then said the Wolf, \"You feed "
              "in my pasture.\" \"No, good sir,\" replied the Lamb, \"I have not yet tasted grass.\" "
              "Again said the Wolf, \"You drink of my well.\" \"No,\" exclaimed the Lamb, \"I never yet "
              "drank water, for as yet my mother's milk is both food and drink to me.\" Upon which the "
              "Wolf seized him and ate him up, saying, \"Well! I won't remain supperless, even though "
              "you refute every one of my imputations.\" The tyrant will always find a pretext for his "
              "tyranny.")),
    StorySpec(
        name="lion_and_mouse", title="The Lion and the Mouse", voice="en-gb", speed_wpm=135, pitch=55,
        text=("A Lion was awakened from sleep by a Mouse running over his face. Rising up angrily, he "
              "caught him and was about to kill him, when the Mouse piteously entreated, saying: \"If "
              "you would only spare my life, I would be sure to repay your kindness.\" The Lion laughed "
              "and let him go. It happened shortly after this that the Lion was caught by some hunters, "
              "who bound him by strong ropes to the ground. The Mouse, recognizing his roar, came, "
              "gnawed the rope with his teeth, and set him free, exclaiming: \"You ridiculed the idea "
              "of my ever being able to help you, expecting to receive from me any repayment of your "
              "favor; now you know that it is possible for even a Mouse to confer benefits on a "
              "Lion.\"")),
    StorySpec(
        name="hare_and_tortoise", title="The Hare and the Tortoise", voice="en-us", speed_wpm=135, pitch=60,
        text=("A Hare one day ridiculed the short feet and slow pace of the Tortoise, who replied, "
              "laughing: \"Though you be swift as the wind, I will beat you in a race.\" The Hare, "
              "believing her assertion to be simply impossible, assented to the proposal; and they "
              "agreed that the Fox should choose the course and fix the goal. On the day appointed for "
              "the race the two started together. The Tortoise never for a moment stopped, but went on "
              "with a slow but steady pace straight to the end of the course. The Hare, lying down by "
              "the wayside, fell fast asleep. At last waking up, and moving as fast as he could, he saw "
              "the Tortoise had reached the goal, and was comfortably dozing after her fatigue. Slow "
              "but steady wins the race.")),
    StorySpec(
        name="north_wind_and_sun", title="The North Wind and the Sun", voice="en-gb", speed_wpm=130, pitch=40,
        text=("The North Wind and the Sun disputed as to which was the most powerful, and agreed that "
              "he should be declared the victor who could first strip a wayfaring man of his clothes. "
              "The North Wind first tried his power and blew with all his might, but the keener his "
              "blasts, the closer the Traveler wrapped his cloak around him, until at last, resigning "
              "all hope of victory, the Wind called upon the Sun to see what he could do. The Sun "
              "suddenly shone out with all his warmth. The Traveler no sooner felt his genial rays than "
              "he took off one garment after another, and at last, fairly overcome with heat, undressed "
              "and bathed in a stream that lay in his path. Persuasion is better than Force.")),
    StorySpec(
        name="wolf_and_shepherd", title="The Wolf and the Shepherd", voice="en-us", speed_wpm=140, pitch=50,
        text=("A Wolf followed a flock of sheep for a long time and did not attempt to injure one of "
              "them. The Shepherd at first stood on his guard against him, as against an enemy, and kept "
              "a strict watch over his movements. But when the Wolf, day after day, kept in the company "
              "of the sheep and did not make the slightest effort to seize them, the Shepherd began to "
              "look upon him as a guardian of his flock rather than as a plotter of evil against it; and "
              "when occasion called him one day into the city, he left the sheep entirely in his charge. "
              "The Wolf, now that he had the opportunity, fell upon the sheep, and destroyed the greater "
              "part of the flock. When the Shepherd returned to find his flock destroyed, he exclaimed: "
              "\"I have been rightly served; why did I trust my sheep to a Wolf?\"")),
    StorySpec(
        name="fox_and_goat", title="The Fox and the Goat", voice="en-gb", speed_wpm=180, pitch=50,
        text=("A Fox one day fell into a deep well and could find no means of escape. A Goat, overcome "
              "with thirst, came to the same well, and seeing the Fox, inquired if the water was good. "
              "Concealing his sad plight under a merry guise, the Fox indulged in a lavish praise of the "
              "water, saying it was excellent beyond measure, and encouraging him to descend. The Goat, "
              "mindful only of his thirst, thoughtlessly jumped down, but just as he drank, the Fox "
              "informed him of the difficulty they were both in and suggested a scheme for their common "
              "escape. \"If,\" said he, \"you will place your forefeet upon the wall and bend your head, "
              "I will run up your back and escape, and will help you out afterwards.\" The Goat readily "
              "assented and the Fox leaped upon his back. Steadying himself with the Goat's horns, he "
              "safely reached the mouth of the well and made off as fast as he could. When the Goat "
              "upbraided him for breaking his promise, he turned around and cried out, \"You foolish "
              "old fellow! If you had as many brains in your head as you have hairs in your beard, you "
              "would never have gone down before you had inspected the way up, nor have exposed "
              "yourself to dangers from which you had no means of escape.\" Look before you leap.")),
)
"""The demo stories in order; the last one is the test story (it gets simulated repeats)."""

_WORD = re.compile(r"[A-Za-z]+(?:['\-][A-Za-z]+)*")


@dataclass
class Token:
    """A word to speak and the pause that follows it (seconds)."""

    word: str
    pause_after_s: float


def tokenize(title: str, text: str) -> list[Token]:
    """Words of the title and text, each with the pause that follows it.

    A word followed by ``. ! ?`` gets the sentence pause, by ``, ; :`` the clause pause,
    otherwise the short gap between words; the title's last word gets the title pause.
    """
    tokens: list[Token] = []
    for part, final_pause in ((title, TITLE_PAUSE_S), (text, SENTENCE_PAUSE_S)):
        matches = list(_WORD.finditer(part))
        for i, match in enumerate(matches):
            end = matches[i + 1].start() if i + 1 < len(matches) else len(part)
            between = part[match.end():end]
            if i + 1 == len(matches):
                pause = final_pause
            elif re.search(r"[.!?]", between):
                pause = SENTENCE_PAUSE_S
            elif re.search(r"[,;:]", between):
                pause = CLAUSE_PAUSE_S
            else:
                pause = WORD_GAP_S
            tokens.append(Token(match.group(), pause))
    return tokens


def synthesise_word(word: str, spec: StorySpec, workdir: Path) -> tuple[np.ndarray, str]:
    """Speak one word with espeak-ng; return (trimmed 16 kHz float32 samples, phoneme string)."""
    wav_path, phon_path = workdir / "word.wav", workdir / "word.pho"
    command = ["espeak-ng", "-v", spec.voice, "-s", str(spec.speed_wpm), "-p", str(spec.pitch),
               "-x", f"--phonout={phon_path}", "-w", str(wav_path), word]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InputError(f"espeak-ng failed on the word {word!r} (voice {spec.voice}): {result.stderr.strip()}")
    samples, rate = sf.read(io.BytesIO(wav_path.read_bytes()), dtype="float64")
    if rate != ESPEAK_RATE:
        raise InputError(f"espeak-ng wrote {rate} Hz audio; this tool expects {ESPEAK_RATE} Hz.")
    phonemes = " ".join(phon_path.read_text(encoding="utf-8").split())
    return trim_and_resample(samples, word), phonemes


def trim_and_resample(samples: np.ndarray, word: str) -> np.ndarray:
    """Trim silence (below -40 dB of the peak, 5 ms margin), resample 22050 -> 16000 Hz, fade edges."""
    envelope = np.abs(samples)
    peak = float(envelope.max(initial=0.0))
    if peak <= 0:
        raise InputError(f"espeak-ng produced silence for the word {word!r}.")
    loud = np.flatnonzero(envelope >= peak * 10 ** (-TRIM_TOP_DB / 20))
    margin = int(round(TRIM_MARGIN_S * ESPEAK_RATE))
    start, stop = max(loud[0] - margin, 0), min(loud[-1] + 1 + margin, samples.size)
    piece = resample_poly(samples[start:stop], SAMPLE_RATE // 50, ESPEAK_RATE // 50)
    fade = min(int(FADE_S * SAMPLE_RATE), piece.size // 2)
    ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
    piece[:fade] *= ramp
    piece[piece.size - fade:] *= ramp[::-1]
    return piece.astype(np.float32)


def build_story(spec: StorySpec, workdir: Path) -> dict:
    """Synthesise one story; return audio, word/phone intervals and bookkeeping (sample counts)."""
    rng = np.random.default_rng(zlib.crc32(spec.name.encode()))
    pieces: list[np.ndarray] = []
    words, phones, phrase_gains_db = [], [], []
    cursor = int(round(LEADING_SILENCE_S * SAMPLE_RATE))
    pieces.append(np.zeros(cursor, dtype=np.float32))
    word_samples = pause_samples = 0
    pause_samples += cursor
    gain_db = None
    for token in tokenize(spec.title, spec.text):
        if gain_db is None:
            gain_db = float(rng.uniform(*PHRASE_GAIN_RANGE_DB))
            phrase_gains_db.append(round(gain_db, 3))
        piece, phonemes = synthesise_word(token.word, spec, workdir)
        piece *= np.float32(10 ** (gain_db / 20))
        onset, offset = cursor / SAMPLE_RATE, (cursor + piece.size) / SAMPLE_RATE
        label = token.word.lower()
        words.append((onset, offset, label))
        phones.append((onset, offset, phonemes or label))
        pieces.append(piece)
        cursor += piece.size
        word_samples += piece.size
        gap = int(round(token.pause_after_s * SAMPLE_RATE))
        pieces.append(np.zeros(gap, dtype=np.float32))
        cursor += gap
        pause_samples += gap
        if token.pause_after_s >= CLAUSE_PAUSE_S:
            gain_db = None  # a new phrase starts after a comma or a sentence end
    tail = int(round(TRAILING_SILENCE_S * SAMPLE_RATE)) - int(round(SENTENCE_PAUSE_S * SAMPLE_RATE))
    pieces.append(np.zeros(max(tail, 0), dtype=np.float32))
    pause_samples += max(tail, 0)
    audio = np.concatenate(pieces)
    audio *= PEAK_LEVEL / float(np.abs(audio).max())
    return {"audio": audio, "words": words, "phones": phones, "word_samples": word_samples,
            "pause_samples": pause_samples, "phrase_gains_db": phrase_gains_db}


def with_pauses(intervals: list[tuple[float, float, str]], xmax: float) -> list[tuple[float, float, str]]:
    """Fill the gaps between word intervals with ``sp`` (LeBel's pause label)."""
    filled, cursor = [], 0.0
    for start, end, label in intervals:
        if start > cursor:
            filled.append((cursor, start, "sp"))
        filled.append((start, end, label))
        cursor = end
    if cursor < xmax:
        filled.append((cursor, xmax, "sp"))
    return filled


def write_story(spec: StorySpec, story: dict, out_dir: Path) -> dict:
    """Write ``<name>.flac`` and ``<name>.TextGrid``; return the story's stories.json entry."""
    audio: np.ndarray = story["audio"]
    n_samples = int(audio.size)
    duration = n_samples / SAMPLE_RATE
    with atomic_output(out_dir / f"{spec.name}.flac") as tmp:
        sf.write(tmp, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    write_textgrid(out_dir / f"{spec.name}.TextGrid",
                   {"phones": with_pauses(story["phones"], duration),
                    "words": with_pauses(story["words"], duration)}, xmax=duration)
    return {
        "name": spec.name, "title": spec.title, "text": spec.text,
        "voice": {"engine": "espeak-ng", "voice": spec.voice, "speed_wpm": spec.speed_wpm, "pitch": spec.pitch},
        "source": SOURCE, "n_words": len(story["words"]), "n_samples": n_samples, "sample_rate": SAMPLE_RATE,
        "duration_s": duration, "word_samples": story["word_samples"], "pause_samples": story["pause_samples"],
        "phrase_gains_db": story["phrase_gains_db"],
    }


def espeak_version() -> str:
    result = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "demo", help="output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if shutil.which("espeak-ng") is None:
        logger.error("espeak-ng is not installed (apt-get install espeak-ng); the committed assets "
                     "in assets/demo are enough to use the demo.")
        return 2
    entries = []
    try:
        with tempfile.TemporaryDirectory() as work:
            for spec in STORIES:
                story = build_story(spec, Path(work))
                entry = write_story(spec, story, args.out)
                entries.append(entry)
                logger.info("%-24s %5.1f s  %3d words  voice %s -s %d -p %d", spec.name, entry["duration_s"],
                            entry["n_words"], spec.voice, spec.speed_wpm, spec.pitch)
    except EncodingCoreError as exc:
        logger.error("%s", exc)
        return 1
    manifest = {
        "description": "Teaching-demo stimuli: Aesop fables spoken word by word with espeak-ng; "
                       "word onsets/offsets are exact by construction (see tools/make_demo_stimuli.py).",
        "generator": "tools/make_demo_stimuli.py", "synthesiser": espeak_version(),
        "sample_rate": SAMPLE_RATE, "test_story": STORIES[-1].name,
        "story_order": [spec.name for spec in STORIES], "stories": entries,
    }
    atomic_write_text(args.out / "stories.json", json.dumps(manifest, indent=2) + "\n")
    total = sum(e["duration_s"] for e in entries)
    logger.info("total %.1f s (%.2f min) in %s", total, total / 60, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
