"""The simulated teaching assembly: real spoken stories, fMRI-like data with planted effects.

SIMULATED data, not real fMRI. Six Aesop fables (``assets/demo``, made by
``tools/make_demo_stimuli.py``) drive three stimulus signals ("drivers"):

- ``acoustic``: the mean log-mel energy (32 bands, 80-7600 Hz, dB re the story's loudest
  bin, floored at -60 dB): it follows the sound level (the stimuli vary their loudness from
  phrase to phrase) and how much of each moment is speech rather than pause;
- ``word_rate``: words per second (word onsets from the TextGrids);
- ``narrative``: a slow word-level signal, the mean rarity (-log2 unigram probability over
  all demo words) of the words heard in a Gaussian window (sigma 6 s, about 20 s wide).

The drivers are built on a 0.1 s grid (0 in silence), scaled, convolved with the SPM
canonical HRF, sampled at the TR times ``arange(n_trs) * 2.0`` s (``n_trs`` covers the
audio plus >= 10 s of HRF tail) and made mutually orthogonal in that order over the TRs
the preset analyses (word rate = the part not explained by loudness; narrative = the part
explained by neither), each with unit standard deviation there.

Each driver is planted, with an amplitude that falls from the centre of its region to
40% at the edge (geodesic distance on the fsaverage5 pial mesh), in:

- acoustic -> auditory cortex / Heschl's gyrus, both hemispheres, around (+-50, -20, 8) mm;
- word rate -> superior temporal sulcus, both hemispheres, around (+-55, -35, 0) mm;
- narrative -> left inferior frontal gyrus (-48, 25, 10) and left angular gyrus (-45, -65, 30).

Amplitudes are in units of the noise standard deviation (noise variance is 1 at every
vertex): peak 2.5 (auditory, STS) and 2.25 (narrative), 40 % of that at a region's edge.
Version 4 raised them from 1.0 / 0.9: with 228 TRs in six stories, a calibrated test
(autocorrelation-corrected, one-sided, BH-FDR q = 0.05 over 20484 vertices) declared no
vertex significant at the old amplitudes (the liberal tests that did, half of their
vertices outside the planted regions, were the problem the statistics now avoid), and
at 2.0 it found 53 % of the auditory region; at 2.5, 79 % (bench/bench_demo.py). The noise is AR(1) in time (phi 0.4) and half of its variance is spatially
smooth (two steps of neighbour averaging on the mesh). The test story (the last one) is
"heard" ``N_REPEATS`` times with independent noise; its ``brain_data`` is the mean of the
repeats, which are kept in ``story.repeats`` for the noise ceiling.

Generation is vectorised (a few seconds) and bit-identical for a seed; the result is
cached as a native ``.h5`` keyed by the seed, a hash of the asset files and
``SIMULATION_VERSION``.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional, Union

import numpy as np

from encoding_core.assembly.data_model import Assembly, Space, Story
from encoding_core.common.errors import AssemblyFormatError, EncodingCoreError, InputError

logger = logging.getLogger(__name__)

DEMO_TRIM_START_TRS = 5
DEMO_TRIM_END_TRS = -4
"""The demo preset's trimming (TRs), used here to scale the simulated responses (see preset.py)."""

PathLike = Union[str, Path]

SIMULATION_VERSION = 4
"""Bump whenever the simulation changes its numbers (invalidates cached copies)."""

TR_S = 2.0
HRF_TAIL_S = 10.0
GRID_STEP_S = 0.1
N_REPEATS = 6
SUBJECT = "demo"
SPACE_NAME = "fsaverage5"
N_VERTICES_PER_HEMI = 10242
N_VERTICES = 2 * N_VERTICES_PER_HEMI
DRIVERS = ("acoustic", "word_rate", "narrative")
NARRATIVE_SIGMA_S = 6.0
NOISE_AR1 = 0.4
NOISE_SMOOTH_FRACTION = 0.5
NOISE_SMOOTH_STEPS = 2
EDGE_AMPLITUDE = 0.4
PROVENANCE_NOTE = "SIMULATED data: planted effects, not real fMRI"

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets" / "demo"
"""The committed stimuli: ``<story>.flac``, ``<story>.TextGrid``, ``stories.json``."""


@dataclass(frozen=True)
class DemoRegion:
    """One planted region: where it is, which driver it carries, and how strongly.

    centres_mm: target coordinates (fsaverage pial space, roughly MNI) per hemisphere;
    radius_mm: geodesic radius on the pial mesh; peak_amplitude: signal standard deviation
    at the centre in units of the noise standard deviation (edge: 40% of it).
    """

    key: str
    label: str
    driver: str
    centres_mm: tuple[tuple[str, tuple[float, float, float]], ...]
    radius_mm: float
    peak_amplitude: float
    description: str


DEMO_REGIONS: dict[str, DemoRegion] = {
    region.key: region for region in (
        DemoRegion(
            key="auditory", label="Auditory cortex (Heschl's gyrus)", driver="acoustic",
            centres_mm=(("left", (-50.0, -20.0, 8.0)), ("right", (50.0, -20.0, 8.0))),
            radius_mm=15.0, peak_amplitude=2.5,
            description="Both hemispheres. Follows the acoustic energy of the sound (mean log-mel "
                        "energy): a speech model's first layers should predict it best."),
        DemoRegion(
            key="sts", label="Superior temporal sulcus", driver="word_rate",
            centres_mm=(("left", (-55.0, -35.0, 0.0)), ("right", (55.0, -35.0, 0.0))),
            radius_mm=15.0, peak_amplitude=2.5,
            description="Both hemispheres. Follows how many words per second are heard, beyond what "
                        "loudness explains: a word-level, more abstract signal."),
        DemoRegion(
            key="ifg", label="Left inferior frontal gyrus", driver="narrative",
            centres_mm=(("left", (-48.0, 25.0, 10.0)),),
            radius_mm=15.0, peak_amplitude=2.25,
            description="Left only. Follows a slow (about 20 s) signal: how rare the recent words "
                        "are. An 8 s speech-model window sees only part of it."),
        DemoRegion(
            key="angular", label="Left angular gyrus", driver="narrative",
            centres_mm=(("left", (-45.0, -65.0, 30.0)),),
            radius_mm=15.0, peak_amplitude=2.25,
            description="Left only. Same slow narrative signal as the inferior frontal region."),
    )
}
"""The planted regions, in words and numbers, for the app and the tests."""


# -- stimuli ---------------------------------------------------------------------------

def demo_assets_dir() -> Path:
    """The folder with the demo stimuli; raises InputError if it is missing."""
    if not (ASSETS_DIR / "stories.json").is_file():
        raise InputError(f"The demo stimuli are missing from {ASSETS_DIR} (stories.json not found). "
                         "Restore assets/demo from the repository or run tools/make_demo_stimuli.py.")
    return ASSETS_DIR


@lru_cache(maxsize=1)
def _manifest() -> dict:
    path = demo_assets_dir() / "stories.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        names = [str(n) for n in manifest["story_order"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is unreadable or malformed ({exc}); restore it from the repository.") from None
    if not names:
        raise InputError(f"{path} lists no stories; restore it from the repository.")
    return manifest


def demo_story_names() -> list[str]:
    """Story names in order; the last one is the test story."""
    return [str(n) for n in _manifest()["story_order"]]


def demo_audio_path(story: str) -> Path:
    """The committed 16 kHz mono FLAC of a demo story."""
    return demo_assets_dir() / f"{story}.flac"


def demo_textgrid_path(story: str) -> Path:
    """The committed TextGrid (tiers ``phones``, ``words``) of a demo story."""
    return demo_assets_dir() / f"{story}.TextGrid"


def assets_fingerprint() -> str:
    """SHA-256 over the bytes of every demo asset (manifest, audio, TextGrids), hex."""
    digest = hashlib.sha256()
    paths = [demo_assets_dir() / "stories.json"]
    for name in demo_story_names():
        paths += [demo_audio_path(name), demo_textgrid_path(name)]
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"Demo asset {path} cannot be read ({exc.strerror}); restore assets/demo "
                             "from the repository.") from None
        digest.update(path.name.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


@dataclass
class _StoryStimulus:
    name: str
    audio: np.ndarray          # (n_samples,) float32 at 16 kHz
    sample_rate: int
    words: list[str]
    onsets: np.ndarray         # (n_words,) seconds
    offsets: np.ndarray        # (n_words,) seconds
    n_trs: int

    @property
    def duration_s(self) -> float:
        return self.audio.size / self.sample_rate


def _load_stimuli() -> list[_StoryStimulus]:
    import soundfile as sf

    from encoding_core.assembly.textgrid import read_words

    stimuli = []
    for name in demo_story_names():
        path = demo_audio_path(name)
        try:
            audio, rate = sf.read(str(path), dtype="float32", always_2d=False)
        except (OSError, RuntimeError, sf.LibsndfileError) as exc:
            raise InputError(f"Demo audio {path} cannot be read ({exc}); restore assets/demo.") from None
        if audio.ndim != 1:
            raise InputError(f"Demo audio {path} must be mono; restore assets/demo.")
        words, onsets, offsets = read_words(demo_textgrid_path(name), tier="words")
        n_trs = int(np.ceil((audio.size / rate + HRF_TAIL_S) / TR_S))
        stimuli.append(_StoryStimulus(name, audio, int(rate), words, onsets, offsets, n_trs))
    return stimuli


# -- drivers ---------------------------------------------------------------------------

def spm_hrf(step_s: float, length_s: float = 32.0) -> np.ndarray:
    """SPM's canonical double-gamma HRF sampled every ``step_s`` seconds, unit sum.

    Peak gamma shape 6, undershoot gamma shape 16, undershoot ratio 1/6 (scale 1 s).
    Returns shape ``(ceil(length_s / step_s),)``.
    """
    from scipy.stats import gamma

    t = np.arange(0.0, length_s, step_s)
    hrf = gamma.pdf(t, 6.0) - gamma.pdf(t, 16.0) / 6.0
    return hrf / hrf.sum()


def _acoustic_envelope(stim: _StoryStimulus, grid_len: int) -> np.ndarray:
    """Mean log-mel energy per 0.1 s grid step: 32 mel bands (80-7600 Hz, 25 ms windows every
    10 ms) in dB above a floor 60 dB below the story's loudest bin, averaged over bands and
    over the step's frames. Silence (pauses, before and after the story) is 0, so this
    follows both the sound level and how much of each moment is speech."""
    import librosa

    hop = int(round(0.01 * stim.sample_rate))
    mel = librosa.feature.melspectrogram(y=stim.audio, sr=stim.sample_rate, n_fft=400, hop_length=hop,
                                         n_mels=32, fmin=80.0, fmax=7600.0, center=False)
    log_mel = librosa.power_to_db(mel, ref=np.max, top_db=60.0) + 60.0     # (32, n_frames), 0..60 dB
    frames_per_step = int(round(GRID_STEP_S / 0.01))
    per_frame = np.zeros(grid_len * frames_per_step)                       # silence = the floor = 0
    n = min(log_mel.shape[1], per_frame.size)
    per_frame[:n] = log_mel.mean(axis=0)[:n]
    return per_frame.reshape(grid_len, frames_per_step).mean(axis=1)


def _word_rate(stim: _StoryStimulus, grid_len: int) -> np.ndarray:
    """Words per second: word onsets counted per 0.1 s grid step, divided by the step."""
    bins = np.minimum((stim.onsets / GRID_STEP_S).astype(int), grid_len - 1)
    return np.bincount(bins, minlength=grid_len)[:grid_len] / GRID_STEP_S


def _narrative(stim: _StoryStimulus, grid_len: int, rarity: dict[str, float], mean_rarity: float) -> np.ndarray:
    """Gaussian-weighted (sigma 6 s) mean rarity of the words around each grid time, minus the
    corpus mean rarity; it fades to 0 where no words are near (silence = baseline)."""
    from scipy.ndimage import gaussian_filter1d

    bins = np.minimum((stim.onsets / GRID_STEP_S).astype(int), grid_len - 1)
    values = np.array([rarity[w.lower()] for w in stim.words]) - mean_rarity
    total = np.bincount(bins, weights=values, minlength=grid_len)[:grid_len]
    count = np.bincount(bins, minlength=grid_len)[:grid_len].astype(float)
    sigma = NARRATIVE_SIGMA_S / GRID_STEP_S
    total = gaussian_filter1d(total, sigma, mode="constant")
    count = gaussian_filter1d(count, sigma, mode="constant")
    # weight -> 1 where words are dense, -> 0 in long silences (the edges of the story).
    weight = count / (count + 0.05 * count.max())
    return weight * np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def _fine_drivers(stimuli: list[_StoryStimulus]) -> list[np.ndarray]:
    """Per story ``(grid_len, 3)`` drivers on the 0.1 s grid, 0 in silence, each divided by
    its standard deviation over all stories (not centred: the HRF convolution pads the
    time before each story with 0, which must mean silence)."""
    all_words = [w.lower() for s in stimuli for w in s.words]
    vocabulary, counts = np.unique(all_words, return_counts=True)
    rarity = dict(zip(vocabulary.tolist(), (-np.log2(counts / counts.sum())).tolist()))
    mean_rarity = float(np.mean([rarity[w] for w in all_words]))
    steps_per_tr = int(round(TR_S / GRID_STEP_S))
    per_story = []
    for stim in stimuli:
        grid_len = stim.n_trs * steps_per_tr
        per_story.append(np.column_stack([_acoustic_envelope(stim, grid_len), _word_rate(stim, grid_len),
                                          _narrative(stim, grid_len, rarity, mean_rarity)]))
    std = np.concatenate(per_story).std(axis=0)
    return [d / std for d in per_story]


@lru_cache(maxsize=1)
def _drivers() -> tuple[tuple[str, ...], tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """(story names, stimulus drivers per TR, HRF-convolved drivers per TR); see demo_drivers.

    The HRF-convolved drivers are made orthogonal over the analysed TRs (the preset's
    trimming ``[5:-4]``) of all stories, in driver
    order (Gram-Schmidt via QR): ``planted = (convolved - mean) @ M``. The same mixing
    matrix M is applied to the stimulus drivers, so that convolving them with the HRF
    gives the planted signals again (convolution is linear).
    """
    from scipy.signal import fftconvolve

    stimuli = _load_stimuli()
    fine = _fine_drivers(stimuli)
    steps_per_tr = int(round(TR_S / GRID_STEP_S))
    hrf = spm_hrf(GRID_STEP_S)
    stimulus, convolved = [], []
    for stim, drivers in zip(stimuli, fine):
        # Per TR: the mean over the TR interval [t, t + TR) (stimulus), and the HRF-convolved
        # signal sampled at the TR time t (what the simulated BOLD follows).
        stimulus.append(drivers.reshape(stim.n_trs, steps_per_tr, len(DRIVERS)).mean(axis=1))
        convolved.append(fftconvolve(drivers, hrf[:, None], axes=0)[: drivers.shape[0]][::steps_per_tr])
    # Normalise over the TRs the preset analyses (its trimming), so every driver has unit
    # variance where the model is fitted and tested, not just at the story edges.
    stacked = np.concatenate([c[DEMO_TRIM_START_TRS:DEMO_TRIM_END_TRS] for c in convolved])
    mean = stacked.mean(axis=0)
    _, upper = np.linalg.qr(stacked - mean)
    mixing = np.linalg.inv(upper * np.sign(np.diag(upper))[:, None]) * np.sqrt(stacked.shape[0])
    planted = tuple((c - mean) @ mixing for c in convolved)
    return tuple(s.name for s in stimuli), tuple(s @ mixing for s in stimulus), planted


def demo_drivers(convolved: bool = True) -> dict[str, np.ndarray]:
    """The ground-truth drivers per story, columns in ``DRIVERS`` order.

    convolved=True: what was planted, ``(n_trs, 3)`` at the TR times (HRF-convolved,
    unit standard deviation over all stories). convolved=False: the stimulus drivers
    before the HRF, ``(n_trs, 3)`` means over each TR interval ``[t, t + 2 s)``.
    """
    names, stimulus, bold = _drivers()
    chosen = bold if convolved else stimulus
    return {name: array.astype(np.float32) for name, array in zip(names, chosen)}


# -- the planted maps ------------------------------------------------------------------

def _packaged_pial_files() -> Optional[tuple[Path, Path]]:
    """The fsaverage5 pial GIFTI files shipped inside nilearn (left, right), or None when absent."""
    import importlib.util

    spec = importlib.util.find_spec("nilearn")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "datasets" / "data" / "fsaverage5"
    files = (folder / "pial_left.gii.gz", folder / "pial_right.gii.gz")
    return files if all(f.is_file() for f in files) else None


@lru_cache(maxsize=1)
def _mesh() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(coordinates (10242, 3) mm, faces (20480, 3)) of the fsaverage5 pial mesh, left and right.

    Read with nibabel from the files nilearn ships (0.2 s; importing ``nilearn.datasets`` for
    ``load_fsaverage`` costs 2-3 s here, which the demo's warm run cannot afford), else through
    ``load_fsaverage``."""
    files = _packaged_pial_files()
    if files is not None:
        import nibabel

        try:
            return tuple(tuple(np.asarray(a, dtype=t) for a, t in zip(
                nibabel.load(str(f)).agg_data(("pointset", "triangle")), (np.float64, np.int64))) for f in files)
        except Exception:  # unreadable file: nilearn's own loader below gives the error
            pass
    from nilearn.datasets import load_fsaverage

    try:
        pial = load_fsaverage("fsaverage5")["pial"]
        parts = tuple((np.asarray(pial.parts[h].coordinates, dtype=np.float64),
                       np.asarray(pial.parts[h].faces, dtype=np.int64)) for h in ("left", "right"))
    except Exception as exc:  # nilearn raises a variety of errors for a broken install
        raise EncodingCoreError(f"Cannot load the fsaverage5 mesh shipped with nilearn ({exc}); "
                                "reinstall nilearn (pip install nilearn).") from None
    return parts


def _edge_graph(coordinates: np.ndarray, faces: np.ndarray):
    """Sparse symmetric (n, n) CSR matrix of mesh edge lengths in mm (each edge once per direction)."""
    from scipy.sparse import csr_matrix

    pairs = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    pairs = np.unique(pairs, axis=0)
    length = np.linalg.norm(coordinates[pairs[:, 0]] - coordinates[pairs[:, 1]], axis=1)
    n = coordinates.shape[0]
    rows, cols = np.r_[pairs[:, 0], pairs[:, 1]], np.r_[pairs[:, 1], pairs[:, 0]]
    return csr_matrix((np.r_[length, length], (rows, cols)), shape=(n, n))


@lru_cache(maxsize=1)
def _region_distances() -> dict[str, np.ndarray]:
    """Per region, ``(20484,)`` geodesic distance (mm, along mesh edges) to its nearest centre; inf far away."""
    from scipy.sparse.csgraph import dijkstra

    meshes = _mesh()
    graphs = [_edge_graph(c, f) for c, f in meshes]
    distances = {}
    for key, region in DEMO_REGIONS.items():
        dist = np.full(N_VERTICES, np.inf)
        for hemi, centre in region.centres_mm:
            h = 0 if hemi == "left" else 1
            coordinates = meshes[h][0]
            source = int(np.argmin(np.linalg.norm(coordinates - np.asarray(centre), axis=1)))
            d = dijkstra(graphs[h], directed=False, indices=source, limit=3 * region.radius_mm)
            sl = slice(h * N_VERTICES_PER_HEMI, (h + 1) * N_VERTICES_PER_HEMI)
            dist[sl] = np.minimum(dist[sl], d)
        distances[key] = dist
    return distances


def ground_truth_maps() -> dict[str, np.ndarray]:
    """The planted truth on fsaverage5 (left then right vertices), each ``(20484,)``.

    Keys: one float32 amplitude map per driver (``"acoustic"``, ``"word_rate"``,
    ``"narrative"``; signal standard deviation in units of the noise standard deviation,
    so also the amplitude SNR), one boolean ``"mask_<region>"`` per region of
    ``DEMO_REGIONS`` and ``"mask_any"`` (any planted region).
    """
    maps: dict[str, np.ndarray] = {d: np.zeros(N_VERTICES, dtype=np.float32) for d in DRIVERS}
    any_mask = np.zeros(N_VERTICES, dtype=bool)
    for key, dist in _region_distances().items():
        region = DEMO_REGIONS[key]
        inside = dist <= region.radius_mm
        sigma = region.radius_mm / 2.0
        profile = EDGE_AMPLITUDE + (1 - EDGE_AMPLITUDE) * (np.exp(-0.5 * (dist / sigma) ** 2) - np.exp(-2.0)) \
            / (1 - np.exp(-2.0))
        amplitude = np.where(inside, region.peak_amplitude * profile, 0.0).astype(np.float32)
        maps[region.driver] = np.maximum(maps[region.driver], amplitude)
        maps[f"mask_{key}"] = inside
        any_mask |= inside
    maps["mask_any"] = any_mask
    return maps


@lru_cache(maxsize=1)
def planted_region_masks() -> dict[str, np.ndarray]:
    """One boolean ``(20484,)`` mask per planted region, keyed by its readable label (e.g.
    ``"Auditory cortex (Heschl's gyrus)"``), in the order of ``DEMO_REGIONS``: the outlines a map
    of the demo draws, one legend entry each."""
    maps = ground_truth_maps()
    return {region.label: np.asarray(maps[f"mask_{key}"], dtype=bool) for key, region in DEMO_REGIONS.items()}


def _smoothing_operator():
    """Sparse (20484, 20484) operator: NOISE_SMOOTH_STEPS of neighbour averaging, rows scaled to unit norm."""
    from scipy.sparse import block_diag, diags, identity

    blocks = []
    for coordinates, faces in _mesh():
        adjacency = _edge_graph(coordinates, faces)
        adjacency.data[:] = 1.0
        adjacency = adjacency + identity(adjacency.shape[0], format="csr")
        step = diags(1.0 / np.asarray(adjacency.sum(axis=1)).ravel()) @ adjacency
        operator = step
        for _ in range(NOISE_SMOOTH_STEPS - 1):
            operator = step @ operator
        blocks.append(operator)
    operator = block_diag(blocks, format="csr")
    # White noise through the operator has variance = squared row norm; rescale to 1.
    row_norm = np.sqrt(np.asarray(operator.multiply(operator).sum(axis=1)).ravel())
    return (diags(1.0 / row_norm) @ operator).tocsr().astype(np.float32)


def _noise(rng: np.random.Generator, n_trs: int, n_presentations: int) -> np.ndarray:
    """``(n_presentations, n_trs, 20484)`` float32 noise, unit variance, AR(1) in time, partly smooth in space."""
    from scipy.signal import lfilter

    burn_in = 20
    white = rng.standard_normal((n_presentations, n_trs + burn_in, N_VERTICES), dtype=np.float32)
    smooth_source = rng.standard_normal((n_presentations, n_trs + burn_in, N_VERTICES), dtype=np.float32)
    smoother = _smoothing_operator()
    flat = smooth_source.reshape(-1, N_VERTICES)
    smooth = (smoother @ flat.T).T.reshape(smooth_source.shape).astype(np.float32)
    mixed = np.sqrt(1 - NOISE_SMOOTH_FRACTION) * white + np.sqrt(NOISE_SMOOTH_FRACTION) * smooth
    innovation_scale = np.sqrt(1 - NOISE_AR1 ** 2)
    ar = lfilter([innovation_scale], [1.0, -NOISE_AR1], mixed, axis=1)
    return ar[:, burn_in:].astype(np.float32)


# -- the assembly ----------------------------------------------------------------------

def simulate_demo_assembly(seed: int = 0) -> Assembly:
    """Generate the simulated demo assembly (no cache); bit-identical for a given seed.

    Stories: the demo fables in order (the last is the test story, with ``N_REPEATS``
    repeats). brain_data ``(n_trs, 20484)`` float32 on fsaverage5; tr_times
    ``arange(n_trs) * 2.0`` s from sound onset.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"load_demo_assembly: seed must be a non-negative integer, got {seed!r}.")
    names, _, planted = _drivers()
    stimuli = {s.name: s for s in _load_stimuli()}
    maps = ground_truth_maps()
    weights = np.stack([maps[d] for d in DRIVERS])                    # (3, 20484)
    rng = np.random.default_rng(seed)
    test = names[-1]
    stories = []
    for name, drivers in zip(names, planted):
        stim = stimuli[name]
        signal = (drivers.astype(np.float32) @ weights)                # (n_trs, 20484)
        n_presentations = N_REPEATS if name == test else 1
        responses = signal[None] + _noise(rng, stim.n_trs, n_presentations)
        stories.append(Story(
            name=name, brain_data=responses.mean(axis=0), tr_times=np.arange(stim.n_trs) * TR_S,
            words=stim.words, word_onsets=stim.onsets, word_offsets=stim.offsets,
            audio_path=str(demo_audio_path(name)), repeats=responses if name == test else None,
        ))
    provenance = {
        "source": "demo", "loader": "encoding_core.demo", "note": PROVENANCE_NOTE,
        "simulation_version": SIMULATION_VERSION, "seed": int(seed), "assets_sha256": assets_fingerprint(),
        "stimuli": "Aesop's fables (Townsend 1867), spoken with espeak-ng; see assets/demo/CREDITS.md",
        "planted": {k: {"driver": r.driver, "label": r.label, "peak_amplitude": r.peak_amplitude}
                    for k, r in DEMO_REGIONS.items()},
        "noise": {"ar1": NOISE_AR1, "smooth_fraction": NOISE_SMOOTH_FRACTION, "variance": 1.0},
        "test_story_repeats": N_REPEATS,
    }
    return Assembly(subject=SUBJECT, tr=TR_S, stories_list=stories, space=Space.surface(SPACE_NAME),
                    provenance=provenance, simulated=True, test_story=test)


def _default_cache_dir() -> Path:
    from encoding_core.common.paths import studio_dirs

    return studio_dirs().cache


def demo_cache_path(cache_dir: Optional[PathLike] = None, seed: int = 0) -> Path:
    """Where the cached assembly for this seed and these assets lives: ``<cache_dir>/demo/*.h5``."""
    folder = (Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()) / "demo"
    key = hashlib.sha256(f"{SIMULATION_VERSION}|{seed}|{assets_fingerprint()}".encode()).hexdigest()[:16]
    return folder / f"demo_assembly_v{SIMULATION_VERSION}_seed{seed}_{key}.h5"


def load_demo_assembly(cache_dir: Optional[PathLike] = None, seed: int = 0) -> Assembly:
    """The simulated demo assembly (SIMULATED data with planted effects, not real fMRI).

    Generated on first use (a few seconds) and cached in ``<cache_dir>/demo`` (default: the
    app's cache folder) as a native ``.h5``; later calls read the cache. Audio paths point to
    ``assets/demo/<story>.flac``. See the module docstring for what is planted where.
    """
    from encoding_core.assembly.native_h5 import read_native, write_native

    assembly = None
    path = demo_cache_path(cache_dir, seed)
    if path.is_file():
        try:
            assembly = read_native(path)
            if not _cache_matches(assembly, seed):
                logger.warning("Cached demo assembly %s does not match this version; regenerating.", path)
                assembly = None
        except EncodingCoreError as exc:
            logger.warning("Cached demo assembly %s is unusable (%s); regenerating.", path, exc)
            assembly = None
    if assembly is None:
        assembly = simulate_demo_assembly(seed)
        try:
            write_native(assembly, path)
        except EncodingCoreError as exc:
            logger.warning("Could not cache the demo assembly at %s (%s); it will be generated again next time.",
                           path, exc)
    # Audio paths always point to this checkout's assets, wherever the cache was written.
    for story in assembly.stories_list:
        story.audio_path = str(demo_audio_path(story.name))
    return assembly


def _cache_matches(assembly: Assembly, seed: int) -> bool:
    prov = assembly.provenance
    return (assembly.simulated and prov.get("simulation_version") == SIMULATION_VERSION
            and prov.get("seed") == seed and prov.get("assets_sha256") == assets_fingerprint()
            and assembly.stories == demo_story_names() and assembly.n_voxels == N_VERTICES)


def check_demo_assets() -> None:
    """Raise AssemblyFormatError if an asset is missing (used by the app's health check)."""
    for name in demo_story_names():
        for path in (demo_audio_path(name), demo_textgrid_path(name)):
            if not path.is_file():
                raise AssemblyFormatError(f"Demo asset {path} is missing; restore assets/demo from the repository.")
