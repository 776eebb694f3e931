"""The Model page offers the eight modalities (the reference's, custom arrays, the baseline spaces), each with what it needs and its cost."""
from __future__ import annotations

import numpy as np

from app_helpers import inject_assembly, new_app, open_page, texts, write_assembly
from tiny_experiment import save_tiny_gpt2, write_word_vectors


def test_model_page_modalities(studio):
    path = write_assembly(studio)
    at = new_app()
    inject_assembly(at, path)
    at.run()
    open_page(at, "model")
    assert at.radio(key="modality").options == ["Speech model", "Word rate", "Word embeddings", "Language model",
                                                "Custom arrays", "Phoneme rate", "Audio envelope",
                                                "Log-mel spectrogram"]
    at.radio(key="modality").set_value("wordrate").run()
    assert not at.exception
    assert "words with their times" in texts(at.caption)
    assert "60 words" in texts(at.markdown)  # 3 stories x 20 words
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Words"] == "60" and metrics["Estimated time"] == "0 s"

    vectors = write_word_vectors(studio / "vectors.w2v.txt", {f"w{j}": np.ones(3) for j in range(20)})
    at.radio(key="modality").set_value("embeddings").run()
    assert "word2vec" in texts(at.caption)
    at.text_input(key="vector_path").input(str(vectors)).run()
    assert not at.exception and not at.error, texts(at.error)
    assert "vectors.w2v.txt" in texts(at.caption)
    assert {m.label for m in at.metric} >= {"Words", "Estimated time"}

    folder = save_tiny_gpt2(studio / "gpt2")
    at.radio(key="modality").set_value("language_model").run()
    at.text_input(key="lm_name").input(str(folder)).run()
    assert not at.exception and not at.error, texts(at.error)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Layers"] == "2" and metrics["Width"] == "32"
    assert "Estimated time" in metrics

    at.radio(key="modality").set_value("custom").run()
    (studio / "arrays").mkdir()
    np.savez(studio / "arrays" / "story0.npz", features=np.zeros((30, 2)))
    at.text_input(key="custom_path").input(str(studio / "arrays")).run()
    assert not at.exception and not at.error, texts(at.error)
    assert "1 of 3" in texts(at.markdown)

    for modality, caption in (("envelope", "RMS of the sound"), ("logmel", "Log-mel bands"),
                              ("phonemerate", "phones start")):  # the baseline spaces
        at.radio(key="modality").set_value(modality).run()
        assert not at.exception and not at.error, texts(at.error)
        assert caption in texts(at.caption)
        if modality == "logmel":
            at.number_input(key="n_mels").set_value(16).run()
            assert at.session_state["experiment_config"].features.n_mels == 16

    at.radio(key="modality").set_value("speech").run()
    assert not at.exception
