"""Evaluation: robustness sweeps (clean, Table-2 perturbations, Fig. 2 noise), reports, plots.

    results = evaluate_and_write(config, workdir, model=model, variables=variables)
    # -> workdir/eval/results.json, results.md, noise_sweep.png

The perturbations themselves (torchvision semantics, jit-able, keyed per
sample) are in ``eriep_jax.evaluate.perturbations``::

    x_p = get_eval_perturbation('perturb2')(images, key)   # 'clean', 'perturb1/2/3', 'noise_0.2'

Grad-CAM (Fig. 4) for every registry model, and the CAM-stability score::

    cams = grad_cam(model, variables, images)     # (B, H, W) in [0, 1], predicted class
    blurred = fig4_blur(images)                   # the paper's radius-9 blur, scaled to H

CIFAR-10-C through TFDS (``config.eval.corruptions``; see ``corruptions``)::

    c = corruption_sweep(config, model=model, variables=variables)   # per set, mean
    rel = relative_corruption_errors(c, clean_acc, c_standard, clean_acc_standard)

``eriep_jax.experiment.evaluate_workdir`` evaluates a trained workdir (it opens
the run with ``eriep_jax.restore``); this package knows nothing of training.
"""

from eriep_jax.evaluate import corruptions
from eriep_jax.evaluate import gradcam
from eriep_jax.evaluate import perturbations
from eriep_jax.evaluate.corruptions import corruption_sweep, relative_corruption_errors
from eriep_jax.evaluate.gradcam import cam_stability, fig4_blur, grad_cam
from eriep_jax.evaluate.perturbations import EVAL_PERTURBATIONS, get_eval_perturbation
from eriep_jax.evaluate.robustness import (TABLE_COLUMNS, eval_names, evaluate_and_write,
                                           markdown_table, noise_name, plot_noise_sweep,
                                           robustness_sweep, write_comparison)

__all__ = ["EVAL_PERTURBATIONS", "TABLE_COLUMNS", "cam_stability", "corruption_sweep",
           "corruptions", "eval_names", "relative_corruption_errors",
           "evaluate_and_write", "fig4_blur", "get_eval_perturbation", "grad_cam", "gradcam", "markdown_table", "noise_name", "perturbations",
           "plot_noise_sweep", "robustness_sweep", "write_comparison"]
