"""Experiment loggers of the reference's trainer: TensorBoard and Weights & Biases (optional extras).

Both log what the reference logs, under its names: the scalars ``median_correlation``,
``mean_correlation``, ``std_correlation`` and ``n_significant_voxels``, and the histograms
``correlation_histogram_data_all`` (every finite r) and ``correlation_histogram_data_significant``
(the significant voxels' r). The step is the layer. (The reference also logs images: histograms
and fsaverage surface plots; the run store and the app's Results page have those here.)

- TensorBoard (``pip install tensorboard``): ``torch.utils.tensorboard.SummaryWriter`` writing
  to ``<results_dir>/runs/<run_name>/`` (the reference's folder).
- wandb (``pip install wandb``): ``mode`` None means the ``WANDB_MODE`` environment variable,
  else ``"offline"``: nothing is sent and no login is attempted; the run is written under
  ``<results_dir>/wandb/offline-run-.../`` (the log says where, and how to upload it with
  ``wandb sync``). ``mode="online"`` logs live (needs ``wandb login`` and a network).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from encoding_core.common.errors import ConfigError, EncodingCoreError

logger = logging.getLogger(__name__)

LOGGER_BACKENDS = ("local", "tensorboard", "wandb")
"""``local``: only the run store (always written); the others log to it as well."""
WANDB_MODES = ("offline", "online", "disabled")


class ExperimentLogger:
    """Logs scalars and histograms; ``close()`` flushes. ``location`` is where it wrote (or None)."""

    location: Optional[str] = None

    def log_scalar(self, name: str, value: float, step: Optional[int] = None) -> None:  # pragma: no cover
        raise NotImplementedError

    def log_histogram(self, name: str, values: np.ndarray, step: Optional[int] = None) -> None:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        pass


class TensorBoardLogger(ExperimentLogger):
    def __init__(self, log_dir: str) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise EncodingCoreError("logger_backend='tensorboard' needs the tensorboard package: pip install -r "
                                    "requirements-extras.txt (or pip install tensorboard), or use "
                                    "logger_backend='local'.") from None
        self.location = str(log_dir)
        self.writer = SummaryWriter(log_dir=self.location)

    def log_scalar(self, name: str, value: float, step: Optional[int] = None) -> None:
        self.writer.add_scalar(name, float(value), global_step=step)

    def log_histogram(self, name: str, values: np.ndarray, step: Optional[int] = None) -> None:
        if np.asarray(values).size:
            self.writer.add_histogram(name, np.asarray(values, dtype=np.float64), global_step=step)

    def close(self) -> None:
        self.writer.close()
        logger.info("TensorBoard events written to %s (view with: tensorboard --logdir %s).", self.location,
                    Path(self.location).parent)


class WandBLogger(ExperimentLogger):
    def __init__(self, project: str, run_name: str, results_dir: str, mode: Optional[str] = None,
                 config: Optional[Mapping[str, Any]] = None) -> None:
        try:
            import wandb
        except ImportError:
            raise EncodingCoreError("logger_backend='wandb' needs the wandb package: pip install -r "
                                    "requirements-extras.txt (or pip install wandb), or use "
                                    "logger_backend='local'.") from None
        mode = (mode or os.environ.get("WANDB_MODE") or "offline").strip().lower()
        if mode == "dryrun":
            mode = "offline"
        if mode not in WANDB_MODES:
            raise ConfigError(f"wandb_mode must be one of {WANDB_MODES}; got {mode!r}.")
        root = Path(results_dir).absolute()
        root.mkdir(parents=True, exist_ok=True)
        self.mode = mode
        self.run = wandb.init(project=project, name=run_name, mode=mode, dir=str(root),
                              config=dict(config or {}), reinit="finish_previous")
        run_dir = Path(self.run.dir).parent if getattr(self.run, "dir", None) else root / "wandb"
        self.location = str(run_dir)
        self._wandb = wandb
        if mode == "offline":
            logger.info("wandb runs offline (no login, nothing sent): the run is in %s; upload it later with "
                        "`wandb sync %s`.", self.location, self.location)

    def log_scalar(self, name: str, value: float, step: Optional[int] = None) -> None:
        self.run.log({name: float(value)})

    def log_histogram(self, name: str, values: np.ndarray, step: Optional[int] = None) -> None:
        if np.asarray(values).size:
            self.run.log({name: self._wandb.Histogram(np.asarray(values, dtype=np.float64))})

    def close(self) -> None:
        self.run.finish()


def make_logger(backend: str, results_dir: str, run_name: str, project: Optional[str] = None,
                wandb_mode: Optional[str] = None, config: Optional[Mapping[str, Any]] = None) -> Optional[ExperimentLogger]:
    """The logger for ``backend`` (None for ``local``)."""
    if backend == "local":
        return None
    if backend == "tensorboard":
        return TensorBoardLogger(str(Path(results_dir) / "runs" / run_name))
    if backend == "wandb":
        return WandBLogger(project or "abstract-trainer", run_name, results_dir, wandb_mode, config)
    raise ConfigError(f"Unsupported logger_backend {backend!r}; use one of {LOGGER_BACKENDS}.")


def log_reference_metrics(experiment_logger: ExperimentLogger, metrics: Mapping[str, Any],
                          step: Optional[int] = None) -> None:
    """The reference trainer's ``log_metrics``: three r summaries, two r histograms, the significant count."""
    experiment_logger.log_scalar("median_correlation", metrics["median_score"], step)
    experiment_logger.log_scalar("mean_correlation", metrics["mean_score"], step)
    experiment_logger.log_scalar("std_correlation", metrics["std_score"], step)
    if "correlations" in metrics and "significant_mask" in metrics:
        r = np.asarray(metrics["correlations"], dtype=np.float64)
        mask = np.asarray(metrics["significant_mask"], dtype=bool)
        experiment_logger.log_histogram("correlation_histogram_data_all", r[np.isfinite(r)], step)
        significant = r[mask]
        experiment_logger.log_histogram("correlation_histogram_data_significant",
                                        significant[np.isfinite(significant)], step)
    experiment_logger.log_scalar("n_significant_voxels", metrics["n_significant"], step)
