"""Step 6, experiments: run a whole configured experiment and keep its results.

- :mod:`~encoding_core.experiment.pipeline`: ``run_experiment`` (assembly -> audio -> features ->
  alignment -> fit -> statistics -> run) and its public pieces (``prepare_targets``, ``prepare_features``...);
- :mod:`~encoding_core.experiment.runstore`: the run store (one folder per run, atomic files);
- :mod:`~encoding_core.experiment.jobs`: background jobs in a separate process, progress in files;
- :mod:`~encoding_core.experiment.distributed`: feature extraction and layer fits on a Dask cluster;
- :mod:`~encoding_core.experiment.export`: an experiment as a reference-style Python script.

May import every step below it (assembly, features, downsample, models, stats) and ``config``.
"""
