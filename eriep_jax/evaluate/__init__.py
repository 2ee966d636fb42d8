"""Evaluation: robustness sweeps (clean, Table-2 perturbations, Fig. 2 noise), reports, plots.

    results = evaluate_and_write(config, workdir, model=model, variables=variables)
    # -> workdir/eval/results.json, results.md, noise_sweep.png
    results = evaluate_workdir(config, workdir)      # from the latest checkpoint
"""

from eriep_jax.evaluate.robustness import (TABLE_COLUMNS, eval_names, evaluate_and_write,
                                           evaluate_workdir, markdown_table, plot_noise_sweep,
                                           robustness_sweep, write_comparison)

__all__ = ["TABLE_COLUMNS", "eval_names", "evaluate_and_write", "evaluate_workdir",
           "markdown_table", "plot_noise_sweep", "robustness_sweep", "write_comparison"]
