"""The search behind the anomaly demo's recipe: one candidate per run, at 4096 steps.

Each run generates ``--num-train`` training series (mixed point and
contextual anomalies), ``--num-val`` validation series and ``--num-test``
held-out series (separate seeds, not the demo's split of its training
series), trains one Bayesian tagger (``bs.models.bayesian_lstm_tagger``
with ``--conv`` front-end filters and ``--bidir``) on windows
(``--window``; 0 trains on whole series) or whole series, corrects its
probabilities for the class weights and the windows' prior, chooses the
threshold of the best validation event F1 (on a grid of 60 upper quantiles
of the validation scores: the search predates ``bs.metrics.choose_threshold``,
which the demo and bench_anomaly.py use) and scores the held-out series;
the rolling z-score detector gets its threshold from the same validation
series. One JSON line per run is appended to ``--out``.

Run (the candidates of docs/lstm.md, seed 0 unless said):
    python benchmarks/explore_anomaly.py --window 512 --epochs 8            # recipe
    python benchmarks/explore_anomaly.py --window 512 --epochs 8 --seed 1
    python benchmarks/explore_anomaly.py --window 512 --epochs 8 --bidir 0
    python benchmarks/explore_anomaly.py --window 512 --epochs 8 --conv
    python benchmarks/explore_anomaly.py --window 512 --epochs 8 --loss focal --weights none
    python benchmarks/explore_anomaly.py --window 512 --epochs 8 --loss mining --weights none
    python benchmarks/explore_anomaly.py --window 0 --epochs 3              # whole series
    python benchmarks/explore_anomaly.py --window 512 --epochs 8 --weights balanced
"""

import argparse
import json
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import bayesseg as bs  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--num-train", type=int, default=640)
p.add_argument("--num-val", type=int, default=64)
p.add_argument("--num-test", type=int, default=128)
p.add_argument("--length", type=int, default=4096)
p.add_argument("--window", type=int, default=0)  # 0: whole series
p.add_argument("--pos-frac", type=float, default=0.5)
p.add_argument("--per-event", type=int, default=4)
p.add_argument("--units", type=int, nargs="+", default=[32])
p.add_argument("--conv", type=int, nargs="*", default=[16, 16])
p.add_argument("--bidir", type=int, default=1)
p.add_argument("--lr", type=float, default=3e-3)
p.add_argument("--epochs", type=int, default=10)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--weights", default="inverse_sqrt")
p.add_argument("--loss", default="bce")
p.add_argument("--samples", type=int, default=8)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--schedule", default="constant")
p.add_argument("--kind", default="mixed")
p.add_argument("--out", default="explore_anomaly.jsonl")
a = p.parse_args()
t0 = time.perf_counter()
keras.utils.set_random_seed(a.seed)
S = bs.data.synthetic_anomaly_series
x, y = S(a.num_train, length=a.length, seed=a.seed, kind=a.kind)
xv, yv = S(a.num_val, length=a.length, seed=a.seed + 20000, kind=a.kind)
xt, yt = S(a.num_test, length=a.length, seed=a.seed + 10000, kind=a.kind)
prior = y.mean()
if a.window:
    xw, yw = bs.data.event_windows(x, y, a.window, a.pos_frac, a.per_event, seed=a.seed)
else:
    xw, yw = x, y
wprior = yw.mean()
counts = bs.imbalance.count_classes(yw, num_classes=2)
weights = (
    None
    if a.weights == "none"
    else bs.imbalance.class_weights(counts, method=a.weights, normalize=True)
)
bias = bs.imbalance.initial_bias(counts / counts.sum(), class_weights=weights)
print(
    f"data {time.perf_counter() - t0:.1f}s windows {xw.shape} prior {prior:.2e} "
    f"window prior {wprior:.2e} weights {weights}",
    flush=True,
)
model = bs.models.bayesian_lstm_tagger(
    1,
    units=tuple(a.units),
    output_bias=bias,
    bidirectional=bool(a.bidir),
    conv_filters=tuple(a.conv),
)
steps = math.ceil(len(xw) / a.batch) * a.epochs
lr = a.lr if a.schedule == "constant" else bs.training.warmup_cosine_decay(a.lr, steps)
if a.loss == "bce":
    loss = bs.losses.WeightedBinaryCrossentropy(class_weights=weights)
elif a.loss == "focal":
    loss = bs.losses.BinaryFocalLoss()
elif a.loss == "mining":  # all positives and the 3 hardest negatives per positive
    loss = bs.losses.HardNegativeMining(bs.losses.WeightedBinaryCrossentropy(class_weights=weights))
model.compile(
    optimizer=keras.optimizers.Adam(lr, global_clipnorm=1.0),
    loss=bs.ELBO(loss, bs.kl.PerExample(len(xw))),
)
t1 = time.perf_counter()
h = model.fit(xw, yw, batch_size=a.batch, epochs=a.epochs, verbose=2)
ttrain = time.perf_counter() - t1
# correction: undo weights and the window prior shift
w = np.ones(2) if weights is None else np.asarray(weights, float)
eff = w * np.array([(1 - wprior) / (1 - prior), wprior / prior])
t2 = time.perf_counter()


def scores(xx):
    pr = bs.uncertainty.predict_mc(
        model, xx, num_samples=a.samples, batch_size=32, correct_for_class_weights=eff, verbose=0
    )
    return pr


pv = scores(xv)
pt = scores(xt)
tpred = time.perf_counter() - t2
sv = pv.mean[..., 0]
st = pt.mean[..., 0]
best = (-1, 0.5)
for q in np.unique(np.quantile(sv, 1 - np.geomspace(1e-5, 3e-2, 60))):
    f = bs.metrics.event_f1(yv, sv, threshold=q)["f1"]
    if f > best[0]:
        best = (f, q)
e = bs.metrics.event_f1(yt, st, threshold=best[1])
e05 = bs.metrics.event_f1(yt, st, threshold=0.5)
ap = bs.metrics.average_precision(yt, st)
nll = bs.metrics.predictive_nll(yt, st)
# z-score baseline, threshold on the same validation series
zv, zt = bs.baselines.rolling_zscore(xv, 128), bs.baselines.rolling_zscore(xt, 128)
zb = (-1, 0)
for q in np.quantile(zv, 1 - np.geomspace(1e-5, 1e-2, 40)):
    f = bs.metrics.event_f1(yv, zv, threshold=q)["f1"]
    if f > zb[0]:
        zb = (f, q)
ze = bs.metrics.event_f1(yt, zt, threshold=zb[1])
res = dict(
    args=vars(a),
    event_f1=e["f1"],
    recall=e["recall"],
    precision=e["precision"],
    threshold=float(best[1]),
    val_f1=best[0],
    f1_at_05=e05["f1"],
    ap=ap,
    nll=nll,
    z_f1=ze["f1"],
    z_ap=bs.metrics.average_precision(yt, zt),
    train_s=ttrain,
    pred_s=tpred,
    total_s=time.perf_counter() - t0,
    final_loss=h.history["loss"][-1],
)
print(json.dumps(res))
with open(a.out, "a") as f:
    f.write(json.dumps(res) + "\n")
