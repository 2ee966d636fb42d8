r"""The README's main job: standard vs ERIEP on the built-in offline demo set.

  python launch.py --config=configs/demo.py --workdir=/tmp/eriep_demo

Runs offline (scikit-learn's 8x8 digits, no download) on a 2-core CPU in under a minute,
all included (53 s on the idle dev box, 2026-12-05): the stage-1 policy search (its own short block below), then stage-2
training of `standard` and `eriep` back to back (each in <workdir>/<method>), then the
robustness evaluation of both. It prints one table of clean, perturb-1, perturb-2,
perturb-3 and noise-0.2 test accuracy and writes it to <workdir>/comparison.{json,md}
(per method: <workdir>/<method>/eval/results.{json,md} and a noise-sweep plot).
There is no paper number for this set: it is a smoke-scale reproduction of Table 3's
protocol (Adam 1e-3, no train augmentation) on a small CNN.
"""

from configs import default


def get_config(arg: str | None = None):
  del arg
  c = default.get_config()
  c.compare_methods = ("standard", "eriep")
  c.method = "eriep"
  c.alpha = 0.5
  c.sync_freq = 20

  c.model.name = "cnn8"
  c.model.width = 0.25

  c.data.source = "demo"
  # The demo's 1,797 images are born as arrays: the in-memory pipeline serves them without
  # TensorFlow (seconds of import and tf.data start-up saved). Its batches equal tf.data's
  # bit for bit here (tests/test_launch.py); 'tfdata' or 'auto' give the tf.data path.
  c.data.pipeline = "memory"
  c.data.name = "digits"
  # The 8x8 digits rendered at 16x16, not the CIFAR models' 32x32: a quarter of the pixels,
  # no information lost (16x16 is already 2x the digits' own resolution), and the whole demo
  # then fits in a minute on 2 CPU cores (83 s at 32x32 on the same idle box).
  c.data.image_size = 16
  c.data.shuffle_buffer = 2000
  c.batch_size = 64
  c.eval_batch_size = 200
  c.num_epochs = 8
  c.optimizer.learning_rate = 2e-3

  c.policy.num_subpolicies = 4

  # --- Stage-1 search phase (about 20 s of the minute, most of it compiling). ---
  # A short WGAN-GP search (Eq. 3-4) into <workdir>/search, whose policy stage 2
  # then starts from: a narrow cnn4 critic, 30 steps of 32 images (16 A + 16 B'),
  # Faster AutoAugment's eps, lambda_gp and Adam settings.
  c.policy.source = "search"
  c.search.backbone = "cnn4"
  c.search.width = 0.25
  c.search.critic_hidden = 32
  c.search.batch_size = 32
  c.search.num_examples = 960
  c.search.num_steps = 30
  c.search.log_every_steps = 10

  c.eval.noise_stds = (0.0, 0.1, 0.2, 0.3, 0.4)
  c.log_every_steps = 20
  c.checkpoint_every_steps = 200
  return c
