"""The Environmental Perturbation Module (EPM) policy of Section 3.2, Eq. (1).

The EPM is a set of L sub-policies S_1..S_L. Each sub-policy is K consecutive
stages, and every stage holds, for each of the N candidate operations of
Table 1, a learnable magnitude mu, a learnable probability p and a selection
weight w (the parameters M, P, W of Eq. (1)):

    x_p = S(x_o; M, P, W)                                          (Eq. 1)

Every sample of a batch draws its own sub-policy uniformly at random: in
soft mode independently (`sample_subpolicies`); in hard mode the shuffled
batch is cut into L shares whose sizes differ by at most one, which take the
sub-policies in a random order (`assign_subpolicies`), so that hard mode runs
only the op each sample drew. Two ways to apply a stage k of sub-policy l exist:

* ``mode='soft'`` (training, differentiable in M, P and W): all N candidates
  are applied and mixed with the temperature-controlled softmax of Section 3.2,

      x_{k+1} = sum_n a_n * (g_n * O_n(x_k, s_n * mu_n) + (1 - g_n) * x_k),
      a = softmax(W[l, k] / T_sel),
      g_n ~ RelaxedBernoulli(p_n, T_b),

  where s_n is a random sign per sample for symmetric ops (+1 otherwise).
  Because sum_n a_n = 1 this is computed as
  (1 - sum_n c_n) x_k + sum_n c_n O_n with c_n = a_n g_n, which is the same
  function and returns x_k exactly where every g_n is 0.
* ``mode='hard'`` (the discretised policy "used in inference"): the top-1 op
  by W is applied with a hard Bernoulli(p) gate and a random sign. The
  `Policy` returned by `discretize` applies exactly the same function, with
  the same random draws for the same key. (Until 2026-12-04 hard mode drew the
  sub-policies as soft mode does and computed all N ops on every sample; the
  same key now gives different draws.)

`PolicyParams` stores M and P as the values themselves, projected back into
[0, 1] after every update (`project`; ``parameterization='projected'``, the
default), or as logits (``'sigmoid'``, files written before v2). The only
place where they are mapped to their ranges is `constrain` (mu and p, and
softmax(W / T_sel) for the selection weights). `init_policy` draws p, mu and W
uniformly in [0, 1] from its key (``init='uniform'``, Faster AutoAugment's
start) or sets constants (``init='constant'``).

Images follow the ops contract of `eriep_jax.ops`: float32, NHWC, values in
[0, 1]; `perturb` checks it with `ops.check_images` before any compute.

Modules: `config` (PolicyConfig, PolicyParams, constrain, init_policy, the
parameters' JSON and selection statistics), `apply` (sample_subpolicies,
assign_subpolicies and perturb, soft and hard), `discrete` (Operation, Policy, discretize,
random_policy) and `plot` (save_grid). Every public name is re-exported here.
"""

from eriep_jax.policy.apply import assign_subpolicies, perturb, sample_subpolicies
from eriep_jax.policy.config import (INITS, PARAMETERIZATIONS, PolicyConfig, PolicyParams,
                                     PolicyValues, constrain, init_policy, movement,
                                     params_from_json, params_to_json, project,
                                     selection_entropy, selection_stats, store_value)
from eriep_jax.policy.discrete import Operation, Policy, discretize, random_policy
from eriep_jax.policy.plot import save_grid

__all__ = [
    "INITS",
    "PARAMETERIZATIONS",
    "Operation",
    "Policy",
    "PolicyConfig",
    "PolicyParams",
    "PolicyValues",
    "assign_subpolicies",
    "constrain",
    "discretize",
    "init_policy",
    "movement",
    "params_from_json",
    "params_to_json",
    "perturb",
    "project",
    "random_policy",
    "sample_subpolicies",
    "save_grid",
    "selection_entropy",
    "selection_stats",
    "store_value",
]
