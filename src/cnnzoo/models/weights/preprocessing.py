"""The input convention of published weights, as a layer that travels inside the model.

Every cnnzoo model takes uint8 pixels and scales them itself (`Rescaling(1/255)`, the layer
named `scale`), so `predict` and `serve` feed plain pixels. Published weights were trained on
inputs prepared another way; `ImagePreprocessing` turns cnnzoo's [0, 1] images into what the
weights expect, with the names of `keras.applications.imagenet_utils.preprocess_input`:

| mode | what | whose weights |
| --- | --- | --- |
| caffe | RGB -> BGR, 0-255, minus the ImageNet mean per channel (no scaling) | keras.applications ResNet v1, VGG |
| tf | [-1, 1] | keras.applications ResNet v2; torchvision's GoogLeNet (its `transform_input`) |
| torch | minus mean (0.485, 0.456, 0.406), divided by std (0.229, 0.224, 0.225) | torchvision, timm |

A converted model is `uint8 pixels -> scale -> ImagePreprocessing -> network`; a model
fine-tuned from published weights puts the augmentation layers between `scale` and this one,
so they still see [0, 1] images. `labels` names the label set of the weights' classifier
("imagenet": ImageNet-1k's 1,000 classes, whose names `predict` reads from torchvision), or
None once the model has been trained on other classes.
"""

from __future__ import annotations

import keras
from keras import ops

from cnnzoo.models.layers import channel_axis

MODES = ("caffe", "tf", "torch")
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
DESCRIPTIONS = {
    "caffe": "BGR, 0-255, minus the ImageNet mean (Caffe)",
    "tf": "[-1, 1]",
    "torch": "[0, 1], ImageNet mean and std (torchvision)",
}


@keras.saving.register_keras_serializable(package="cnnzoo")
class ImagePreprocessing(keras.layers.Layer):
    """[0, 1] RGB images -> the input convention `mode` of a published checkpoint (see the module)."""

    def __init__(self, mode: str = "torch", labels: str | None = None, data_format=None, **kwargs):
        # float32 even under a bf16 policy: 0-255 minus a mean keeps only ~3 digits in bf16.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}. Received: mode={mode!r}")
        self.mode, self.labels = mode, labels
        self.data_format = data_format or keras.config.image_data_format()

    def _per_channel(self, values, ndim: int):
        shape = [1] * ndim
        shape[channel_axis(self.data_format)] = len(values)
        return ops.reshape(ops.convert_to_tensor(values, dtype=self.compute_dtype), shape)

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        if self.mode == "tf":
            return images * 2.0 - 1.0
        if self.mode == "torch":
            mean = self._per_channel(TORCH_MEAN, len(images.shape))
            std = self._per_channel(TORCH_STD, len(images.shape))
            return (images - mean) / std
        bgr = ops.flip(images, axis=channel_axis(self.data_format)) * 255.0
        return bgr - self._per_channel(CAFFE_BGR_MEAN, len(images.shape))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "labels": self.labels, "data_format": self.data_format}


def input_convention(model: keras.Model) -> ImagePreprocessing | None:
    """The ImagePreprocessing layer at the front of a cnnzoo model, or None (plain [0, 1] input)."""
    for layer in model.layers[:6]:
        if isinstance(layer, ImagePreprocessing):
            return layer
    return None
