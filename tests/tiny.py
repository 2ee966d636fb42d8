"""The suite's one tiny configuration, and the step set-up that several test files share.

Not a test module (pytest collects test_*.py only). Every test that builds a config
starts from `config()`: one model (cnn4 at width 1/16), one op set, one batch size, on
the offline demo digits. The jobs of different tests then build the same programs,
and the suite's persistent XLA cache (tests/conftest.py) compiles each once per
worker. A test overrides only what it is about, and says why.
"""

import jax
import jax.numpy as jnp
import ml_collections

from eriep_jax import policy
from eriep_jax.train import loop, state as state_lib, step as step_lib

import configs.default as default_config

OPS = ("brightness", "contrast")   # two cheap, differentiable Table 1 ops
IMAGE_SHAPE = (8, 8, 3)            # the step tests' random images


def config(**overrides) -> ml_collections.ConfigDict:
  """configs/default.py made tiny; ``overrides`` set fields, a dict updates a sub-config.

  For example ``config(num_train_steps=4, data=dict(source="folder", root=d))``.
  """
  c = default_config.get_config()
  c.model.name = "cnn4"   # the shallowest net: the same code paths, the shortest compile
  c.model.width = 1 / 16
  c.data.source = "demo"
  c.data.name = "digits"
  c.data.num_train_examples = 96
  c.data.shuffle_buffer = 96
  c.policy.num_subpolicies = 2
  c.policy.ops = OPS
  c.batch_size = 8
  c.num_train_steps = 16
  c.sync_freq = 3
  c.log_every_steps = 1
  c.checkpoint_every_steps = 1
  c.progress = False
  for key, value in overrides.items():
    if isinstance(value, dict):
      c[key].update(value)
    else:
      c[key] = value
  return c


def data_config(**data_fields) -> ml_collections.ConfigDict:
  """configs/default.py with these ``data`` fields: the pipeline tests read the defaults."""
  c = default_config.get_config()
  c.data.update(data_fields)
  return c


def job(**overrides) -> ml_collections.ConfigDict:
  """`config()` as a short evaluated run: 4 steps, checkpoints at 2 and 4, clean scores only."""
  c = config(num_train_steps=4, checkpoint_every_steps=2, eval_batch_size=120,
             write_plots=False, eval=dict(noise_stds=(0.0,), perturbations=("clean",)))
  for key, value in overrides.items():
    if isinstance(value, dict):
      c[key].update(value)
    else:
      c[key] = value
  return c


def det_perturb(params, images, key, *, mode):
  """A deterministic, differentiable stand-in for the EPM (layout independent)."""
  del key, mode
  s = jax.nn.sigmoid(jnp.mean(params.magnitude))
  return jnp.clip(images * (0.4 + s) + 0.1 * s, 0.0, 1.0)


def step_setup(c, perturb_fn=None):
  """A fresh train state, the jitted one-device step and the pmapped step for ``c``."""
  model = loop.build_model(c, 10)
  pmodel = loop.build_model(c, 10, bn_axis_name="batch")
  tx = state_lib.make_optimizer(c, 10)
  ptx = state_lib.make_policy_optimizer(c)
  pol = policy.init_policy(jax.random.key(1), c.policy)
  st = state_lib.create_train_state(model, pol, jax.random.PRNGKey(0), image_shape=IMAGE_SHAPE,
                                    tx=tx, policy_tx=ptx)
  lr_fn = state_lib.learning_rate_schedule(c, 10)
  kw = dict(tx=tx, policy_tx=ptx, learning_rate_fn=lr_fn, perturb_fn=perturb_fn)
  single = jax.jit(step_lib.make_train_step(c, model=model, axis_name=None, **kw))
  multi = jax.pmap(step_lib.make_train_step(c, model=pmodel, axis_name="batch", **kw),
                   axis_name="batch", in_axes=(0, 0, None))
  return st, single, multi
