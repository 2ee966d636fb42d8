r"""CIFAR-10 stage-1 policy search (Algorithm 1, "OPTIMIZE EPM"; Eq. 3-4).

  python launch.py --config=configs/cifar10_search.py --workdir=/ckpt/c10_search --mode=search
  # offline, from the project's JPEG archive instead of TFDS:
  python launch.py --config=configs/cifar10_search.py:folder --workdir=/ckpt/c10_search \
      --mode=search
  # a few CPU minutes (narrow critic, 40 steps):
  python launch.py --config=configs/cifar10_search.py:runlocal --workdir=/tmp/c10_search \
      --mode=search
  # then stage 2 from the searched policy:
  python launch.py --config=configs/cifar10_cnn8.py --workdir=/ckpt/c10_cnn8 \
      --config.policy.source=/ckpt/c10_search

Writes to the workdir: policy_checkpoint/ (orbax), policy.json (the discretised
policy), policy_summary.txt (also printed) and policy_grid.png, plus metrics.

Faster AutoAugment's defaults (Hataya et al., 2020, and its public
reimplementation): eps = 0.1, lambda_gp = 10, Adam lr 1e-3 with betas
(0, 0.999) for the critic and the policy, L = 10 sub-policies of K = 2 stages,
selection temperature 0.05, 20 epochs over a 4,000-image subset, batch 128
split in halves (64 augmented A, 64 clean B'). Faster AutoAugment's critic is a
WideResNet-40-2; ours is the paper's 8-layer CNN from the registry (the
backbone the ERIEP paper trains), without batch norm (see
eriep_jax/search/__init__.py for why), with a linear classifier head and a
Dense(128)-ReLU-Dense(1) critic head on its pooled features.

Expected runtime: 620 steps (4,000 // 128 = 31 per epoch x 20). Measured with
`python -m bench.search` (the step alone, no input pipeline): 5 ms per step on
one H200 (about 3 s of steps plus about 35 s of compilation), 4.8 s per step on
a contended 2-core CPU (about 0.8 h). Faster AutoAugment reports 0.23 GPU-hours
for its CIFAR-10 search. Expected result: not yet measured on a full run; the
first 16 steps on the real data ran stably (GP 0.03-1.2, Wasserstein estimate
0-1.1); the Wasserstein estimate should shrink and the op-weight entropy fall
below log(17) = 2.83 as the policy settles.
"""

from configs import common
from configs import default


def fasteraa(c) -> None:
  """Faster AutoAugment's own search settings (its reimplementation, moskomule/dda).

  WideResNet-40-2 critic with batch norm, the classifier's weight eps = 0.1 in
  both steps, its per-pixel gradient-penalty norm, every policy parameter
  drawn uniformly in [0, 1] and p and mu stored as values. dda clamps the
  values where they are used (no gradient past a bound); here they are
  projected after each update instead, the one departure. dda also applies
  one sub-policy to each of 8 chunks of the batch; here every image draws its own.
  """
  c.search.backbone = "wrn40_2"
  c.search.width = 1.0
  c.search.norm = "batch"
  c.search.critic_hidden = 128   # dda: Linear(128, 128)-ReLU-Linear(128, 1) on WRN-40-2's 128 features
  c.search.classifier_weight = -1.0  # = eps
  c.search.b2 = 0.999
  c.search.gp_norm = "pixel"
  c.policy.init = "uniform"
  c.policy.parameterization = "projected"


def get_config(arg: str | None = None):
  flags = common.parse_arg(arg, extra=("fasteraa", "cpu"))
  c = default.get_config()
  c.data.source = "tfds"
  c.data.name = "cifar10"
  c.data.train_augment = "none"

  c.policy.num_subpolicies = 10
  c.policy.num_stages = 2
  c.policy.selection_temperature = 0.05

  c.search.eps = 0.1
  c.search.lambda_gp = 10.0
  c.search.learning_rate = 1e-3
  c.search.b1 = 0.0
  c.search.b2 = 0.9
  c.search.num_epochs = 20
  c.search.num_examples = 4000
  c.search.batch_size = 128
  c.search.backbone = "cnn8"
  c.search.width = 1.0
  c.search.critic_hidden = 128
  c.search.norm = "batch"
  c.search.classifier_weight = 1.0
  c.search.gp_norm = "sample"
  c.search.control = True
  c.search.num_heldout = 1000
  c.search.log_every_steps = 20
  c.policy.init = "uniform"
  c.policy.parameterization = "projected"
  if "fasteraa" in flags:
    fasteraa(c)
  if "cpu" in flags:
    # The CPU study's search (results/cifar10_cpu/search_v2): the critic at half width, so
    # that 620 steps take ~25 min on a 2-core box instead of ~90; everything else as above.
    c.search.width = 0.5
  if "folder" in flags or "runlocal" in flags or "cpu" in flags:
    common.use_cifar10_folder(c)
  if "runlocal" in flags:
    c.search.width = 0.25
    c.search.batch_size = 32
    c.search.num_steps = 40
    c.search.log_every_steps = 10
    c.search.control = False
    c.data.shuffle_buffer = 4000
  return c
