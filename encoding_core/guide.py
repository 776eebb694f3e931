"""The method behind each app page, in words a teacher can read out: what the step does, what it
assumes, and one reference (the "How this works" expanders). Plain text, no imports; the pages
get it through :func:`encoding_core.studio.how_it_works`."""
from __future__ import annotations

HOW_IT_WORKS: dict[str, str] = {
    "home": """
**Voxelwise encoding models** ask: can a description of the stimulus predict the brain's response,
voxel by voxel (or vertex by vertex on a cortical surface)? The pipeline, one page per step:

1. **Assembly** — the fMRI responses to several spoken stories, `(TRs × voxels)` per story, with the
   time of every TR and every word.
2. **Audio** — each story's sound file, checked against the scan.
3. **Model & layer** — a speech model (e.g. Whisper) hears the audio in overlapping windows; the hidden
   state of each layer is a *feature* vector every few hundred milliseconds.
4. **Setup** — features are resampled to the TR times, delayed (FIR) to allow for the slow
   haemodynamic response, and trimmed so features and responses line up.
5. **Train** — one ridge regression per voxel, its penalty chosen by cross-validation on the training
   stories only.
6. **Results** — the model predicts the *held-out* story; the correlation between prediction and
   response per voxel is the map you see, with its statistics.

Assumptions: the response is a linear function of the delayed features; the held-out story is
independent of the training stories. Reference: Huth, de Heer, Griffiths, Theunissen & Gallant
(2016), *Natural speech reveals the semantic maps that tile human cerebral cortex*, Nature 532.
""",
    "assembly": """
An **assembly** holds, for each story (one fMRI run): the responses `(TRs × voxels)`, the time of
each TR in seconds from the sound onset (the centre of the TR's acquisition), and the words with
their start and end times (from a TextGrid). Voxels are columns of a *space*: vertices of a surface
(fsaverage5: 20 484 vertices) or voxels of a volume with its mask and affine.

Each story's responses are z-scored over time before fitting, so the model predicts fluctuations,
not a voxel's mean signal. The test story of the LeBel data was heard several times; the mean of its
repeats is the test response, and the repeats give the noise ceiling.

Assumption: the TR times and word times share one clock (the sound onset). Reference: LeBel et al.
(2023), *A natural language fMRI dataset for voxelwise encoding models*, Scientific Data 10.
""",
    "audio": """
Every story needs the **audio** the participant heard; features are computed from it, so a wrong
file silently ruins the model. Each file is checked like this:

- it must be readable audio (its header is read; the file is not decoded here);
- it must not outlast the scan by more than one TR (the sound cannot go on after the last TR);
- it must reach the end of the transcript's last word (within one TR);
- the scan may continue after the sound ends (the blood-oxygen response lasts 15–20 s), but not
  by more than 20 s.

The waveform shows word onsets (red) and TR times (blue) on the same clock. Reference: Glover (1999),
*Deconvolution of impulse response in event-related BOLD fMRI*, NeuroImage 9 (the response's shape
and its 15–20 s duration).
""",
    "model": """
A **speech model** (Whisper, HuBERT, wav2vec 2.0, WavLM) turns audio into a sequence of hidden
states, one per 20 ms frame, in every layer. The app slides a *window* over each story: every
*stride* seconds, the model hears the last *context* seconds of audio, and the window's hidden
states are pooled (the last real frame, or their mean) into one feature vector per layer, stamped
with the window's end time. Early layers tend to carry acoustic detail, later layers more abstract
(phonetic, lexical) information — which is why a layer profile is informative.

Cost: one forward pass per window, so the stride sets the time; every layer comes from the same
pass. Features are cached per (audio content, model, window settings) and reused by later runs.
bf16 runs the encoder in reduced precision: faster only on CPUs with bf16 matrix units (AMX),
measured here before it is recommended. Reference: Vaidya, Jain & Huth (2022), *Self-supervised
models of audio effectively explain human cortical responses to speech*, ICML.
""",
    "setup": """
**Alignment.** Features come every *stride* seconds, responses every TR. Each feature dimension is
resampled to the TR times with a **Lanczos** filter (a windowed sinc, 3 lobes): a low-pass
interpolation that avoids aliasing the faster feature signal. **FIR delays** then copy the features
shifted by 1, 2, 3, 4 TRs (2–8 s for TR = 2 s), so the model can learn the haemodynamic delay of each
voxel instead of assuming one shape. A delay of 0 or less would use the stimulus of the same TR or of
the future.

**Ridge regression** fits all voxels at once; the penalty α is chosen per voxel by **nested
cross-validation** on the training stories only (inner folds of contiguous *chunks* of TRs, so
neighbouring, correlated TRs do not leak between folds). The held-out story is never seen while
fitting.

**Statistics** test, per voxel, whether the held-out correlation could arise by chance: p-values from
permuting blocks of TRs (blocks keep the slow autocorrelation), corrected for the many voxels with
the **Benjamini–Hochberg** false discovery rate. Reference: Huth et al. (2016), Nature 532 (FIR +
ridge); Benjamini & Hochberg (1995), J. R. Stat. Soc. B 57 (FDR).
""",
    "train": """
A **job** runs the whole experiment in its own background process (you can leave the page or reload
the browser): the features of every story (from the cache when available), then for each layer the
alignment, the ridge fit with nested cross-validation, the held-out predictions and their
statistics, saved as a run that is never overwritten.

The time left is measured, not guessed: each stage's seconds per unit of work (per cent of a story,
per layer) in this job, times the work left in every stage; the layer fits are timed once the first
layer is done. **Cancel** stops the job between two units of work; **Resume** starts it again, and
the features already extracted come from the cache. Reference: Huth et al. (2016), Nature 532.
""",
    "results": """
For each voxel the model's prediction of the **held-out** story is correlated with the measured
response (Pearson r). r is noisy: a voxel whose response is mostly noise cannot reach r = 1 even
with a perfect model. The **noise ceiling** estimates the best achievable r from the repeats of the
test story; the *normalised* r (r divided by the ceiling) says how much of the explainable response
the model captures (0–1).

Significance: each voxel gets a p-value from the test recorded in the run's settings (named under
the headline numbers), e.g. a block permutation, which compares r with the r's of block-shuffled
predictions (blocks keep the slow autocorrelation of fMRI); the p-values are then corrected with
the **Benjamini–Hochberg** false discovery rate over all voxels. The map's threshold is named in its
title.

The map is a picture of one hemisphere from the chosen view (an orthographic projection with the
camera of the rotatable view): every pixel shows the value of its nearest visible vertex, and
hovering reads it. "Rotatable 3-D" draws the same map as a surface to turn and zoom.
Reference: Hsu, Borst & Theunissen (2004), *Quantifying variability in neural responses and its
application for the validation of model predictions*, Network 15 (noise ceiling); Benjamini &
Hochberg (1995), J. R. Stat. Soc. B 57 (FDR).
""",
}


def how_it_works(page: str) -> str:
    """The "How this works" text of an app page (``home``, ``assembly``, ``audio``, ``model``,
    ``setup``, ``train``, ``results``); KeyError for an unknown page."""
    return HOW_IT_WORKS[page].strip()
