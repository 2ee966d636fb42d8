"""Cross-entropy-only controls of the search's critic backbone: how fast can f learn at all?

    python results/cifar10_cpu/search_v2/controls.py 200 search.norm=layer search.norm=batch

For each spec (comma-separated ``section.field=value`` overrides of
configs/cifar10_search.py:cpu) it trains the critic's backbone and classifier head by
cross-entropy alone (``eriep_jax.search.loop.run_control``: the search's batches, B' half,
Adam and initial weights) for the given steps on the search's 4,000 CIFAR-10 images, and
prints the accuracy on the 1,000 held-out training images that follow them. Results of
2026-12-03 are in controls_200.json.
"""
import sys, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
import jax, numpy as np
import configs.cifar10_search as cs
from eriep_jax import data as data_lib, rng
from eriep_jax.search import loop
steps = int(sys.argv[1])
for spec in sys.argv[2:]:
    c = cs.get_config("cpu")
    for kv in spec.split(","):
        k, v = kv.split("=")
        sec, key = k.split(".")
        cur = c[sec][key]
        c[sec][key] = v if isinstance(cur, str) else type(cur)(eval(v))
    info = data_lib.get_dataset_info(c)
    held = loop._heldout(c, 4000)
    key_init = jax.random.split(rng.purpose_key(0, "search"), 3)[0]
    t = time.time()
    r = loop.run_control(c, key_init, info, 4000, steps, held)
    print(spec, {k: round(v, 3) for k, v in r.items()}, round(time.time() - t), flush=True)
