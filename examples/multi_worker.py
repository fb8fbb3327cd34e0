"""Multi-worker training on localhost: 2 worker processes, MultiWorkerMirroredStrategy.

``python examples/multi_worker.py`` starts two worker processes on loopback
ports (TF_CONFIG), each training the same Bayesian U-Net with
``bs.training.fit_distributed`` (Keras 3's ``fit`` fails under this strategy,
keras-team/keras#20585), then runs the same global batches in a single
process and compares the final weights: the workers agree with each other
and with the single process.

To compare exactly, the layers run in posterior-mean mode (``--sampling
mean``); with the default sampling the workers draw different noise (the
replica id is folded into every seed), as they should.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def train(args, strategy=None) -> dict:
    """Train on the synthetic lesions; return the final weights (and logs)."""
    import keras
    import tensorflow as tf

    import bayesseg as bs

    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(args.seed)
    images, masks = bs.data.synthetic_lesions(args.num_images, shape=(args.size, args.size), seed=1)
    with strategy.scope():
        model = bs.models.bayesian_unet((args.size, args.size, 1), 1, base_filters=4, depth=2)
        bs.layers.set_sampling(model, args.sampling)
        model.compile(
            optimizer=keras.optimizers.SGD(0.05),
            loss=bs.ELBO(
                bs.losses.WeightedBinaryCrossentropy(pos_weight=20.0),
                bs.kl.PerExample(args.num_images),
            ),
        )
    initial = [v.numpy() for v in model.trainable_variables]
    dataset = tf.data.Dataset.from_tensor_slices((images, masks)).batch(
        args.global_batch, drop_remainder=True
    )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)
    history = bs.training.fit_distributed(model, dataset, epochs=args.epochs, strategy=strategy)
    return {
        "initial": initial,
        "weights": [v.numpy() for v in model.trainable_variables],
        "history": history.history,
    }


def _worker(args) -> None:
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in args.ports]},
            "task": {"type": "worker", "index": args.worker_index},
        }
    )
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    result = train(args, strategy)
    np.savez(os.path.join(args.out, f"worker{args.worker_index}.npz"), *result["weights"])
    with open(os.path.join(args.out, f"worker{args.worker_index}.json"), "w") as handle:
        json.dump(result["history"], handle)


def main(argv=None) -> dict:
    """Launch 2 workers and a single-process reference; return the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="multi_worker_out")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--num-images", type=int, default=16)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampling", choices=["mean", "sample"], default="mean")
    parser.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ports", type=int, nargs="*", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.worker_index is not None:
        _worker(args)
        return {}
    ports = _free_ports(2)
    common = [
        "--out",
        args.out,
        "--epochs",
        str(args.epochs),
        "--num-images",
        str(args.num_images),
        "--global-batch",
        str(args.global_batch),
        "--size",
        str(args.size),
        "--seed",
        str(args.seed),
        "--sampling",
        args.sampling,
        "--ports",
        *map(str, ports),
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    workers = [
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), *common, "--worker-index", str(i)],
            env=env,
        )
        for i in range(2)
    ]
    codes = [w.wait(timeout=600) for w in workers]
    if any(codes):
        raise RuntimeError(f"worker processes exited with codes {codes}")
    import numpy as np

    reference = train(args)
    single = reference["weights"]
    loaded = []
    for i in range(2):
        with np.load(os.path.join(args.out, f"worker{i}.npz")) as data:
            loaded.append([data[f"arr_{k}"] for k in range(len(data.files))])
    between = max(float(np.max(np.abs(a - b))) for a, b in zip(*loaded, strict=True))
    to_single = max(float(np.max(np.abs(a - b))) for a, b in zip(loaded[0], single, strict=True))
    update = max(
        float(np.max(np.abs(a - b))) for a, b in zip(single, reference["initial"], strict=True)
    )
    result = {
        "max_diff_between_workers": between,
        "max_diff_to_single_process": to_single,
        "max_weight_update": update,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
