"""Command line: ``python -m encoding_core {train,sweep,demo,runs,export,config-template,check-data,job-run}``.

User errors (every EncodingCoreError) print one line ``error: ...`` and exit with code 2;
Ctrl-C exits with 130. Progress bars are drawn with tqdm unless ``--quiet``.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
from typing import Any, Iterator, Optional, Sequence

from encoding_core.config import ExperimentConfig
from encoding_core.common.errors import ConfigError, EncodingCoreError, JobCancelled

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m encoding_core",
                                     description="Voxelwise fMRI encoding models from speech-model features.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--results-dir", help="folder for runs (overrides the config's results_dir)")
        p.add_argument("--cache-dir", help="folder for cached features (overrides the config's cache_dir)")
        p.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")

    train = sub.add_parser("train", help="fit one layer of CONFIG.toml")
    train.add_argument("config", help="experiment TOML file")
    train.add_argument("--layer", type=int, help="0-based layer (needed when the config lists several)")
    common(train)
    sweep = sub.add_parser("sweep", help="fit every layer listed in CONFIG.toml (layers = \"all\" for all)")
    sweep.add_argument("config", help="experiment TOML file")
    cluster = sweep.add_mutually_exclusive_group()
    cluster.add_argument("--scheduler", metavar="ADDRESS",
                         help="run on a Dask cluster: the scheduler's address, e.g. tcp://HOST:8786")
    cluster.add_argument("--workers", type=int, metavar="N", help="run on N local Dask worker processes")
    common(sweep)
    compare = sub.add_parser("compare", help="every layer of several models on CONFIG.toml's targets, as one run "
                                             "group with a model x layer table")
    compare.add_argument("config", help="experiment TOML file (speech or language_model features)")
    compare.add_argument("--models", required=True, help="comma-separated model names or folders")
    common(compare)
    demo = sub.add_parser("demo", help="run the built-in simulated demo end to end, all layers")
    common(demo)
    runs = sub.add_parser("runs", help="list runs in the results folder")
    runs.add_argument("--results-dir", default=None, help="results folder (default: results)")
    export = sub.add_parser("export", help="print a Python script that runs CONFIG.toml with the tutorial API")
    export.add_argument("config", help="experiment TOML file")
    sub.add_parser("config-template", help="print a default experiment TOML")
    check = sub.add_parser("check-data", help="check a LeBel (ds003020) folder story by story before loading it "
                                              "(exit 1 when a story cannot load)")
    check.add_argument("path", help="the dataset root (holding derivative/ or derivatives/, and stimuli/)")
    check.add_argument("--subject", help="check this subject's responses only (default: every subject)")
    job = sub.add_parser("job-run", help=argparse.SUPPRESS)
    job.add_argument("job_dir")
    return parser


def _load_config(args: argparse.Namespace) -> ExperimentConfig:
    config = ExperimentConfig.load(args.config)
    return _override_dirs(config, args)


def _override_dirs(config: ExperimentConfig, args: argparse.Namespace) -> ExperimentConfig:
    if getattr(args, "results_dir", None):
        config.results_dir = args.results_dir
    if getattr(args, "cache_dir", None):
        config.cache_dir = args.cache_dir
    return config


def _format(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def summary_table(run: Any) -> str:
    """A plain-text per-layer table of a loaded run (median r, mean r, significant voxels, ...)."""
    header = f"{'layer':>5}  {'median r':>9}  {'mean r':>9}  {'n sig':>7}  {'% sig':>7}  {'median r/ceiling':>16}"
    lines = [header, "-" * len(header)]
    rows = run.summary.get("layers", {})
    for layer in sorted(rows, key=int):
        row = rows[layer]
        lines.append(f"{layer:>5}  {_format(row['median_r']):>9}  {_format(row['mean_r']):>9}  "
                     f"{row['n_significant']:>7}  {_format(row['percent_significant'], 1):>7}  "
                     f"{_format(row.get('median_normalized_r')):>16}")
    best = run.summary.get("best_layer")
    rule = run.summary.get("best_layer_rule") or {}
    if best is not None:
        lines.append(f"best layer: {best} (by {rule.get('label') or 'median r over all voxels (whole brain)'})")
    if rows:
        from encoding_core.studio import significance_label

        first = sorted(rows, key=int)[0]
        lines.append(f"p-values: {significance_label(run.metrics(int(first)), run.config)}")
    return "\n".join(lines)


def partition_table(run: Any) -> str:
    """Plain-text variance partition of a joint feature-space run: median r² and negative voxels per map."""
    import numpy as np

    metrics, arrays = run.metrics(0), run.arrays(0)
    negative = metrics.get("n_negative", {})
    header = f"{'map':<28}  {'median r2':>9}  {'mean r2':>9}  {'negative voxels (kept)':>22}"
    lines = ["variance partition on the test story (r2):", header, "-" * len(header)]
    for name in [*negative]:
        values = np.asarray(arrays[name], dtype=np.float64)
        lines.append(f"{name:<28}  {_format(float(np.nanmedian(values))):>9}  {_format(float(np.nanmean(values))):>9}  "
                     f"{negative[name]:>22}")
    return "\n".join(lines)


@contextlib.contextmanager
def _progress_bars(quiet: bool) -> Iterator[Any]:
    """Progress bars on the terminal for the block (None with ``--quiet``), closed afterwards."""
    from encoding_core.common.progress import TqdmProgress

    progress = None if quiet else TqdmProgress()
    try:
        yield progress
    finally:
        if progress is not None:
            progress.close()


def _run(config: ExperimentConfig, quiet: bool, scheduler: Optional[str] = None) -> int:
    from encoding_core.experiment.pipeline import run_experiment
    from encoding_core.experiment.runstore import RunStore

    with _progress_bars(quiet) as progress:
        if scheduler:
            from encoding_core.experiment.distributed import run_sweep_distributed

            run_id = run_sweep_distributed(config, scheduler=scheduler, progress=progress)
        else:
            run_id = run_experiment(config, progress=progress)
    store = RunStore(config.results_dir)
    run = store.load(run_id)
    if run.simulated:
        print("SIMULATED data (not a real brain).")
    print(summary_table(run))
    from encoding_core.studio import demo_ground_truth_rows

    truth = demo_ground_truth_rows(run)
    if truth:
        print("against the planted ground truth (significant vertices inside the planted regions = precision; "
              "share of each region found = recall):")
        for row in truth:
            print("  " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    if config.feature_spaces and config.banded.mode == "joint":
        print(partition_table(run))
    print(f"run {run_id}: {run.path}")
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    config = _load_config(args)
    if config.feature_spaces:  # one banded / variance-partitioning fit; each space names its own layer
        if args.layer is not None:
            raise ConfigError(f"{args.config} has [[feature_spaces]]: each space gives its own layer; drop --layer.")
        return _run(config.validate(), args.quiet)
    if args.layer is not None:
        config.layers = [args.layer]
    if config.layers == "all" or len(config.layers) != 1:
        raise ConfigError(f"train fits one layer but {args.config} has layers = {config.layers!r}; pass "
                          f"--layer N or use `sweep` for several layers.")
    return _run(config.validate(), args.quiet)


def cmd_sweep(args: argparse.Namespace) -> int:
    scheduler = args.scheduler or (f"local:{args.workers}" if args.workers is not None else None)
    return _run(_load_config(args), args.quiet, scheduler)


def cmd_demo(args: argparse.Namespace) -> int:
    from encoding_core.demo import demo_config

    config = _override_dirs(demo_config(), args)
    return _run(config, args.quiet)


def cmd_runs(args: argparse.Namespace) -> int:
    from encoding_core.experiment.runstore import RunStore

    infos = RunStore(args.results_dir or "results").list()
    if not infos:
        print("no runs")
        return EXIT_OK
    print(f"{'run id':<23} {'status':<10} {'best median r':>13}  {'subject':<10} name")
    for info in infos:
        sim = " (simulated)" if info.simulated else ""
        print(f"{info.run_id:<23} {info.status:<10} {_format(info.best_median_r):>13}  {info.subject:<10} "
              f"{info.name}{sim}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from encoding_core.experiment.export import experiment_to_script

    sys.stdout.write(experiment_to_script(ExperimentConfig.load(args.config)))
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from encoding_core.experiment.comparison import comparison_table, run_model_layer_comparison

    config = _load_config(args)
    with _progress_bars(args.quiet) as progress:
        group_id = run_model_layer_comparison(config, args.models.split(","), progress=progress)
    header = f"{'model':<40}  {'layer':>5}  {'median r':>9}  {'median r (sig.)':>15}  {'n sig':>7}"
    print(header)
    print("-" * len(header))
    for row in comparison_table(config.results_dir, group_id):
        print(f"{row['model'][-40:]:<40}  {row['layer']:>5}  {_format(row['median_r']):>9}  "
              f"{_format(row['median_r_significant']):>15}  {row['n_significant']:>7}")
    print(f"run group {group_id}")
    return EXIT_OK


def cmd_config_template(args: argparse.Namespace) -> int:
    sys.stdout.write(ExperimentConfig().to_toml())
    return EXIT_OK


def cmd_check_data(args: argparse.Namespace) -> int:
    from encoding_core.assembly.check_data import check_lebel_folder

    report = check_lebel_folder(args.path, subject=args.subject)
    print(report.table())
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_job_run(args: argparse.Namespace) -> int:
    from encoding_core.experiment.jobs import run_job

    return run_job(args.job_dir)


COMMANDS = {"train": cmd_train, "sweep": cmd_sweep, "compare": cmd_compare, "demo": cmd_demo, "runs": cmd_runs, "export": cmd_export,
            "config-template": cmd_config_template, "check-data": cmd_check_data, "job-run": cmd_job_run}


def _silence_library_progress_bars() -> None:
    """``--quiet``: no Hugging Face progress bars (e.g. transformers' "Loading weights") on stderr."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read when huggingface_hub / transformers import
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 failed/cancelled, 2 user error, 130 Ctrl-C)."""
    args = _build_parser().parse_args(argv)
    quiet = getattr(args, "quiet", False)
    if args.command != "job-run":
        logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s: %(message)s")
    if quiet:
        _silence_library_progress_bars()
    try:
        return COMMANDS[args.command](args)
    except JobCancelled as exc:
        print(f"cancelled: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except EncodingCoreError as exc:
        message = " ".join(str(exc).split())
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
