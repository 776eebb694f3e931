"""One subject built as a LeBel folder and as the reference's pickle must give the same thing.

The pickle is made here the way the reference's LeBel data preparation makes it
(``data_prep_utils.create_lebel_transcripts`` / ``_process_single_story``), written out from
its description: bad words dropped by ``label.lower().strip("{}").strip()`` (empty labels are
kept), words lower-cased, ``onsets = arange(-10, (n - 10) * 2, 2)``, ``tr = mean(diff(onsets))``,
``tr_times = onsets + tr / 2``, ``data_times = (start + end) / 2``,
``split_indices = [(word_starts < t + tr).sum() for t in onsets][:-1]``, responses from the
``.hf5`` files. Both are then run through the same steps as an experiment (downsampling
with every method, FIR delays, LeBel trimming, z-scoring).
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from encoding_core.assembly.assembly_loader import load_assembly
from encoding_core.config import ExperimentConfig
from encoding_core.downsample.downsampling import Downsampler
from encoding_core.experiment.pipeline import prepare_features, prepare_targets
from lebel_tree import build_lebel_tree
from tests.data_reference_pickle import reference_classes

REFERENCE_BAD_WORDS = {"sentence_start", "sentence_end", "br", "lg", "ls", "ns", "sp"}


def reference_story_data(StoryData, built):
    """One StoryData as the reference's data preparation builds it (see the module docstring)."""
    transcript = [(s, e, w) for s, e, w in built.words if w.lower().strip("{}").strip() not in REFERENCE_BAD_WORDS]
    onsets = np.arange(-10, (built.run_trs - 10) * 2.0, 2.0)
    tr = np.mean(np.diff(onsets))
    starts = np.array([s for s, _, _ in transcript])
    words = [w.lower() for _, _, w in transcript]
    return StoryData(
        name=built.name, brain_data=built.response, stimuli=[" ".join(words[: i + 1]) for i in range(len(words))],
        split_indices=[int((starts < t + tr).sum()) for t in onsets][:-1], tr_times=onsets + tr / 2,
        data_times=np.array([(s + e) / 2 for s, e, _ in transcript]), words=words)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds003020")
    built = build_lebel_tree(root, formats={"sweetaspie": "chronological", "againstthewind": "short"},
                             bom=("sweetaspie",))
    with reference_classes() as (StoryData, SimpleNeuroidAssembly):
        records = [reference_story_data(StoryData, built[name])
                   for name in ("againstthewind", "sweetaspie", "wheretheressmoke")]
        data = pickle.dumps(SimpleNeuroidAssembly(records, "outer", False), protocol=4)
    pkl = root / "assembly_lebel_uts01.pkl"
    pkl.write_bytes(data)
    folder = load_assembly(root, subject="UTS01")
    from_pickle = load_assembly(pkl)
    return folder, from_pickle, built


def test_the_pickle_really_keeps_empty_labels_and_boundary_split_indices(both):
    _, _, built = both
    with reference_classes() as (StoryData, _):
        record = reference_story_data(StoryData, built["sweetaspie"])
    assert "" in record.words  # what the reference keeps, and our loaders drop
    assert len(record.split_indices) == len(record.tr_times) - 1


def test_same_tr_times_words_word_times_and_split_indices(both):
    folder, from_pickle, _ = both
    assert folder.stories == from_pickle.stories and folder.tr == from_pickle.tr == 2.0
    for a, b in zip(folder.stories_list, from_pickle.stories_list):
        np.testing.assert_array_equal(a.tr_times, b.tr_times)
        assert a.words == b.words
        np.testing.assert_array_equal(a.data_times, b.data_times)
        np.testing.assert_array_equal(a.split_indices, b.split_indices)
        np.testing.assert_array_equal(a.brain_data, b.brain_data)
        assert len(a.tr_times[10:-5]) == a.n_trs == b.n_trs


@pytest.mark.parametrize("method,kwargs", [("rect", {}), ("lanczos", {"window": 3, "cutoff_mult": 1.0}),
                                           ("sinc", {"window": 3, "cutoff_mult": 1.0}), ("average", {}),
                                           ("sum", {}), ("last", {})])
def test_same_features_after_the_experiment_steps(both, method, kwargs):
    """Word-level features (a word-length column and a one per word) at the words' mid-times,
    through downsampling, FIR delays, the LeBel trimming and z-scoring: identical."""
    folder, from_pickle, _ = both
    config = ExperimentConfig()
    config.alignment.downsample_method = method
    config.alignment.downsample_kwargs = dict(kwargs)

    class WordFeatures:
        def __init__(self, story):
            self.times = story.data_times
            self.n_layers = 1
            self.values = np.column_stack([[len(w) for w in story.words], np.ones(len(story.words))])

        def layer(self, index):
            return self.values

    prepared = [prepare_features({s.name: WordFeatures(s) for s in assembly.stories_list}, assembly, config, 0)
                for assembly in (folder, from_pickle)]
    np.testing.assert_array_equal(prepared[0].X_train, prepared[1].X_train)
    np.testing.assert_array_equal(prepared[0].test, prepared[1].test)
    targets = [prepare_targets(assembly, config) for assembly in (folder, from_pickle)]
    assert prepared[0].lengths() == targets[0].lengths() == targets[1].lengths()


def test_word_counts_per_tr_from_split_indices_agree(both):
    """What a word-rate feature reads: words per TR via the split indices, with ``sum``."""
    folder, from_pickle, _ = both
    for a, b in zip(folder.stories_list, from_pickle.stories_list):
        counts = [Downsampler().downsample(np.ones((len(s.words), 1)), s.data_times, s.tr_times, "sum",
                                           split_indices=s.split_indices)[:, 0] for s in (a, b)]
        np.testing.assert_array_equal(counts[0], counts[1])
        assert counts[0].sum() == len(a.words)


def test_word_rate_modality_agrees_between_folder_and_pickle(both):
    """The wordrate feature counts the same words per TR from both sources (the pickle has no word starts)."""
    folder, from_pickle, _ = both
    np.testing.assert_array_equal(np.concatenate(folder.get_word_rates()),
                                  np.concatenate(from_pickle.get_word_rates()))
    assert sum(int(r.sum()) for r in folder.get_word_rates()) == sum(len(s.words) for s in folder.stories_list)
