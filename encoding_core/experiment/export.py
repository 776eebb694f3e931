"""Turn an experiment into a stand-alone Python script that uses the tutorial's API.

The script loads the assembly, sets audio paths, creates the speech extractor with
``FeatureExtractorFactory``, and runs ``AbstractTrainer(...).train()`` for each layer, like
the seed tutorial (any modality), so a user can rerun or adapt an experiment outside the app. Every
value is written with ``repr`` (Python literals), never pasted as code.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from encoding_core.config import ExperimentConfig

_HEADER = '''"""Experiment {name!r}, exported by encoding_core {version}.

Run it with:  python this_script.py
"""
import os

from encoding_core import (AbstractTrainer, Downsampler, FeatureExtractorFactory, NestedCVModel,
                           load_assembly)
'''


def _literal(value: Any) -> str:
    return repr(value)


def experiment_to_script(config: ExperimentConfig) -> str:
    """A runnable Python script (str) reproducing ``config`` with load_assembly/AbstractTrainer."""
    from encoding_core import __version__

    config = config.validate()
    if config.feature_spaces:
        return _feature_spaces_script(config, __version__)
    source, features, alignment, ridge, stats = (config.assembly, config.features, config.alignment,
                                                 config.ridge, config.stats)
    lines = [_HEADER.format(name=config.name, version=__version__)]

    options: dict[str, Any] = {}
    if source.path.strip().lower() != "demo":
        if source.subject:
            options["subject"] = source.subject
        if source.stories:
            options["stories"] = list(source.stories)
        if not source.path.lower().endswith((".h5", ".hdf5", ".pkl", ".pickle")):  # LeBel folder options
            if source.tr_time_convention != "midpoint":
                options["tr_time_convention"] = source.tr_time_convention
            if source.skip_missing:
                options["skip_missing"] = True
    option_text = "".join(f", {key}={_literal(value)}" for key, value in options.items())
    lines.append("# 1. Load the assembly")
    lines.append(f"assembly = load_assembly({_literal(source.path)}{option_text})")
    if source.test_story:
        lines.append(f"assembly.test_story = {_literal(source.test_story)}")
    lines.append("")

    if source.audio_dir:
        lines += [
            "# 2. Set up audio paths",
            f"base_audio_path = {_literal(source.audio_dir)}",
            f"audio_pattern = {_literal(source.audio_pattern)}",
            f"audio_overrides = {_literal(dict(source.audio_overrides))}",
            "for story_name in assembly.stories:",
            "    audio_file_path = audio_overrides.get(story_name) or os.path.join(",
            "        base_audio_path, audio_pattern.format(story=story_name))",
            "    assembly.story_data[story_name].audio_path = audio_file_path",
            "",
        ]
    else:
        lines += ["# 2. Audio paths: the assembly already carries them.", ""]

    modality = features.modality
    if modality == "speech":
        feature_dict: dict[str, Any] = dataclasses.asdict(features)
    elif modality == "wordrate":
        feature_dict = {}
    elif modality == "embeddings":
        feature_dict = {"vector_path": features.vector_path, "lowercase": features.lowercase,
                        "oov_handling": features.oov_handling}
    elif modality == "language_model":
        feature_dict = {"model_name": features.model_name, "lookback": features.lookback,
                        "last_token": features.last_token, "context_type": features.context_type,
                        "device": features.device}
    else:
        feature_dict = {"path": features.custom_path}
    from encoding_core.stats.significance import describe_test, planned_settings

    test_label = describe_test(planned_settings(stats.test, stats.alternative, stats.block_length, stats.min_block_s,
                                                stats.n_permutations))
    lines += [
        f"# 3. Create the feature extractor ({modality})",
        "extractor = FeatureExtractorFactory.create_extractor(",
        f"    modality={_literal(modality)},",
        f"    model_name={_literal(features.model_name if modality != 'wordrate' else 'wordrate')},",
        f"    config={_literal(feature_dict)},",
        f"    cache_dir={_literal(config.cache_dir)},",
        ")",
        "",
        "# 4. Downsampler and model",
        "downsampler = Downsampler()",
        "model = NestedCVModel(",
        '    model_name="ridge_regression",',
        f"    alphas={_literal(list(ridge.alphas))},",
        f"    n_splits={ridge.n_inner_folds}, chunk_length={ridge.chunk_length}, normalpha={ridge.normalpha},",
        f"    single_alpha={ridge.single_alpha}, fold_type={_literal(ridge.fold_type)}, trim_size={ridge.trim_size},",
        f"    n_outer_folds={ridge.n_outer_folds}, outer_fold_type={_literal(ridge.outer_fold_type)},",
        f"    seed={ridge.seed}, device={_literal(ridge.device)},",
        f"    # significance: {test_label}; Benjamini-Hochberg FDR q = {stats.fdr_q:g}",
        f"    test={_literal(stats.test)}, alternative={_literal(stats.alternative)},",
        f"    n_permutations={stats.n_permutations}, block_length={_literal(stats.block_length)}, fdr_q={stats.fdr_q!r},",
        f"    save_weights={ridge.save_weights},",
        ")",
        "",
        "# 5. Training parameters",
        f"fir_delays = {_literal(list(alignment.fir_delays))}",
        f"trimming_config = {_literal(alignment.trimming.as_dict())}",
        f"downsample_config = {_literal(dict(alignment.downsample_kwargs, method=alignment.downsample_method))}",
        "",
    ]
    if modality in ("wordrate", "embeddings", "custom"):
        layers = "[0]"  # no layers: one feature set
    else:
        layers = "range(extractor.n_layers)" if config.layers == "all" else _literal(list(config.layers))
    lines += [
        "# 6. Create and run the trainer, one layer at a time",
        f"for layer in {layers}:",
        "    trainer = AbstractTrainer(",
        "        assembly=assembly,",
        "        feature_extractors=[extractor],",
        "        downsampler=downsampler,",
        "        model=model,",
        "        fir_delays=fir_delays,",
        "        trimming_config=trimming_config,",
        f"        use_train_test_split={ridge.mode == 'train_test'},",
        '        logger_backend="local",',
        f"        results_dir={_literal(config.results_dir)},",
        "        layer_idx=layer,",
        f"        lookback={features.lookback},",
        "        downsample_config=downsample_config,",
        f"        story_selection={_literal(list(source.stories)) if source.stories else None},",
        f"        run_name={_literal(config.name)} + f\"-layer{{layer}}\",",
        "    )",
        "    metrics = trainer.train()",
        "    print(f\"Layer {layer}: median correlation {metrics['median_score']:.4f}, \"",
        "          f\"{metrics['n_significant']} significant voxels, run {metrics['run_id']}\")",
        "",
    ]
    return "\n".join(lines)


def _feature_spaces_script(config: ExperimentConfig, version: str) -> str:
    """A ``[[feature_spaces]]`` experiment as a script: the reference's API has no banded ridge, so
    the script runs the same TOML through ``encoding_core.run_experiment`` and prints the partition."""
    names = [space.name for space in config.feature_spaces]
    return "\n".join([
        f'"""Experiment {config.name!r} ({config.banded.mode} fit of the feature spaces {names}), exported by '
        f'encoding_core {version}.',
        "",
        "Run it with:  python this_script.py",
        '"""',
        "import numpy as np",
        "",
        "from encoding_core import ExperimentConfig, RunStore, run_experiment",
        "",
        f"CONFIG_TOML = {_literal(config.to_toml())}",
        "",
        "config = ExperimentConfig.from_toml(CONFIG_TOML)",
        "run = RunStore(config.results_dir).load(run_experiment(config))",
        "metrics, maps = run.metrics(0), run.arrays(0)",
        "for name, negative in metrics.get('n_negative', {}).items():",
        "    print(f'{name}: median r2 {np.nanmedian(maps[name]):.4f}, {negative} voxels negative (kept)')",
        "print('median r (joint prediction):', metrics['median_score'])",
        "",
    ])
