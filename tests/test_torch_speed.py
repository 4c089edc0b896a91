"""The PyTorch-backend fixes change speed and memory only: outputs, gradients and moving statistics
agree with stock Keras, and `cnnzoo train` turns them on."""

import weakref

import keras
import numpy as np
import pytest

from cnnzoo.backends import torch_speed

pytestmark = pytest.mark.skipif(keras.backend.backend() != "torch", reason="PyTorch-backend fixes")


def _net(data_format: str, momentum: float = 0.9) -> keras.Model:
    shape = (12, 12, 5) if data_format == "channels_last" else (5, 12, 12)
    axis = -1 if data_format == "channels_last" else 1
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(8, 3, padding="same", data_format=data_format, name="conv")(inputs)
    x = keras.layers.BatchNormalization(axis=axis, momentum=momentum, name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling2D(2, data_format=data_format)(x)
    x = keras.layers.BatchNormalization(axis=axis, center=False, name="bn_no_beta")(x)
    x = keras.layers.GlobalAveragePooling2D(data_format=data_format)(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc")(x))


def _step(model: keras.Model, x: np.ndarray, training: bool):
    """Outputs, gradients of a loss w.r.t. input and trainable weights, moving statistics."""
    import torch

    inputs = torch.tensor(x, requires_grad=True)
    outputs = model(inputs, training=training)
    (outputs * torch.arange(1, 4, dtype=outputs.dtype)).square().sum().backward()
    grads = [inputs.grad.numpy()] + [w.value.grad.numpy() for w in model.trainable_weights]
    for w in model.trainable_weights:
        w.value.grad = None
    moving = [w.numpy() for w in model.non_trainable_weights]
    return outputs.detach().float().numpy(), grads, moving


@pytest.fixture
def stock_then_fast():
    """Run a function under stock Keras, then with the fixes; leave the fixes as found."""
    was_active = torch_speed.active()

    def run(fn):
        torch_speed.restore()
        stock = fn()
        assert torch_speed.apply()
        return stock, fn()

    yield run
    if not was_active:
        torch_speed.restore()


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("training", [True, False])
def test_fixes_agree_with_stock_keras(stock_then_fast, data_format, training):
    x = np.random.default_rng(0).normal(2.0, 3.0, (4, *_net(data_format).input_shape[1:])).astype("float32")

    def run():
        keras.utils.set_random_seed(1)
        model = _net(data_format)
        return [_step(model, x, training) for _ in range(2)]  # two steps: moving stats compound

    stock, fast = stock_then_fast(run)
    for (out_s, grads_s, moving_s), (out_f, grads_f, moving_f) in zip(stock, fast):
        np.testing.assert_allclose(out_f, out_s, rtol=1e-4, atol=1e-5)
        for g_f, g_s in zip(grads_f, grads_s):
            np.testing.assert_allclose(g_f, g_s, rtol=1e-3, atol=1e-4)
        for m_f, m_s in zip(moving_f, moving_s):
            np.testing.assert_allclose(m_f, m_s, rtol=1e-5, atol=1e-6)
    if training:  # the moving statistics did move: the comparison above is not vacuous
        assert not np.allclose(fast[0][2][0], 0.0)


def test_conv_input_is_not_copied(stock_then_fast):
    """The NHWC->NCHW view of a contiguous input is already channels_last: no copy."""
    import torch
    from keras.src.backend.torch import nn as torch_nn

    x = torch.randn(2, 6, 6, 4)
    stock, fast = stock_then_fast(lambda: torch_nn._transpose_spatial_inputs(x))
    assert stock.data_ptr() != x.data_ptr()  # stock Keras 3.15 copies
    assert fast.data_ptr() == x.data_ptr() and fast.shape == (2, 4, 6, 6)
    assert fast.is_contiguous(memory_format=torch.channels_last)


def test_train_applies_the_fixes(monkeypatch, tmp_path):
    """`cnnzoo train` installs them; CNNZOO_TORCH_SPEED=0 keeps stock Keras."""
    calls = []
    monkeypatch.setattr(torch_speed, "apply", lambda: calls.append(1) or True)
    from imagefolders import make_folder

    from cnnzoo.training.config import TrainConfig
    from cnnzoo.training.fit import train

    folder = make_folder(tmp_path / "data", classes=("a", "b"), per_class=6, size=16)
    train(TrainConfig("happy", f"folder:{folder}", epochs=1, batch_size=8, out=str(tmp_path / "run")), verbose=0)
    assert calls == [1]


def test_switch_off(monkeypatch):
    monkeypatch.setenv("CNNZOO_TORCH_SPEED", "0")
    was_active = torch_speed.active()
    torch_speed.restore()
    try:
        assert torch_speed.apply() is False and not torch_speed.active()
    finally:
        if was_active:
            monkeypatch.delenv("CNNZOO_TORCH_SPEED")
            torch_speed.apply()


def test_conv_kernel_is_not_copied(stock_then_fast):
    """A conv kernel is stored in PyTorch's layout: Keras' transpose to (out, in, H, W) is a
    channels_last view that conv uses without a copy; its shape and values are Keras'."""
    import torch
    from keras.src.backend.torch import nn as torch_nn

    def torch_kernel():
        keras.utils.set_random_seed(3)
        layer = keras.layers.Conv2D(8, (3, 2), name="conv")
        layer.build((None, 9, 9, 5))
        kernel = layer.kernel.value
        return kernel, torch_nn._maybe_convert_to_channels_last(torch_nn._transpose_conv_kernel(kernel))

    (stock, stock_view), (fast, fast_view) = stock_then_fast(torch_kernel)
    assert fast.shape == stock.shape == (3, 2, 5, 8)
    np.testing.assert_array_equal(fast.detach().numpy(), stock.detach().numpy())
    assert stock_view.data_ptr() != stock.data_ptr()  # stock Keras copies every step
    assert fast_view.data_ptr() == fast.data_ptr() and fast_view.is_contiguous(memory_format=torch.channels_last)


def test_training_agrees_with_stock_keras(stock_then_fast, tmp_path, monkeypatch):
    """Four Adam steps (PyTorch's fused kernel) give the same weights; the optimizer's slots
    take the kernel's layout; a model saved with the fixes loads in stock Keras unchanged."""
    fused_steps = []
    fused = torch_speed._fused_adam
    monkeypatch.setattr(torch_speed, "_fused_adam", lambda *args: fused_steps.append(1) or fused(*args))
    x = np.random.default_rng(0).normal(size=(16, 12, 12, 5)).astype("float32")
    y = np.arange(16) % 3

    def fit():  # no conv bias right before a batch norm: its gradient is rounding noise that Adam amplifies
        keras.utils.set_random_seed(1)
        inputs = keras.Input((12, 12, 5))
        h = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(inputs)
        h = keras.layers.Conv2D(8, 3, use_bias=False, name="conv2")(h)
        h = keras.layers.BatchNormalization(name="bn")(h)
        outputs = keras.layers.Dense(3, name="fc")(keras.layers.GlobalAveragePooling2D()(h))
        model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.Adam(1e-2),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        return model

    stock, fast = stock_then_fast(fit)
    assert len(fused_steps) == 4  # the fast run used the fused kernel, the stock one did not
    for w_f, w_s in zip(fast.weights, stock.weights):  # Adam moves each weight up to 4 x 1e-2
        np.testing.assert_allclose(w_f.numpy(), w_s.numpy(), rtol=1e-4, atol=1e-4, err_msg=w_f.path)
    kernel = fast.get_layer("conv").kernel
    slots = [v for v in fast.optimizer.variables if v.name in ("conv_kernel_momentum", "conv_kernel_velocity")]
    assert len(slots) == 2 and all(s.value.stride() == kernel.value.stride() for s in slots)
    assert not kernel.value.is_contiguous()  # the fast layout is in use

    fast.save(tmp_path / "fast.keras")
    torch_speed.restore()
    loaded = keras.saving.load_model(tmp_path / "fast.keras")
    assert loaded.get_layer("conv").kernel.value.is_contiguous()  # stock layout
    for w_l, w_f in zip(loaded.weights, fast.weights):
        np.testing.assert_array_equal(w_l.numpy(), w_f.numpy())
    torch_speed.apply()


def test_adam_updates_kernels_in_their_memory_order():
    """The fused kernel gets contiguous views of the (out, H, W, in)-stored kernel and its
    gradient and slots (it would copy strided tensors in and out); mixed layouts are left alone."""
    import torch

    kernel = torch.randn(3, 3, 4, 8).permute(3, 0, 1, 2).contiguous().permute(1, 2, 3, 0)  # Keras shape, torch memory
    same = [kernel, torch.empty_like(kernel), torch.empty_like(kernel)]
    views = torch_speed._in_memory_order(*same)
    assert all(v.is_contiguous() and v.data_ptr() == t.data_ptr() for v, t in zip(views, same))
    assert views[0].shape == (8, 3, 3, 4)
    mixed = (kernel, torch.zeros(3, 3, 4, 8))
    assert torch_speed._in_memory_order(*mixed) == mixed


@pytest.mark.parametrize("options", [
    dict(kernel_size=3, strides=2, padding="same"),  # even input: PyTorch needs an explicit asymmetric pad
    dict(kernel_size=3, dilation_rate=2, padding="same", activation="relu"),
    dict(kernel_size=(1, 3), groups=2, padding="valid"),
])
def test_conv_with_its_bias_in_the_kernel_agrees_with_stock_keras(stock_then_fast, options):
    import torch

    x = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32")

    def run():
        keras.utils.set_random_seed(2)
        layer = keras.layers.Conv2D(6, bias_initializer="random_normal", **options)
        inputs = torch.tensor(x, requires_grad=True)
        outputs = layer(inputs)
        outputs.square().sum().backward()
        return outputs.detach().numpy(), inputs.grad.numpy(), layer.bias.value.grad.numpy(), layer.kernel.value.grad.numpy()

    stock, fast = stock_then_fast(run)
    for f, s in zip(fast, stock):
        np.testing.assert_allclose(f, s, rtol=1e-4, atol=1e-5)


class _Doubled(keras.layers.Layer):
    """x * 2 (autograd saves nothing for it); remembers, weakly, the tensor it returned."""

    def call(self, x):
        y = x * 2.0
        self.returned = weakref.ref(y)
        return y


class _Probe(keras.layers.Layer):
    """x + 1; notes which of `watched`'s outputs were still alive when it ran."""

    def __init__(self, watched, **kwargs):
        super().__init__(**kwargs)
        self.watched, self.alive = watched, None

    def call(self, x):
        self.alive = [layer.returned() is not None for layer in self.watched]
        return x + 1.0


def test_an_intermediate_output_is_freed_after_its_last_reader(stock_then_fast):
    """Keras keeps every tensor of a Functional forward pass until it returns; with the fix, one
    that no later layer reads is let go (ResNet-50's batch-norm outputs: a third of the peak)."""

    def forward():
        first, second = _Doubled(name="first"), _Doubled(name="second")
        probe = _Probe([first, second])
        inputs = keras.Input((3,))
        model = keras.Model(inputs, probe(second(first(inputs))))
        outputs = model(np.ones((2, 3), "float32"), training=True)
        return probe.alive, keras.ops.convert_to_numpy(outputs)

    (stock_alive, stock_out), (fast_alive, fast_out) = stock_then_fast(forward)
    assert stock_alive == [True, True]  # stock Keras 3.15: `first`'s output outlives its reader
    assert fast_alive == [False, True]  # freed once `second` read it; the probe's input lives
    np.testing.assert_array_equal(fast_out, stock_out)
    np.testing.assert_array_equal(fast_out, np.full((2, 3), 5.0))


def test_branching_nested_models_agree_with_stock_keras(stock_then_fast):
    """Tensors read twice (a residual add, a reused layer), a nested Functional model and two
    outputs: the same outputs and gradients as stock Keras."""
    x = np.random.default_rng(2).normal(size=(4, 8, 8, 3)).astype("float32")

    def run():
        keras.utils.set_random_seed(5)
        inner_in = keras.Input((8, 8, 3))
        y = keras.layers.Conv2D(3, 3, padding="same")(inner_in)
        y = keras.layers.BatchNormalization()(y)
        inner = keras.Model(inner_in, keras.layers.Add()([inner_in, keras.layers.ReLU()(y)]), name="block")
        inputs = keras.Input((8, 8, 3))
        shared = keras.layers.Conv2D(4, 1)
        a = inner(inputs)
        b = keras.layers.Concatenate()([shared(a), shared(inner(a)), a])
        pooled = keras.layers.GlobalAveragePooling2D()(b)
        model = keras.Model(inputs, [keras.layers.Dense(3)(pooled), keras.layers.Dense(1)(pooled)])
        import torch

        tensor = torch.tensor(x, requires_grad=True)
        first, second = model(tensor, training=True)
        (first.square().sum() + second.sum()).backward()
        return ([keras.ops.convert_to_numpy(o.detach()) for o in (first, second)],
                [tensor.grad.numpy()] + [w.value.grad.numpy() for w in model.trainable_weights])

    (outs_s, grads_s), (outs_f, grads_f) = stock_then_fast(run)
    for fast, stock in zip(outs_f + grads_f, outs_s + grads_s):
        np.testing.assert_allclose(fast, stock, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_batched_affine_transforms_agree_with_stock_keras(stock_then_fast, interpolation, fill_mode, data_format):
    """Fix 7: rotations, shears, shifts and zooms sample the same pixels as Keras' per-image loop
    (reflect, which grid_sample cannot do, stays Keras')."""
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(5, 3, 17, 23) if data_format == "channels_first" else (5, 17, 23, 3)).astype("float32")
    angle, zoom = rng.uniform(-0.6, 0.6, 5), rng.uniform(0.7, 1.3, 5)
    transforms = np.stack([zoom * np.cos(angle), -np.sin(angle) + 0.1, rng.uniform(-4, 4, 5), np.sin(angle),
                           zoom * np.cos(angle), rng.uniform(-4, 4, 5), np.zeros(5), np.zeros(5)], 1).astype("float32")

    def transformed():
        return keras.ops.convert_to_numpy(keras.ops.image.affine_transform(
            images, transforms.copy(), interpolation=interpolation, fill_mode=fill_mode, data_format=data_format))

    stock, fast = stock_then_fast(transformed)
    np.testing.assert_allclose(fast, stock, atol=1e-5)
    assert np.abs(stock - images).max() > 0.1  # the transforms really move pixels


def test_augmentation_layers_agree_with_stock_keras(stock_then_fast):
    """The layers that train cnnzoo's models: the same seed gives the same augmented batch."""
    from cnnzoo.models import augment

    images = np.random.default_rng(1).uniform(size=(6, 32, 32, 3)).astype("float32")

    def augmented():
        keras.utils.set_random_seed(3)
        x = images
        for layer in augment.layers_for(("shift", "zoom", "tilt", "resized-crop", "crop")):
            x = layer(x, training=True)
        return keras.ops.convert_to_numpy(x)

    stock, fast = stock_then_fast(augmented)
    np.testing.assert_allclose(fast, stock, atol=1e-5)


# -- bfloat16 on a CPU: Keras' mixed_bfloat16 with batch norm fused -----------------------------
@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_fused_batch_norm_takes_bfloat16_activations_as_stock_keras_does(stock_then_fast, mixed_bfloat16,
                                                                         monkeypatch):
    """Under `mixed_bfloat16` a convolution hands batch norm bfloat16 and its statistics stay
    float32: the fused kernel normalises that at least as accurately as stock Keras (which casts
    it to float32 first), measured against the float32 model, moving statistics included."""
    x = np.random.default_rng(0).normal(2.0, 3.0, (4, 12, 12, 5)).astype("float32")

    def run():
        keras.utils.set_random_seed(1)
        return _step(_net("channels_last"), x, training=True)

    (out_s, grads_s, moving_s), (out_f, grads_f, moving_f) = stock_then_fast(run)
    keras.mixed_precision.set_global_policy("float32")
    out_r, grads_r, moving_r = run()  # the reference
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    assert 0 < np.abs(out_f - out_r).max() <= 1.5 * np.abs(out_s - out_r).max() + 1e-6  # bfloat16 it was
    # Gradients: as close as stock Keras's, give or take bfloat16's rounding of the backward pass,
    # which PyTorch's kernel keeps in bfloat16 where Keras computes it in float32 (0.4% of the
    # largest gradient, the conv kernel's, at most: on the nearly-zero ones that is all of them).
    noise = 0.004 * max(np.linalg.norm(g) for g in grads_r)
    for g_f, g_s, g_r in zip(grads_f, grads_s, grads_r):
        assert np.linalg.norm(g_f - g_r) <= 1.5 * np.linalg.norm(g_s - g_r) + noise
    for m_f, m_s, m_r in zip(moving_f, moving_s, moving_r):
        assert np.abs(m_f - m_r).max() <= 1.5 * np.abs(m_s - m_r).max() + 1e-4
    assert not np.allclose(moving_f[0], 0.0)
    fused = []  # and the fast run did take the fused kernel, with bfloat16 activations
    stock_fused = torch_speed._fused_batch_norm
    monkeypatch.setattr(torch_speed, "_fused_batch_norm",
                        lambda layer, inputs, fmt: fused.append(str(inputs.dtype)) or stock_fused(layer, inputs, fmt))
    run()
    assert fused == ["torch.bfloat16"] * 2  # both batch norms


def test_train_at_bf16_on_a_cpu(tmp_path):
    """`--precision bf16` trains, saves and evaluates on a CPU, and leaves the policy as it found it."""
    import json

    from imagefolders import make_folder

    from cnnzoo.training.config import TrainConfig
    from cnnzoo.training.fit import train

    folder = make_folder(tmp_path / "data", classes=("a", "b"), per_class=6, size=16)
    out = tmp_path / "run"
    try:
        train(TrainConfig("happy", f"folder:{folder}", epochs=1, batch_size=8, precision="bf16", out=str(out)),
              verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["precision"] == "bf16" and 0 <= metrics["test"]["accuracy"] <= 1


# -- fix 8: a Functional graph's nodes called without Keras' per-call bookkeeping -----------------
@pytest.fixture
def bare_calls(monkeypatch):
    """Run a function with fixes 1-7, then with all eight; count the layer calls that went bare."""
    was_active = torch_speed.active()
    counted = []
    bare = torch_speed._bare_layer_call

    def counting(layer, args, kwargs):
        outputs = bare(layer, args, kwargs)
        counted.append((layer.name, outputs is not NotImplemented))
        return outputs

    monkeypatch.setattr(torch_speed, "_bare_layer_call", counting)

    def run(fn):
        torch_speed.restore()
        monkeypatch.setattr(torch_speed, "FIXES", tuple(f for f in torch_speed.FIXES
                                                         if f is not torch_speed._graph_nodes_called_bare))
        torch_speed.apply()
        before = fn()
        assert not counted  # fix 8 was off
        torch_speed.restore()
        monkeypatch.undo()
        monkeypatch.setattr(torch_speed, "_bare_layer_call", counting)
        torch_speed.apply()
        return before, fn(), counted

    yield run
    torch_speed.restore()
    if was_active:
        torch_speed.apply()


def _branchy_net() -> keras.Model:
    """Conv, batch norm, dropout (which reads `training`), a residual Add, a Concatenate, a nested
    Functional block and a float32 output layer (as Keras advises under mixed precision)."""
    inner_in = keras.Input((8, 8, 4))
    y = keras.layers.BatchNormalization(name="inner_bn")(keras.layers.Conv2D(4, 3, padding="same")(inner_in))
    block = keras.Model(inner_in, keras.layers.Add(name="add")([inner_in, keras.layers.ReLU()(y)]), name="block")
    inputs = keras.Input((8, 8, 4))
    a = block(keras.layers.Conv2D(4, 1, name="stem")(inputs))
    b = keras.layers.Concatenate(name="concat")([a, keras.layers.Dropout(0.5, name="drop")(a)])
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.BatchNormalization(name="bn")(b))
    return keras.Model(inputs, keras.layers.Dense(3, name="fc", dtype="float32")(pooled))


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("training", [True, False, None])
def test_graph_nodes_called_bare_compute_what_keras_path_does(bare_calls, policy, training):
    """Every node of the model and of its nested block is called bare, and the outputs, gradients
    and moving statistics are bit for bit Keras' own path's, in float32 and under
    mixed_bfloat16 (inputs cast, variables read in bfloat16), whatever `training` says."""
    import torch

    x = np.random.default_rng(0).normal(1.0, 2.0, (4, 8, 8, 4)).astype("float32")

    def run():
        keras.mixed_precision.set_global_policy(policy)
        try:
            keras.utils.set_random_seed(4)
            model = _branchy_net()
            results = []
            for _ in range(2):
                inputs = torch.tensor(x, requires_grad=True)
                outputs = model(inputs, training=training)
                outputs.float().square().sum().backward()
                results.append([outputs.detach().float().numpy(), inputs.grad.numpy()]
                               + [w.value.grad.float().numpy() for w in model.trainable_weights]
                               + [w.numpy() for w in model.non_trainable_weights if w.dtype == "float32"])
                for w in model.trainable_weights:
                    w.value.grad = None
            return results, str(outputs.dtype)
        finally:
            keras.mixed_precision.set_global_policy("float32")

    (keras_path, keras_dtype), (bare, bare_dtype), counted = bare_calls(run)
    assert bare_dtype == keras_dtype == "torch.float32"  # the output layer's own policy
    for step_keras, step_bare in zip(keras_path, bare):
        for a, b in zip(step_keras, step_bare):
            np.testing.assert_array_equal(b, a)
    names = {name for name, went_bare in counted if went_bare}
    assert {"stem", "block", "inner_bn", "add", "concat", "drop", "bn", "fc"} <= names
    assert all(went_bare for _, went_bare in counted)
    if training:  # dropout and the moving statistics did act: the comparison is not vacuous
        assert not np.array_equal(keras_path[0][-2], keras_path[1][-2])


def test_keras_path_keeps_masks_hooks_and_activity_regularizers(bare_calls):
    """A node whose input carries a mask, whose layer computes a mask or has a forward hook or an
    activity regularizer goes through Keras' own `__call__`: the mask reaches the output, the
    hook fires, the regularizer's loss is added, all as with fix 8 off. A plain node beside
    them goes bare."""
    hooked = []
    x = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]], "float32")[..., None]

    def run():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((3, 1))
        masked = keras.layers.Dense(2, name="after_mask")(keras.layers.Masking(0.0, name="masking")(inputs))
        plain = keras.layers.Dense(2, name="plain")(inputs)
        regularized = keras.layers.Dense(2, activity_regularizer="l2", name="regularized")(plain)
        hook_layer = keras.layers.Dense(1, name="hooked")
        model = keras.Model(inputs, [masked, hook_layer(regularized)])
        hook_layer.register_forward_hook(lambda *_: hooked.append(1))
        masked_out, hooked_out = model(x)
        mask = getattr(masked_out, "_keras_mask", None)
        return ([keras.ops.convert_to_numpy(o) for o in (masked_out, hooked_out)],
                None if mask is None else mask.numpy(), len(model.losses))

    (out_k, mask_k, losses_k), (out_b, mask_b, losses_b), counted = bare_calls(run)
    for a, b in zip(out_k, out_b):
        np.testing.assert_array_equal(b, a)
    np.testing.assert_array_equal(mask_b, [[True, False, True], [False, False, True]])
    np.testing.assert_array_equal(mask_k, mask_b)
    assert losses_b == losses_k == 1 and hooked == [1, 1]
    assert dict(counted) == {"masking": False, "after_mask": False, "plain": True, "regularized": False,
                             "hooked": False}


def test_a_bare_call_resolves_training_as_keras_does():
    """Keras' order: the value passed, else the outer call's, else the call signature's default;
    the value is left in the call context for the layers after it."""
    import torch
    from keras.src.backend.common import global_state
    from keras.src.layers.layer import CallContext

    dropout = keras.layers.Dropout(0.5)
    ones = torch.ones(4, 64)
    dropout(ones)
    context = CallContext(entry_layer=None)
    global_state.set_global_attribute("current_call_ctx", context)
    try:
        context.set_value("training", True)
        dropped = torch_speed._bare_layer_call(dropout, (ones,), {})  # the outer call's True
        assert set(dropped.unique().tolist()) == {0.0, 2.0}
        kept = torch_speed._bare_layer_call(dropout, (ones,), {"training": False})  # the value passed
        assert torch.equal(kept, ones) and context.get_value("training") is False
        context.set_value("training", None)
        assert torch.equal(torch_speed._bare_layer_call(dropout, (ones,), {}), ones)  # Dropout's default
    finally:
        global_state.set_global_attribute("current_call_ctx", None)
    assert torch_speed._bare_layer_call(dropout, (ones,), {}) is NotImplemented  # no outer call


def test_traced_and_unusual_calls_take_keras_path(bare_calls):
    """Under TorchScript tracing (ONNX export) nn.Module's own __call__ records each layer's
    scope, and a namedtuple input is rebuilt by Keras' tree functions: both keep Keras' path,
    with the same outputs."""
    import collections

    import torch

    Pair = collections.namedtuple("Pair", "a b")

    class Summed(keras.layers.Layer):
        def call(self, pair):
            return pair.a + pair.b

    x = np.random.default_rng(1).normal(size=(2, 4)).astype("float32")

    def run():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        dense = keras.layers.Dense(4, name="dense")(inputs)
        model = keras.Model(inputs, Summed(name="summed")(Pair(dense, inputs)))
        eager = model(x)
        traced = torch.jit.trace(model, torch.tensor(x), check_trace=False)(torch.tensor(x))
        return keras.ops.convert_to_numpy(eager), traced.detach().numpy()

    (eager_k, traced_k), (eager_b, traced_b), counted = bare_calls(run)
    np.testing.assert_array_equal(eager_b, eager_k)
    np.testing.assert_array_equal(traced_b, traced_k)
    np.testing.assert_array_equal(traced_b, eager_b)
    assert counted == [("dense", True), ("summed", False), ("dense", False), ("summed", False)]
