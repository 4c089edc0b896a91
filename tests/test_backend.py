"""The backend rule, run in fresh interpreters with controlled environments."""

import os
import subprocess
import sys
import textwrap

import pytest

# Hide a module from importlib.util.find_spec, as if it were not installed.
HIDE = "import sys\nfor _m in {hidden!r}: sys.modules[_m] = None\n"
CHOOSE = "from cnnzoo import backends\nc = backends.choose()\nprint(c.backend, '|', c.reason)\n"


def run(code: str, *, keras_backend=None, hidden=(), extra_path=None):
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "PYTHONPATH")}
    if keras_backend:
        env["KERAS_BACKEND"] = keras_backend
    if extra_path:
        env["PYTHONPATH"] = str(extra_path)
    source = HIDE.format(hidden=list(hidden)) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", source], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def fake_jax_gpu_plugin(tmp_path):
    """A site folder holding the metadata of an installed `jax-cuda12-plugin`."""
    dist = tmp_path / "jax_cuda12_plugin-0.7.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: jax-cuda12-plugin\nVersion: 0.7.0\n")
    return tmp_path


def test_explicit_keras_backend_wins():
    out = run(CHOOSE, keras_backend="jax")
    assert out.stdout.strip() == "jax | explicit choice"


def test_jax_when_a_jax_gpu_plugin_is_installed(fake_jax_gpu_plugin):
    out = run(CHOOSE, extra_path=fake_jax_gpu_plugin)
    assert out.stdout.strip() == "jax | JAX GPU plugin jax-cuda12-plugin is installed"


def test_torch_when_installed_and_no_gpu_plugin():
    out = run(CHOOSE)
    assert out.stdout.strip() == "torch | PyTorch is installed and no JAX GPU plugin is"


def test_jax_when_torch_is_missing():
    out = run(CHOOSE, hidden=["torch"])
    assert out.stdout.strip() == "jax | JAX is installed and PyTorch is not"


def test_clear_error_when_no_backend_is_installed():
    out = run(CHOOSE, hidden=["torch", "jax"])
    assert out.returncode != 0
    assert "No Keras backend is installed: run `pip install 'cnnzoo[torch]'`" in out.stderr
    assert "cnnzoo[jax]" in out.stderr


def test_import_selects_and_exports_the_backend():
    out = run("import cnnzoo, keras, os\nprint(keras.backend.backend(), os.environ['KERAS_BACKEND'])")
    assert out.stdout.split() == ["torch", "torch"]


def test_keras_imported_first_keeps_its_backend_and_refuses_another():
    code = """
    import os; os.environ['KERAS_BACKEND'] = 'torch'
    import keras
    from cnnzoo import backends as backend
    print(backend.current().reason)
    try:
        backend.select('jax')
    except ValueError as e:
        print(e)
    """
    lines = run(code).stdout.splitlines()
    assert lines[0] == "keras was imported before cnnzoo"
    assert lines[1].startswith("Keras was imported with the 'torch' backend before cnnzoo could select 'jax'")


def test_cli_backend_option_chooses_jax():
    code = "import sys\nfrom cnnzoo.cli import main\nsys.argv = ['cnnzoo', '--backend', 'jax', 'info']\nmain()"
    out = run(code)
    assert out.returncode == 0, out.stderr
    assert "backend       jax (explicit choice)" in out.stdout
    assert "devices       cpu:0" in out.stdout


def test_cli_unknown_backend_is_one_sentence_exit_2():
    code = "import sys\nfrom cnnzoo.cli import main\nsys.argv = ['cnnzoo', '--backend', 'theano', 'models']\nmain()"
    out = run(code)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: Unknown Keras backend 'theano': use one of jax, torch, tensorflow."


@pytest.mark.parametrize("flags, expected", [
    ("fpu sse avx2 avx512f avx512_vnni avx512_bf16 vaes", True),  # AMD Zen 4, Intel Cooper Lake
    ("fpu avx2 avx512f amx_bf16 amx_tile amx_int8", True),  # Intel Sapphire Rapids
    ("fpu sse avx2 avx512f avx512_vnni vaes", False),  # Intel Ice Lake: no bfloat16 arithmetic
    ("fpu sse avx2 avx512_bf16x", False),  # a flag is a whole word
])
def test_cpu_bf16_reads_the_cpus_flags(tmp_path, flags, expected):
    from cnnzoo.backends import cpu_bf16

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert cpu_bf16(cpuinfo) is expected
    assert cpu_bf16(tmp_path / "missing") is False  # not Linux, or not readable: no claim
