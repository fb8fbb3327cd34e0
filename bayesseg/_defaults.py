"""Defaults shared by the layers, the models and the command line.

Kept free of TensorFlow imports so ``bayesseg --help`` can show them. The
measurements behind these values are in docs/uncertainty.md.
"""

# Initial posterior standard deviation of every Bayesian weight.
DEFAULT_POSTERIOR_SCALE_INIT = 0.01
# A U-Net's Bayesian layers (bs.models.bayesian_unet, the segmentation
# recipe) start 10x narrower. Measured at a scale multiplier of 20 (the U-Net's
# default then; 10 now, below), the scales still reached their trained size
# within a run (they grew 25-30x in 12 epochs of the README tour, 40-60x in
# 36), but the noise then rose while the means fit instead of being there from
# the first step: against the deterministic twin started from the same
# weights, the held-out NLL at 12 epochs went from 1.02x the twin's to 0.99x,
# at about the same NLL at 36 epochs (0.0212 against 0.0207; both 0.80x the
# twin's; docs/uncertainty.md, "Which layers are Bayesian").
DEFAULT_UNET_POSTERIOR_SCALE_INIT = 1e-3
# scale = softplus(DEFAULT_SCALE_MULTIPLIER * rho): under Adam-type optimizers
# the scales move up to this many times the learning rate per step (in log
# space), so they can reach their optimum within a short training budget.
DEFAULT_SCALE_MULTIPLIER = 20.0
# A U-Net's Bayesian layers (bs.models.bayesian_unet) move their scales at
# half that speed: with the tour's Adam 2e-3 up to 0.02 per step in log space,
# the speed of both segmentation recipes (1e-3 x 20 binary, 1e-2 x 2 for many
# classes). At 20 the bottleneck's scales reached most of the prior's width
# within the 240 updates of 12 epochs on real electron-microscopy sections,
# and the noise slowed the fit: held-out NLL 1.079x the deterministic twin's,
# 1.006x at 10 (means of the per-seed ratios, seeds 0-2); on a real nuclei
# image, confirmed after the choice, 1.006x (1.035x at 20). Over six seeds:
# 1.006x and 1.018x, against 1.032x and 1.023x at 20, with single seeds
# spread over 0.95-1.05 at 10 and 0.93-1.15 at 20, so the gain is modest.
# It gives back some at long budgets (0.83x the twin's NLL at 36 tour
# epochs, 0.74x in the benchmark's configuration, 0.95x on the membranes at
# 36 epochs, against 0.80x, 0.69x and 0.82x at 20) and, at 12 epochs, most
# of the epistemic share (docs/uncertainty.md, "Which layers are Bayesian").
DEFAULT_UNET_SCALE_MULTIPLIER = 10.0
# Recurrent layers move their scales 5x faster than the learning rate, not 20x:
# on the anomaly demo (640 series of 512 steps) 20 let the KL widen the
# recurrent noise faster than the means learned (held-out F1 0.55 against 0.66
# with 1), and 1 left the scales dragged at the optimizer's cap (epistemic
# share 0.003); 5, with the LSTMs' fan-in prior, learns a posterior (share
# 0.02-0.03) at the same average precision and NLL (docs/uncertainty.md).
DEFAULT_RECURRENT_SCALE_MULTIPLIER = 5.0
# Their default prior is FanInNormal() (layers/lstm.py): a unit prior let
# the recurrent scales widen towards 1 in long runs until the gradients
# overflowed. The tagger's dense head keeps a unit Normal prior: with 0.1 the
# anomaly demo's F1 fell to 0.13.
DEFAULT_TAGGER_HEAD_PRIOR_SCALE = 1.0
# Scale of the zero-mean Normal prior of dense and conv weights when none is
# given: about the He standard deviation of a 3x3 convolution over 16-64
# channels. A unit prior lets the KL turn every weight the data does not pin
# down into noise ten times its size (docs/uncertainty.md).
DEFAULT_PRIOR_SCALE = 0.1
# The weight-noise estimators every family of Bayesian layers comes in; a
# class name is the Keras twin's name plus the estimator's suffix
# (Conv2D + "flipout" -> Conv2DFlipout; layers/twins.py).
ESTIMATORS = ("flipout", "reparameterization")
