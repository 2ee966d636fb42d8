"""Evaluation: robustness sweeps (clean, Table-2 perturbations, Fig. 2 noise), reports, plots.

    results = evaluate_and_write(config, workdir, model=model, variables=variables)
    # -> workdir/eval/results.json, results.md, noise_sweep.png

The perturbations themselves (torchvision semantics, jit-able, keyed per
sample) are in ``eriep_jax.evaluate.perturbations``::

    x_p = get_eval_perturbation('perturb2')(images, key)   # 'clean', 'perturb1/2/3', 'noise_0.2'

``eriep_jax.experiment.evaluate_workdir`` evaluates a trained workdir (it opens
the run with ``eriep_jax.restore``); this package knows nothing of training.
"""

from eriep_jax.evaluate import perturbations
from eriep_jax.evaluate.perturbations import EVAL_PERTURBATIONS, get_eval_perturbation
from eriep_jax.evaluate.robustness import (TABLE_COLUMNS, eval_names, evaluate_and_write,
                                           markdown_table, noise_name, plot_noise_sweep,
                                           robustness_sweep, write_comparison)

__all__ = ["EVAL_PERTURBATIONS", "TABLE_COLUMNS", "eval_names", "evaluate_and_write",
           "get_eval_perturbation", "markdown_table", "noise_name", "perturbations",
           "plot_noise_sweep", "robustness_sweep", "write_comparison"]
