"""Stage 1 of Algorithm 1 ("OPTIMIZE EPM"): the WGAN-GP policy search, Eq. (3)-(4).

The EPM policy (M, P, W) is trained alone, after Faster AutoAugment (Hataya et
al., 2020), so that its perturbed images A stay close in distribution to clean
images B' and stay classifiable:

  L_EPM = d_theta(A, B') + eps * l                                   (Eq. 3)
  l = E_A CE(f(x), y) + E_B' CE(f(x'), y')                           (Eq. 4)

d_theta is the Wasserstein-1 estimate of a WGAN-GP critic D; D and the
classifier f share one registry backbone (:class:`SearchCritic`). Each step
splits every device's batch in halves: the first half is perturbed into A,
the second is B'. Then, in the order of the reference implementation:

1. critic step (A held fixed by ``stop_gradient``):
   minimise -(E D(B') - E D(A)) + lambda_gp * GP + w_f * CE(f(B'));
2. policy step (critic fixed, at its updated parameters): minimise
   -E D(A) + eps * CE(f(A)) with A = perturb(policy, x, mode='soft'), so
   gradients reach M, P and W. A is drawn afresh (new sub-policy choices and
   gates for the same images), as the reference implementation calls the
   policy a second time.

The logged ``wasserstein`` is the critic's estimate E D(B') - E D(A) before its
update, and ``epm_loss`` is Eq. (3) with Eq. (4) from the two steps' terms.

Both players use Adam (lr 1e-3, betas (0, ``search.b2``)). f's weight in the
critic step is ``search.classifier_weight`` (-1: eps, Faster AutoAugment's
choice); eps weights l in the policy's objective. The policy's mu and p are
projected back into [0, 1] after each update (``policy.project``). The step is
``jax.pmap``-ed over local devices with ``axis_name='batch'``; gradients and
metrics are ``pmean``-ed. Usage::

  policy = run_search(config, workdir)          # writes checkpoint, JSON, table, PNG
  policy = resolve_policy(config, workdir, key) # config.policy.source: init|search|<path>

The critic's backbone normalisation is ``config.search.norm``: ``'batch'``
(the default, as Faster AutoAugment's WideResNet), ``'layer'`` or ``'group'``
(per-sample, which WGAN-GP recommends because a per-sample gradient penalty
assumes each score depends on its own image; Gulrajani et al., 2017, Sec. 4),
or ``'none'``. The gradient penalty is always computed in inference mode
(batch norm with its running statistics), so each penalised score depends on
its own image. Measured on CIFAR-10 (results/cifar10_cpu/search_v2): without
normalisation the plain cnn8 critic's classifier does not learn at all, even
trained by cross-entropy alone, and batch norm trains it fastest.

Did the search learn? ``run_search`` ends with a health report
(:mod:`eriep_jax.search.health`): f's accuracy on held-out real images, a
cross-entropy-only control's (``search.control``), how far p, mu and W moved,
and a warning with the likely cause and the fix when f is within 5 points of
chance or no p or mu moved by more than 0.05. ``search_log.json`` keeps it.
"""

from eriep_jax.search.checks import check_search_config
from eriep_jax.search.critic import backbone_options, build_critic, critic_apply
from eriep_jax.search.health import search_health, summary_lines
from eriep_jax.policy.files import (CHECKPOINT_DIR, GRID_PNG, INITIAL_PARAMS_JSON, PARAMS_JSON,
                                    POLICY_JSON,
                                    SEARCH_LOG, SUMMARY_TXT, is_finished, load_policy,
                                    params_from_policy, save_policy)
from eriep_jax.search.loop import resolve_policy, run_search
from eriep_jax.search.step import (SearchState, control_step, create_search_state,
                                   make_control_step, make_search_step, search_step)

__all__ = [
    "SearchState", "create_search_state", "make_search_step", "search_step", "run_search",
    "control_step", "make_control_step", "search_health", "summary_lines", "INITIAL_PARAMS_JSON",
    "resolve_policy", "load_policy", "save_policy", "params_from_policy", "is_finished",
    "check_search_config", "build_critic", "critic_apply", "backbone_options",
    "CHECKPOINT_DIR", "GRID_PNG", "PARAMS_JSON", "POLICY_JSON", "SEARCH_LOG", "SUMMARY_TXT",
]
