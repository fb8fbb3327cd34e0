"""The package entry point: lazy submodules, one version, the backend check, and saved
models that load after ``import bayesseg`` alone."""

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bayesseg as bs


def _python(code: str, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120
    )


def test_import_and_cli_help_do_not_import_tensorflow():
    code = (
        "import sys, contextlib, io\n"
        "import bayesseg\n"
        "from bayesseg.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    for argv in (['--help'], ['--version'], ['demo', '--help']):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "    assert main(['demo', '--epochs', '-3']) == 2\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'tensorflow_probability') "
        "if m in sys.modules))\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    # Only our own one-line usage error reaches stderr: no TensorFlow start-up lines.
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if line.startswith("bayesseg")
    ]
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "name,owner",
    [
        ("ELBO", "bayesseg.elbo"),
        ("ELBOTerms", "bayesseg.elbo"),
        ("BayesianModel", "bayesseg.training.model"),
        ("kl_divergence", "bayesseg.layers.model_functions"),
    ],
)
def test_top_level_names_resolve_to_their_owner(name, owner):
    assert getattr(bs, name).__module__ == owner


def test_every_public_name_and_submodule_resolves():
    for name in bs.__all__:
        assert getattr(bs, name) is not None, name
    assert bs.elbo.ELBO is bs.ELBO
    assert set(bs.__all__) <= set(dir(bs))
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        bs.nonexistent  # noqa: B018


def test_version_comes_from_package_metadata(capsys):
    from bayesseg.cli import build_parser

    assert bs.__version__ == importlib.metadata.version("bayesseg")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])
    assert capsys.readouterr().out.strip() == f"bayesseg {bs.__version__}"


def test_other_keras_backend_is_refused_before_keras_loads():
    result = _python(
        "import sys\n"
        "try:\n"
        "    import bayesseg\n"
        "except ImportError as err:\n"
        "    print(err)\n"
        "print('keras' in sys.modules)\n",
        KERAS_BACKEND="jax",
    )
    assert result.returncode == 0, result.stderr
    assert "requires Keras' TensorFlow backend" in result.stdout
    assert "backend='jax'" in result.stdout
    assert result.stdout.strip().endswith("False")


def test_keras_json_backend_is_read_without_importing_keras(tmp_path):
    (tmp_path / "keras.json").write_text('{"backend": "torch"}')
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\ntry:\n import bayesseg\nexcept ImportError as e:\n print(e)",
        ],
        capture_output=True,
        text=True,
        env={**env, "KERAS_HOME": str(tmp_path)},
        timeout=60,
    )
    assert "backend='torch'" in result.stdout, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fixture", "import_order"),
    [
        ("image", "import bayesseg, keras"),  # BayesianModel, every layer family, compiled
        ("volume", "import keras, bayesseg"),  # the 3D U-Net, compiled
        ("series", "import bayesseg.elbo, keras"),  # the tagger; a submodule loads Keras
        ("ensemble", "import bayesseg\nimport keras"),  # DeepEnsemble, not compiled
    ],
)
def test_saved_models_load_in_a_fresh_process_after_import_bayesseg(fixture, import_order):
    """The documented way: ``import bayesseg`` then ``keras.saving.load_model``, nothing else."""
    here = Path(__file__).parent / "fixtures"
    code = (
        f"{import_order}\n"
        "import numpy as np, sys\n"
        f"model = keras.saving.load_model({str(here / f'saved_{fixture}.keras')!r})\n"
        "print(type(model).__name__)\n"
        f"data = np.load({str(here / f'saved_{fixture}.npz')!r})\n"
        "import bayesseg as bs\n"
        "with bs.layers.sampling_mode(model, 'mean'):\n"
        "    out = np.asarray(model(data['x']))\n"
        "print(float(np.max(np.abs(out - data['expected']))))\n"
    )
    result = _python(code, TF_CPP_MIN_LOG_LEVEL="3")
    assert result.returncode == 0, result.stderr[-2000:]
    name, error = result.stdout.split()[-2:]
    assert name == ("DeepEnsemble" if fixture == "ensemble" else "BayesianModel")
    assert float(error) < 1e-5


@pytest.mark.slow
def test_an_uncompiled_unet_saved_here_loads_in_a_fresh_process(tmp_path):
    import keras

    model = bs.models.bayesian_unet((8, 8, 1), 1, base_filters=2, depth=2)
    model.save(tmp_path / "unet.keras")
    x = np.random.default_rng(0).normal(size=(1, 8, 8, 1)).astype("float32")
    with bs.layers.sampling_mode(model, "mean"):
        expected = keras.ops.convert_to_numpy(model(x))
    np.savez(tmp_path / "unet.npz", x=x, expected=expected)
    result = _python(
        "import bayesseg, keras, numpy as np\n"
        f"model = keras.saving.load_model({str(tmp_path / 'unet.keras')!r})\n"
        f"data = np.load({str(tmp_path / 'unet.npz')!r})\n"
        "with bayesseg.layers.sampling_mode(model, 'mean'):\n"
        "    print(float(np.max(np.abs(np.asarray(model(data['x'])) - data['expected']))))\n",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.split()[-1]) < 1e-5
