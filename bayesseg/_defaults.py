"""Defaults shared by the layers, the models and the command line.

Kept free of TensorFlow imports so ``bayesseg --help`` can show them. The
measurements behind these values are in docs/uncertainty.md.
"""

# Initial posterior standard deviation of every Bayesian weight.
DEFAULT_POSTERIOR_SCALE_INIT = 0.01
# scale = softplus(DEFAULT_SCALE_MULTIPLIER * rho): under Adam-type optimizers
# the scales move up to this many times the learning rate per step (in log
# space), so they can reach their optimum within a short training budget.
DEFAULT_SCALE_MULTIPLIER = 20.0
# Recurrent layers keep the classic parameterisation: on the small anomaly
# demo, fast scales let the KL inflate the recurrent noise, which compounds
# over the sequence (held-out F1 0.41 -> 0.01); docs/uncertainty.md.
DEFAULT_RECURRENT_SCALE_MULTIPLIER = 1.0
# ... and the classic unit Normal prior, for the same reason: narrower priors
# (0.1, or gain / sqrt(fan_in)) shrink the recurrent weights the anomaly demo
# needs (F1 0.06-0.34 against 0.49).
DEFAULT_RECURRENT_PRIOR_SCALE = 1.0
# Scale of the zero-mean Normal prior of dense and conv weights when none is
# given: about the He standard deviation of a 3x3 convolution over 16-64
# channels. A unit prior lets the KL turn every weight the data does not pin
# down into noise ten times its size (docs/uncertainty.md).
DEFAULT_PRIOR_SCALE = 0.1
