"""Default configuration shared by every experiment config.

Every experiment config imports this file and overrides fields; nothing in the
library hard-codes a hyperparameter. Field meanings are documented inline.

    python launch.py --config=configs/default.py --workdir=/tmp/eriep_default
"""

import ml_collections

# All 17 Table-1 operations, in the table's order.
ALL_OPS = (
    "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "flip",
    "solarize", "posterize", "invert", "contrast", "color", "brightness",
    "sharpness", "auto_contrast", "equalize", "cutout", "sample_pairing",
)


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0                  # N's init, the data order and the EPM's draws (one run)
  c.seeds = ()                # e.g. (0, 1, 2): each variant once per seed, <workdir>/<variant>/seed_<k>

  # --- Stage 2 (Algorithm 1, "TRAIN NETWORK"), Eq. (5)-(9). ---
  c.method = "eriep"          # eriep | standard | augment | supcon | unicl | jsd
  c.reference = "frozen"      # frozen (as written) | live (R = N's current params)
  # Algorithm 1, line 11: eriep updates the EPM in stage 2 (as written). False keeps the
  # policy as it came in (the 'fixedpolicy' modifier, a studied reading, not the paper's).
  c.update_policy = True
  c.alpha = 0.5               # weight of |L_N - L_R| in Eq. (9)
  c.reduction = "example"     # example: mean_i |L_N,i - L_R,i| | batch: |mean L_N - mean L_R|
  c.sync_freq = 100           # R <- N every sync_freq steps

  # --- Table 4's baselines and a consistency baseline (eriep_jax.losses). ---
  # supcon (Khosla et al., 2020): SupCon on two views per image, then a linear classifier on
  # the frozen encoder (SupContrast's evaluation); both stages in one run.
  c.supcon = ml_collections.ConfigDict()
  c.supcon.views = "supcontrast"   # supcontrast: crop/flip/jitter/grayscale | epm: 2 hard EPM draws
  c.supcon.temperature = 0.1
  c.supcon.base_temperature = 0.07 # SupContrast's loss scale tau / base_tau
  c.supcon.linear_epochs = -1      # linear-classifier epochs; -1: num_epochs
  c.supcon.linear_learning_rate = -1.0  # -1: optimizer.learning_rate
  c.supcon.stage = "encoder"       # set by the experiment: encoder, then linear
  # unicl (Yang et al., 2022): bidirectional image-label contrast with learnable class embeddings.
  c.contrastive = ml_collections.ConfigDict()
  c.contrastive.proj_dim = 128     # the embedding of supcon and unicl
  c.contrastive.logit_scale_init = 1 / 0.07   # unicl's learnable inverse temperature (CLIP's init)
  # jsd (Hendrycks et al., 2020, AugMix): CE(clean) + weight * JS(clean, 2 hard EPM views).
  c.jsd = ml_collections.ConfigDict()
  c.jsd.weight = 12.0
  # oracle (a positive control, not a method of the paper): cross-entropy on training images
  # perturbed by the evaluation's own perturbations (eriep_jax.evaluate.perturbations.oracle).
  c.oracle = ml_collections.ConfigDict()
  c.oracle.max_noise_std = 0.4    # the noise branch's std ~ U[0, max_noise_std] per image

  # --- Model (eriep_jax.models.get_model). ---
  c.model = ml_collections.ConfigDict()
  c.model.name = "cnn8"
  c.model.width = 1.0         # channel multiplier
  c.model.batch_norm = True
  c.model.dtype = "float32"   # compute dtype; params and logits stay float32
  c.model.normalize = True    # mean/std normalisation at the model input

  # --- Data (eriep_jax.data). ---
  c.data = ml_collections.ConfigDict()
  c.data.source = "tfds"      # tfds | folder | demo
  c.data.name = "cifar10"     # TFDS name (source=tfds)
  c.data.data_dir = ml_collections.FieldReference(None, field_type=str)   # TFDS data_dir
  c.data.root = ml_collections.FieldReference(None, field_type=str)       # folder root: <root>/{train,test}/<class>/<img>
  c.data.archive = ml_collections.FieldReference(None, field_type=str)    # optional .tar.gz to extract into root
  c.data.train_augment = "none"  # none (the paper's "standard") | crop_flip | imagenet
  c.data.image_size = ml_collections.FieldReference(None, field_type=int)  # resize (e.g. 224 for ConvNeXt)
  c.data.eval_crop = "auto"   # auto | none | center (resize to 256/224 * size, centre crop; auto: center iff train_augment=imagenet or name=imagenet2012)
  c.data.skip_corrupt = False
  # auto | tfdata | memory. auto: tf.data wherever TensorFlow imports, else memory.
  # memory: demo and folder data decoded once into host arrays, no TensorFlow (memory.py).
  c.data.pipeline = "auto"
  c.data.shuffle_buffer = 50_000
  c.data.num_train_examples = ml_collections.FieldReference(None, field_type=int)  # use a subset

  c.batch_size = 128          # global, over all devices and processes
  c.eval_batch_size = 500
  c.num_epochs = 50
  c.num_train_steps = -1      # > 0 overrides num_epochs

  # --- Optimizer for N. ---
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"   # adam | sgd
  c.optimizer.learning_rate = 1e-3
  c.optimizer.momentum = 0.9  # sgd momentum / adam b1
  c.optimizer.b2 = 0.999
  c.optimizer.weight_decay = 0.0
  c.optimizer.schedule = "constant"   # constant | step
  c.optimizer.decay_boundaries = (0.6, 0.8)  # fractions of training (schedule=step)
  c.optimizer.decay_factor = 0.1

  # --- The EPM policy (Section 3.2). ---
  c.policy = ml_collections.ConfigDict()
  # search: stage 1 into <workdir>/search first (Algorithm 1), reused by every run;
  # init: the untrained initial policy; random: a uniformly drawn discrete policy
  # (policy.seed), the control; a path: a policy_params.json, policy.json or search workdir.
  c.policy.source = "init"
  c.policy.seed = 0               # the random policy's seed (policy.source='random')
  c.policy.num_subpolicies = 10   # L
  c.policy.num_stages = 2         # K
  c.policy.ops = ALL_OPS
  c.policy.selection_temperature = 0.05
  c.policy.bernoulli_temperature = 0.1
  c.policy.init = "uniform"        # uniform: p, mu, W ~ U[0, 1] from the key (Faster AutoAugment) | constant
  c.policy.parameterization = "projected"  # projected: p, mu stored, projected into [0, 1] | sigmoid: logits
  c.policy.init_probability = 0.5  # init='constant' (and ops a discretised policy does not use)
  c.policy.init_magnitude = 0.5
  c.policy.learning_rate = 1e-3   # "Update EPM" in stage 2
  c.policy.b1 = 0.0
  c.policy.b2 = 0.999

  # --- Stage 1 (Algorithm 1, "OPTIMIZE EPM"), Eq. (3)-(4). ---
  c.search = ml_collections.ConfigDict()
  c.search.eps = 0.1
  c.search.lambda_gp = 10.0
  c.search.learning_rate = 1e-3
  c.search.b1 = 0.0
  c.search.b2 = 0.9               # WGAN-GP's; 0.999 (Faster AA) let a penalty spike wreck f (search_v2)
  c.search.num_epochs = 20
  c.search.num_examples = 4000
  c.search.batch_size = 128       # split in halves: A and B'
  c.search.backbone = "cnn8"
  c.search.width = 1.0
  c.search.critic_hidden = 128
  c.search.norm = "batch"         # critic backbone: batch (measured fastest) | layer | group (per-sample) | none
  c.search.classifier_weight = 1.0  # f's cross-entropy weight in the critic step; -1: eps (Faster AA)
  c.search.gp_norm = "sample"     # sample: WGAN-GP's per-sample norm | pixel: Faster AA's per-pixel norm
  c.search.num_heldout = 1000     # held-out real images for f's accuracy at the end (0: none)
  c.search.heldout_split = "train"  # train: the examples after the search's subset | test
  c.search.control = False        # also train f by cross-entropy alone (the control), same steps
  c.search.num_steps = -1         # > 0 overrides num_epochs
  c.search.log_every_steps = 20
  c.search.train_policy = True    # False: stop_gradient on the policy (control run, critic only)
  c.search.seed = 0               # the search's own seed: one searched policy for every run seed

  # --- Evaluation. ---
  c.eval = ml_collections.ConfigDict()
  c.eval.perturbations = ("clean", "perturb1", "perturb2", "perturb3")
  c.eval.noise_stds = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)
  c.eval.seed = 0
  # CIFAR-10-C (eriep_jax.evaluate.corruptions): () or None: off; 'auto': the 15 common
  # corruptions if the TFDS data is prepared, else skipped with one INFO line; 'all': the
  # 15 common ones, required; or a tuple of names (common or the 4 extra), required.
  # field_type=object: the field holds a string or a tuple, on the command line too.
  c.eval.corruptions = ml_collections.FieldReference((), field_type=object)
  c.eval.corruption_severities = (1, 2, 3, 4, 5)   # any subset of 1..5
  # TFDS data_dir of cifar10_corrupted (`tfds build cifar10_corrupted --data_dir=DIR`);
  # None: data.data_dir when data.source='tfds', else ~/tensorflow_datasets.
  c.eval.corruptions_data_dir = ml_collections.FieldReference(None, field_type=str)

  # --- Grad-CAM (Fig. 4; eriep_jax.evaluate.gradcam, --mode=gradcam). ---
  c.gradcam = ml_collections.ConfigDict()
  c.gradcam.method = "eriep"       # the ERIEP variant of the panel, beside 'standard'
  c.gradcam.seed = -1              # the panel's run seed; -1: the first of config.seeds
  c.gradcam.num_images = 8         # panel rows: test images spread evenly over the split
  c.gradcam.target = "label"       # the class explained: 'label' (true) or 'predicted'
  c.gradcam.blur_radius_224 = 9.0  # Fig. 4's blur sigma at 224 px, scaled to the image size
  c.eval.cam_stability = False     # also score CAM(x) vs CAM(blur(x)) after training

  # --- Logging and checkpoints. ---
  c.log_every_steps = 50
  c.checkpoint_every_steps = 1000
  c.preemption_check_every_steps = 10   # multi-process: how often the processes agree to stop
  c.progress = True

  # --- Stage 2 main job (train/loop.py, evaluate/). ---
  # e.g. ('standard', 'eriep', 'eriep_live', 'augment', 'eriep_random'): each variant is a
  # method with optional modifiers (live, random, init, search; eriep_jax.experiment).
  c.compare_methods = ()
  c.write_plots = True        # noise-sweep PNGs next to the JSON/markdown results
  return c
