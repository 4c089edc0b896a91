"""What a network looks at, in Python: `cnnzoo.explain.gradcam(model, images, class_index)`.

The functions live in `cnnzoo.inference.explain` (the per-backend gradient call in
`cnnzoo.backends.gradients`); this module is their public name. Each returns NumPy arrays:

    gradcam(model, images, class_index=None, *, layer=None)  -> (N, H, W) maps in [0, 1]
    saliency(model, images, class_index=None)                -> (N, H, W) maps in [0, 1]
    explain(model, images, ...)   -> Explanation(method, layer, maps, probabilities, class_index)
    feature_maps(model, image)    -> {stage layer name: (H, W, C) activations}
    first_filters(model)          -> (layer name, (filters, height, width, channels) kernels)
    default_layer(model), stage_layers(model)  -> the layers they use

`images` are what the model takes (uint8 pixels for a cnnzoo run's model); `class_index`
is None (each image's predicted class), one int, or one per image.
"""

from cnnzoo.inference.explain import (
    Explanation,
    activations_and_gradients,
    default_layer,
    explain,
    feature_maps,
    first_filters,
    gradcam,
    saliency,
    stage_layers,
)

__all__ = ["Explanation", "activations_and_gradients", "default_layer", "explain", "feature_maps",
           "first_filters", "gradcam", "saliency", "stage_layers"]
