"""Sharding helpers: which layers FSDP wraps and checkpoints, for any Hugging Face decoder-only model.

`DecoderLayerPolicy` lets one strategy snippet serve every model family: instead of naming
``LlamaDecoderLayer`` or ``Qwen2DecoderLayer`` in YAML, it reads the layer class from the model itself
(transformers lists it in ``_no_split_modules``)::

    strategy:
      class_path: lightning.pytorch.strategies.FSDPStrategy
      init_args:
        auto_wrap_policy: {class_path: bridge_pl.modules.parallel.DecoderLayerPolicy}
        activation_checkpointing_policy: {class_path: bridge_pl.modules.parallel.DecoderLayerPolicy}

`fully_shard_decoder` does the same for FSDP2 (Lightning's `ModelParallelStrategy`), where the module
applies the sharding itself in ``configure_model``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributed.fsdp.wrap import ModuleWrapPolicy

__all__ = ["DecoderLayerPolicy", "decoder_layer_classes", "fully_shard_decoder"]


class DecoderLayerPolicy(ModuleWrapPolicy):
    """FSDP wrap / activation-checkpointing policy: one unit per decoder layer of the model being wrapped.

    Args:
        layer_class_names: Class names of the layers to wrap (e.g. ``["Qwen2DecoderLayer"]``); by default the
            names each transformers model declares in ``_no_split_modules``.

    Example:
        ``FSDPStrategy(auto_wrap_policy=DecoderLayerPolicy(), activation_checkpointing_policy=DecoderLayerPolicy())``
    """

    def __init__(self, layer_class_names: list[str] | None = None) -> None:
        super().__init__(())
        self.layer_class_names = layer_class_names

    def _run_policy(
        self, root_module: torch.nn.Module, ignored_modules: set[torch.nn.Module], root_kwargs: dict[str, Any]
    ) -> dict[torch.nn.Module, dict[str, Any]]:
        # The classes are only known once the model exists (LightningModule.configure_model builds it).
        self._module_classes = decoder_layer_classes(root_module, self.layer_class_names)
        return super()._run_policy(root_module, ignored_modules, root_kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layer_class_names={self.layer_class_names})"


def decoder_layer_classes(model: torch.nn.Module, names: list[str] | None = None) -> set[type[torch.nn.Module]]:
    """The classes of `model`'s submodules named `names` (default: every ``_no_split_modules`` entry inside it).

    Raises:
        ValueError: No submodule has one of those class names (the policy would wrap nothing).
    """
    if names is None:
        names = sorted({n for m in model.modules() for n in (getattr(m, "_no_split_modules", None) or ())})
    classes = {type(m) for m in model.modules() if type(m).__name__ in names}
    if not classes:
        raise ValueError(
            f"no layer of class {names} in {type(model).__name__}: set "
            "trainer.strategy.init_args.auto_wrap_policy.init_args.layer_class_names to the decoder layer class name"
        )
    return classes


def fully_shard_decoder(model: torch.nn.Module, mesh: Any) -> torch.nn.Module:
    """FSDP2: shard each decoder layer, then the rest of `model` (embeddings, final norm, output layer).

    Args:
        model: The Hugging Face model (modified in place).
        mesh: The 1-D data-parallel `DeviceMesh` to shard over.

    Returns:
        `model`, now holding DTensor parameters.
    """
    from torch.distributed.fsdp import fully_shard

    layer_classes = tuple(decoder_layer_classes(model))
    for module in list(model.modules()):
        if isinstance(module, layer_classes):
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model
