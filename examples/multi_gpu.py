"""One device versus several: MirroredStrategy with a scaled learning rate.

See "Learning rate and batch size" in docs/distributed.md.

Trains the same Bayesian U-Net on synthetic lesions three ways, for the same
number of epochs:

* one replica, batch B, learning rate lr;
* R replicas of batch B each (global batch R*B), the same lr: half as many
  steps, which is why "86% on 1 GPU, 84% on 2" happens;
* R replicas, lr scaled with ``bs.training.scaled_learning_rate`` (square
  root rule for Adam) and warmed up with ``bs.training.WarmupSchedule``.

The replicas are the machine's GPUs when it has at least two, else two
logical CPU devices (so the example runs anywhere). Reports held-out lesion
Dice and the final ELBO terms of each run.

Run: python examples/multi_gpu.py [--epochs 6 --num-images 96]
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402


def _devices() -> list[str]:
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) >= 2:
        return [d.name for d in gpus]
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) < 2:
        raise RuntimeError(
            "Need two devices: run as a script (it splits the CPU in two) or configure "
            "logical devices before TensorFlow starts."
        )
    return [d.name for d in cpus[:2]]


def _dice(model, x, y) -> float:
    import numpy as np

    import bayesseg as bs

    with bs.layers.sampling_mode(model, "mean"):
        probs = 1 / (1 + np.exp(-model.predict(x, verbose=0)))
    hard, truth = probs >= 0.5, y > 0.5
    return float(2 * np.sum(hard & truth) / max(np.sum(hard) + np.sum(truth), 1))


def main(argv=None) -> dict:
    """Run the three trainings and return their metrics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=96)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8, help="per-replica batch B")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras

    import bayesseg as bs

    devices = _devices()
    replicas = len(devices)
    x, y = bs.data.synthetic_lesions(args.num_images, shape=(args.size, args.size), seed=args.seed)
    xt, yt = bs.data.synthetic_lesions(32, shape=(args.size, args.size), seed=args.seed + 1)
    counts = bs.imbalance.count_classes(y, num_classes=2)
    weights = bs.imbalance.class_weights(counts, method="inverse_sqrt", normalize=True)

    def run(strategy, batch, learning_rate):
        keras.utils.set_random_seed(args.seed)
        with strategy.scope():
            model = bs.models.bayesian_unet(
                (args.size, args.size, 1),
                1,
                base_filters=4,
                depth=3,
                output_bias=bs.imbalance.initial_bias(counts / counts.sum(), class_weights=weights),
            )
            model.compile(
                optimizer=keras.optimizers.Adam(learning_rate, global_clipnorm=1.0),
                loss=bs.ELBO(
                    bs.losses.WeightedBinaryCrossentropy(class_weights=weights),
                    bs.kl.PerExample(len(x)),
                ),
            )
        history = model.fit(x, y, batch_size=batch, epochs=args.epochs, verbose=0, shuffle=False)
        return {
            "replicas": strategy.num_replicas_in_sync,
            "global_batch": batch,
            "steps": int(model.optimizer.iterations.numpy()),
            "final_nll": float(history.history["nll"][-1]),
            "dice": _dice(model, xt, yt),
        }

    cross_device_ops = None  # NCCL all-reduce on GPUs
    if "CPU" in devices[0].upper():
        # On logical CPUs, reduce through one device: collective all-reduce
        # keys can clash with other strategies created in the same process.
        cross_device_ops = tf.distribute.ReductionToOneDevice()
    mirrored = tf.distribute.MirroredStrategy(devices, cross_device_ops=cross_device_ops)
    global_batch = replicas * args.batch
    scaled = bs.training.scaled_learning_rate(args.lr, global_batch, args.batch, rule="sqrt")
    steps_per_epoch = -(-len(x) // global_batch)
    result = {
        "devices": devices,
        "one_replica": run(tf.distribute.get_strategy(), args.batch, args.lr),
        "replicas_same_lr": run(mirrored, global_batch, args.lr),
        "replicas_scaled_lr": run(
            mirrored, global_batch, bs.training.WarmupSchedule(scaled, warmup_steps=steps_per_epoch)
        ),
        "scaled_learning_rate": scaled,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    cpus = tf.config.list_physical_devices("CPU")
    if len(tf.config.list_physical_devices("GPU")) < 2 and cpus:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
        )
    main()
