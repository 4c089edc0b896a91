"""Gradients of a function of Keras tensors, on whichever backend runs.

Keras 3 has no backend-neutral gradient call (`keras.ops` has none; a training step uses
each backend's own autodiff), so code that needs d(score)/d(input), such as Grad-CAM and
saliency maps (`cnnzoo.inference.explain`), gets it here and nowhere else: one function,
one branch per backend.

`grad(fn, args, argnums)` is JAX's `jax.grad(fn, argnums, has_aux=True)` called on `args`:
`fn(*args)` returns `(scalar, aux)`, and the result is `(aux, [d scalar / d args[i] for i
in argnums])`. On PyTorch the same is `torch.autograd.grad` on tensors made to require a
gradient; it back-propagates only as far as the arguments asked for, so a gradient with
respect to a late activation costs a fraction of a full backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras

from cnnzoo.errors import UserError


def grad(fn: Callable, args: Sequence, argnums: Sequence[int]):
    """(aux, gradients): `fn(*args) -> (scalar, aux)` differentiated w.r.t. `args[argnums]`.

    Arguments are NumPy arrays or backend tensors; the gradients and `aux` come back as
    backend tensors (`keras.ops.convert_to_numpy` them), without a graph attached.
    """
    argnums = tuple(argnums)
    backend = keras.backend.backend()
    if backend == "torch":
        return _torch_grad(fn, args, argnums)
    if backend == "jax":
        return _jax_grad(fn, args, argnums)
    raise UserError(
        f"Gradients (Grad-CAM, saliency) are implemented for the torch and jax backends, not "
        f"{backend!r}: rerun with `cnnzoo --backend torch ...` (or KERAS_BACKEND=torch)."
    )


def _torch_grad(fn, args, argnums):
    import torch

    tensors = [keras.ops.convert_to_tensor(a) for a in args]
    tensors = [t.detach().requires_grad_(True) if i in argnums else t for i, t in enumerate(tensors)]
    with torch.enable_grad():  # also inside a caller's no_grad (a server's inference thread)
        scalar, aux = fn(*tensors)
        grads = torch.autograd.grad(scalar, [tensors[i] for i in argnums], allow_unused=True)
    grads = [torch.zeros_like(tensors[i]) if g is None else g for i, g in zip(argnums, grads)]
    return keras.tree.map_structure(lambda t: t.detach() if torch.is_tensor(t) else t, aux), grads


def _jax_grad(fn, args, argnums):
    import jax
    import jax.numpy as jnp

    grads, aux = jax.grad(fn, argnums=argnums, has_aux=True)(*[jnp.asarray(a) for a in args])
    return aux, list(grads)
