"""Grad-CAM, saliency, feature maps and filters: that the maps are computed right (against
NumPy and finite differences, on each backend), that they point at what decides the class
(a network trained on a synthetic task, and an untrained one that fails the same check),
the layer each family explains, and the commands with their pictures and one-sentence
errors.
"""

import re

import keras
import numpy as np
import pytest
from keras import layers
from PIL import Image
from test_serve_api import tiny_run
from typer.testing import CliRunner

import cnnzoo
from cnnzoo.analysis.metrics import predict_proba
from cnnzoo.cli import app as cli_app
from cnnzoo.errors import UserError
from cnnzoo.inference import explain as ex
from cnnzoo.inference.predict import predict_files
from cnnzoo.models.saving import load_model
from cnnzoo.training.fit import build_training_model


def nested(arch: keras.Model, dtype="uint8") -> keras.Model:
    """Wrap `arch` the way a cnnzoo run does: uint8 pixels -> Rescaling -> the network."""
    pixels = keras.Input(tuple(arch.inputs[0].shape[1:]), dtype=dtype, name="pixels")
    return keras.Model(pixels, arch(layers.Rescaling(1 / 255, name="scale")(pixels)), name=f"run_{arch.name}")


def tiny(head_convs: int = 0, classes: int = 3, activation="softmax") -> keras.Model:
    """8x8x3 -> conv 'features' (8x8x5, no pooling, so its map is the image's size) ->
    [conv + ReLU]* -> global average pool -> Dense."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 3), name="input")
    x = layers.Conv2D(5, 3, padding="same", activation="relu", name="features")(inputs)
    for k in range(head_convs):
        x = layers.Conv2D(4, 3, padding="same", activation="relu", name=f"head{k}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(classes, activation=activation, name="predictions",
                     bias_initializer=keras.initializers.RandomNormal(seed=1))(x)
    return nested(keras.Model(inputs, x, name="tiny"))


def images(count=4, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3)).astype("uint8")


def reference_activations(model, x, layer="features"):
    """The layer's activations from a Keras sub-model (not from the code under test)."""
    arch = model.get_layer("tiny")
    sub = keras.Model(arch.input, arch.get_layer(layer).output)
    return keras.ops.convert_to_numpy(sub(x.astype("float32") / 255.0))


# -- computed right, on each backend (CI runs these on JAX too) -----------------------------------
@pytest.mark.jax
def test_gradcam_equals_a_numpy_reference_from_the_same_activations_and_gradients():
    """Through GAP and Dense, d logit_c / dA[h, w, k] = W[k, c] / (H W) exactly, so the
    reference needs nothing from the code under test."""
    model, x, classes = tiny(), images(), np.array([0, 1, 1, 0])
    activation, gradient, proba = ex.activations_and_gradients(model, x, classes, layer="features")
    expected_a = reference_activations(model, x)
    np.testing.assert_allclose(activation, expected_a, rtol=1e-5, atol=1e-6)
    kernel = keras.ops.convert_to_numpy(model.get_layer("tiny").get_layer("predictions").kernel)
    expected_g = np.broadcast_to(kernel.T[classes][:, None, None, :] / 64.0, expected_a.shape)
    np.testing.assert_allclose(gradient, expected_g, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(proba, predict_proba(model, x), atol=1e-6)

    alpha = expected_g.mean(axis=(1, 2), keepdims=True)  # Selvaraju et al., eq. 1 and 2
    cam = np.maximum((alpha * expected_a).sum(axis=-1), 0)
    top = cam.max(axis=(1, 2), keepdims=True)
    assert (top > 0).all()  # every image has evidence for its class: the comparison is not of zeros
    cam = cam / top
    got = cnnzoo.explain.gradcam(model, x, classes, layer="features")
    assert got.shape == (4, 8, 8) and got.dtype == np.float32
    np.testing.assert_allclose(got, cam, rtol=1e-4, atol=1e-5)
    assert not np.allclose(got[1], cnnzoo.explain.gradcam(model, x, 0, layer="features")[1])  # class matters


@pytest.mark.jax
def test_gradients_through_a_nonlinear_head_match_finite_differences():
    model, x = tiny(head_convs=2), images(2, seed=1)
    _, gradient, _ = ex.activations_and_gradients(model, x, [2, 0], layer="features")
    arch = model.get_layer("tiny")
    inputs = keras.Input((8, 8, 5))  # the network from 'features' on, on the same layers
    y = inputs
    for name in ("head0", "head1", "gap"):
        y = arch.get_layer(name)(y)
    dense = arch.get_layer("predictions")
    a = reference_activations(model, x).astype("float64")
    kernel, bias = (keras.ops.convert_to_numpy(w).astype("float64") for w in (dense.kernel, dense.bias))
    pooled = keras.Model(inputs, y)

    def logit(a_value, i, c):
        return float(keras.ops.convert_to_numpy(pooled(a_value[None].astype("float32")))[0] @ kernel[:, c] + bias[c])

    rng, eps = np.random.default_rng(0), 1e-2
    for i, c in ((0, 2), (1, 0)):
        for h, w, k in zip(*(rng.integers(0, n, 6) for n in (8, 8, 5))):
            if a[i, h, w, k] < 2 * eps:
                continue  # keep clear of the ReLU's kink
            up, down = a[i].copy(), a[i].copy()
            up[h, w, k] += eps
            down[h, w, k] -= eps
            numeric = (logit(up, i, c) - logit(down, i, c)) / (2 * eps)
            assert gradient[i, h, w, k] == pytest.approx(numeric, rel=2e-2, abs=2e-4)


@pytest.mark.jax
def test_saliency_is_the_largest_absolute_pixel_gradient():
    """A linear network (no ReLU): d logit / d pixel is a fixed function of the weights."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    z = layers.Dense(2, name="predictions")(layers.Flatten()(inputs))
    model = nested(keras.Model(inputs, z, name="linear"))
    x = images(2, 6)
    kernel = keras.ops.convert_to_numpy(model.get_layer("linear").get_layer("predictions").kernel)
    # logits = (pixels / 255) . W, so d logit_c / d pixel = W[:, c] / 255
    expected = np.abs(kernel[:, 1].reshape(6, 6, 3) / 255.0).max(axis=-1)
    got = cnnzoo.explain.saliency(model, x, 1)
    np.testing.assert_allclose(got, np.broadcast_to(expected / expected.max(), got.shape), rtol=1e-4, atol=1e-6)


@pytest.mark.jax
def test_a_single_sigmoid_unit_explains_class_0_with_the_negated_logit():
    model, x = tiny(classes=1, activation="sigmoid"), images(3)
    _, g1, proba = ex.activations_and_gradients(model, x, 1, layer="features")
    _, g0, _ = ex.activations_and_gradients(model, x, 0, layer="features")
    np.testing.assert_allclose(g0, -g1, rtol=1e-6)
    np.testing.assert_allclose(proba, predict_proba(model, x), atol=1e-6)  # [1 - p, p]
    maps = ex.explain(model, x, None, layer="features")
    np.testing.assert_array_equal(maps.class_index, proba.argmax(axis=1))


# -- the maps point at what decides the class -----------------------------------------------------
SIZE, BAR = 24, 8


def bars():
    """Four bar orientations (-, |, /, \\) on a BAR x BAR patch: positively recognisable
    shapes (none contains another), so each class has evidence of its own to point at."""
    flat = np.zeros((BAR, BAR), bool)
    flat[BAR // 2 - 1:BAR // 2 + 1, :] = True
    diagonal = np.zeros((BAR, BAR), bool)
    for i in range(BAR):
        diagonal[i, max(0, i - 1):i + 1] = True
    return [flat, flat.T.copy(), diagonal, diagonal[:, ::-1].copy()]


def quadrant_task(count, seed):
    """The class is the orientation of the one bright red bar, in a random quadrant; each
    other quadrant holds a green or blue bar of any orientation, as bright, and every pixel
    has noise. The distractors make the check able to fail: a map that follows brightness or
    shape alone finds the deciding quadrant about one time in four. (A first design, a bright
    white square alone in noise, let an untrained network's Grad-CAM find it on 97% of the
    images, by brightness.)"""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 90, (count, SIZE, SIZE, 3)).astype("uint8")
    y, where, half = rng.integers(0, 4, count), rng.integers(0, 4, count), SIZE // 2
    shapes, red, others = bars(), np.array([235, 30, 30]), np.array([[30, 235, 30], [30, 30, 235]])
    for i in range(count):
        for quadrant in range(4):
            top = (quadrant // 2) * half + rng.integers(0, half - BAR + 1)
            left = (quadrant % 2) * half + rng.integers(0, half - BAR + 1)
            deciding = quadrant == where[i]
            mask = shapes[y[i]] if deciding else shapes[rng.integers(0, 4)]
            x[i, top:top + BAR, left:left + BAR][mask] = red if deciding else others[rng.integers(0, 2)]
    return x, y, where


def strongest_quadrant(maps):
    half = SIZE // 2
    mass = [maps[:, r:r + half, c:c + half].sum(axis=(1, 2)) for r in (0, half) for c in (0, half)]
    return np.argmax(np.stack(mass, axis=1), axis=1)


def quadrant_net():
    """A small all-convolutional network with a global-average-pooled head (like ResNet's
    and GoogLeNet's), run-style: uint8 pixels in."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="input")
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return nested(keras.Model(inputs, layers.Dense(4, activation="softmax", name="predictions")(x), name="quadnet"))


def test_maps_of_a_trained_network_point_at_the_deciding_quadrant_and_an_untrained_ones_do_not():
    x_train, y_train, _ = quadrant_task(1200, seed=0)
    x_test, y_test, deciding = quadrant_task(300, seed=1)
    model = quadrant_net()
    assert ex.default_layer(model) == "conv3"

    def hits(method):
        maps = ex.explain(model, x_test, y_test, method=method).maps
        return float(np.mean(strongest_quadrant(maps) == deciding))

    untrained = {method: hits(method) for method in ex.METHODS}
    model.compile(keras.optimizers.Adam(5e-3), "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=6, batch_size=64, verbose=0)  # ~110 steps: seconds on a CPU
    accuracy = float(np.mean(predict_proba(model, x_test).argmax(axis=1) == y_test))
    trained = {method: hits(method) for method in ex.METHODS}
    assert accuracy >= 0.95, accuracy
    assert trained["gradcam"] >= 0.9 and trained["saliency"] >= 0.9, trained
    # The same check fails for the same network before training: its maps follow brightness,
    # and three quadrants in four hold a bar as bright as the deciding one.
    assert untrained["gradcam"] < 0.5 and untrained["saliency"] < 0.5, untrained


# -- the layer each family explains ---------------------------------------------------------------
FAMILIES = {  # name: (input, classes, build options, the layer Grad-CAM should use)
    "happy": ((64, 64, 3), 1, {}, "max_pool"),
    "lenet5": ((32, 32, 1), 10, {}, "s4"),
    "lenet5_paper": ((32, 32, 1), 10, {}, "s4"),  # S4's squashing, after its pool and coefficients
    "alexnet": ((67, 67, 3), 4, {}, None),
    "vgg16": ((64, 64, 3), 4, {}, "block5_pool"),
    "resnet18": ((64, 64, 3), 4, {}, None),
    "resnet50": ((64, 64, 3), 6, {}, "res5c_relu"),
    "resnet50v2": ((64, 64, 3), 4, {}, "post_relu"),
    "resnet20": ((32, 32, 3), 10, {}, None),
    "googlenet": ((65, 65, 3), 4, {"aux_logits": True}, "inception_5b_output"),
}


@pytest.mark.parametrize("name", FAMILIES)
def test_each_family_explains_its_last_feature_map_on_the_main_head(name):
    shape, classes, options, expected = FAMILIES[name]
    model = build_training_model(name, shape, classes, **options)
    layer = ex.default_layer(model)
    if expected:
        assert layer == expected
    main = ex.main_path(model).layers
    position = [lay.name for lay in main].index(layer)
    assert ex.spatial_size(main[position])[0] * ex.spatial_size(main[position])[1] > 1
    assert all(not ex._has_extent(lay) for lay in main[position + 1:])  # only pooling and the head after it
    x = np.random.default_rng(0).integers(0, 256, (2, *shape)).astype("uint8")
    result = ex.explain(model, x)
    assert result.maps.shape == (2, *shape[:2]) and np.isfinite(result.maps).all()
    assert 0 <= result.maps.min() and result.maps.max() <= 1
    np.testing.assert_allclose(result.probabilities, predict_proba(model, x), atol=1e-5)  # the main head's
    np.testing.assert_array_equal(result.class_index, result.probabilities.argmax(axis=1))
    stages = ex.stage_layers(model)
    assert stages[-1] == layer and len(stages) == len({ex.spatial_size(model_layer(model, s)) for s in stages})


def model_layer(model, name):
    return next(lay for lay in ex.main_path(model).layers if lay.name == name)


def test_layer_errors_name_the_layer_and_the_fix():
    model = build_training_model("googlenet", (65, 65, 3), 4, aux_logits=True)
    with pytest.raises(UserError, match=r"has no layer named 'res9z'.*such as .*inception_5b_output"):
        ex.find_layer(model, "res9z")
    with pytest.raises(UserError, match=r"layer 'avg_pool' .* has no spatial extent .*such as inception_5b_output"):
        ex.find_layer(model, "avg_pool")
    with pytest.raises(UserError, match=r"'aux1_conv' .* does not lead to its main output"):
        ex.find_layer(model, "aux1_conv")
    with pytest.raises(UserError, match=r"Class index 4 is out of range: the model has 4 classes"):
        ex.gradcam(model, np.zeros((1, 65, 65, 3), "uint8"), 4)
    with pytest.raises(UserError, match=r"Unknown method 'lime'"):
        ex.explain(model, np.zeros((1, 65, 65, 3), "uint8"), method="lime")


def test_feature_maps_and_first_filters():
    model = build_training_model("resnet50", (64, 64, 3), 6)
    maps = cnnzoo.explain.feature_maps(model, np.full((64, 64, 3), 128, "uint8"))
    assert {name: a.shape for name, a in maps.items()} == {
        "conv1_relu": (32, 32, 64), "res2c_relu": (15, 15, 256), "res3d_relu": (8, 8, 512),
        "res4f_relu": (4, 4, 1024), "res5c_relu": (2, 2, 2048)}
    name, kernels = cnnzoo.explain.first_filters(model)
    assert name == "conv1" and kernels.shape == (64, 7, 7, 3)
    conv1 = keras.ops.convert_to_numpy(model.get_layer("ResNet50").get_layer("conv1").kernel)
    np.testing.assert_array_equal(kernels[5], conv1[..., 5])


def test_explaining_leaves_the_model_as_it_was(tmp_path):
    """The clone shares the layers: the model still trains, saves, loads and predicts the same."""
    model, x = tiny(), images()
    before = predict_proba(model, x)
    ex.gradcam(model, x, layer="features")
    ex.saliency(model, x)
    np.testing.assert_allclose(predict_proba(model, x), before, atol=1e-7)
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(predict_proba(load_model(tmp_path / "m.keras"), x), before, atol=1e-6)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, np.array([0, 1, 2, 0]), epochs=1, verbose=0)


# -- the commands ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run("sigmoid", tmp_path_factory)  # HappyModel, classes 'not smiling', 'smiling'


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for k in range(3):
        Image.fromarray(images(1, 80, seed=k)[0]).save(folder / f"photo{k}.png")
    return folder


def invoke(*args):
    return CliRunner().invoke(cli_app, [str(a) for a in args])


def test_explain_one_image_writes_its_picture_with_the_predicted_class(run, photos, tmp_path):
    photo = photos / "photo0.png"
    result = invoke("explain", run, photo, "-o", tmp_path / "one.png")
    assert result.exit_code == 0, result.output
    reference = predict_files(run, [photo])[0]
    p = max(reference["probabilities"])
    assert f"gradcam of {reference['class']} (p = {p:.4f}) at max_pool" in result.output
    with Image.open(tmp_path / "one.png") as picture:
        assert picture.format == "PNG" and picture.width > 300
    assert list(tmp_path.iterdir()) == [tmp_path / "one.png"]


def test_explain_a_folder_writes_one_picture_each_and_a_contact_sheet(run, photos, tmp_path):
    out = tmp_path / "maps"
    result = invoke("explain", run, photos, "-o", out, "--class", "smiling", "--method", "saliency")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "contact-sheet.png", "photo0.saliency.png", "photo1.saliency.png", "photo2.saliency.png"]
    assert len(re.findall(r"saliency of smiling \(p = ", result.output)) == 3
    again = invoke("explain", run, photos / "photo0.png", photos / "photo1.png", "-o", tmp_path / "two",
                   "--layer", "relu0")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "two" / "contact-sheet.png").exists() and "at relu0" in again.output


def test_features_and_filters_write_their_pictures(run, photos, tmp_path):
    result = invoke("features", run, photos / "photo1.png", "-o", tmp_path / "grid.png")
    assert result.exit_code == 0, result.output
    assert "relu0 64x64x32, max_pool 32x32x32" in result.output
    result = invoke("filters", run, "-o", tmp_path / "filters.png")
    assert result.exit_code == 0, result.output
    assert "conv0: 32x7x7x3" in result.output
    for name in ("grid.png", "filters.png"):
        with Image.open(tmp_path / name) as picture:
            assert picture.format == "PNG" and len(picture.getcolors(1 << 20) or range(1 << 20)) > 50


@pytest.mark.parametrize("args, message", [
    (["--layer", "res5c"], ("The model cnnzoo_happy has no layer named 'res5c': choose one of its feature "
                            "maps, such as relu0, max_pool")),
    (["--layer", "fc"], "The layer 'fc' of cnnzoo_happy has no spatial extent"),
    (["--class", "cat"], "has no class 'cat': its classes are not smiling, smiling."),
    (["--method", "lime"], "Unknown method 'lime': choose one of gradcam, saliency."),
])
def test_bad_options_are_one_sentence_and_exit_2(run, photos, tmp_path, args, message):
    result = invoke("explain", run, photos / "photo0.png", "-o", tmp_path / "x.png", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.png").exists()


def test_an_image_that_cannot_be_decoded_is_named(run, photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    for args in ([photos / "photo0.png", broken, "-o", tmp_path / "out"], [broken, "-o", tmp_path / "x.png"]):
        result = invoke("explain", run, *args)
        assert result.exit_code == 2, result.output
        assert f"The file {broken}" in result.output.replace("\n", "")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing half-done
    result = invoke("explain", run, photos, photos / "photo0.png", "-o", tmp_path / "many.png")
    assert result.exit_code == 2 and "names one picture" in result.output
