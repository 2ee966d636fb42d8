"""Evaluation: robustness sweeps (clean, Table-2 perturbations, Fig. 2 noise), reports, plots.

    results = evaluate_and_write(config, workdir, model=model, variables=variables)
    # -> workdir/eval/results.json, results.md, noise_sweep.png

``eriep_jax.experiment.evaluate_workdir`` evaluates a trained workdir (it opens
the run with ``eriep_jax.restore``); this package knows nothing of training.
"""

from eriep_jax.evaluate.robustness import (TABLE_COLUMNS, eval_names, evaluate_and_write,
                                           markdown_table, noise_name, plot_noise_sweep,
                                           robustness_sweep, write_comparison)

__all__ = ["TABLE_COLUMNS", "eval_names", "evaluate_and_write", "markdown_table", "noise_name",
           "plot_noise_sweep", "robustness_sweep", "write_comparison"]
