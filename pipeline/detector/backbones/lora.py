"""LoRA fine-tuning of a backbone with peft: low-rank adapters on chosen Linear / Conv2d layers,
everything else frozen.

The adapters are injected in place (:func:`peft.inject_adapter_in_model`), so the module keeps its
class and attributes (``Backbone.channels``, ``feature_info``, ...) and its forward; only the
adapted layers become peft's ``lora.Linear`` / ``lora.Conv2d`` wrappers. Their state-dict keys
change (``attn.qkv.weight`` -> ``attn.qkv.base_layer.weight`` plus ``attn.qkv.lora_A.default.weight``
...): load pretrained base weights *before* :func:`apply_lora`, and a LoRA checkpoint into a
module that :func:`apply_lora` was called on with the same arguments. :func:`merge_lora` folds the
adapters into the base weights and restores the plain layers (and keys) for export.

Targets are matched as peft matches them: a module whose name is a target or ends with
``"." + target``. A bare ``"proj"`` on a timm ViT therefore takes ``patch_embed.proj`` (the patch
Conv2d) as well as every ``attn.proj``; ``"attn.proj"`` takes the latter only.

Grouped / depth-wise Conv2d (``groups > 1``: EfficientNet's ``conv_dw``, ConvNeXt's
``conv_dw``) are refused: peft adapts them only when the rank is a multiple of ``groups`` and
cannot merge them into the base weights, so they could not be exported as plain convs.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from pipeline.config import LoraConfig

__all__ = ["apply_lora", "apply_lora_config", "count_parameters", "lora_state_dict", "merge_lora"]

#: Layer types this module lets peft adapt: the ones it can also merge back into plain layers.
ADAPTABLE = (nn.Linear, nn.Conv2d)
#: What peft's LoRA parameter names start with (``lora_A``, ``lora_B``, ``lora_magnitude_vector``).
ADAPTER_PREFIX = "lora_"  # peft.tuners.lora.LoraModel.prefix


def _is_adapter(name: str) -> bool:
    """Whether a parameter / state-dict key belongs to an adapter (any path part ``lora_*``)."""
    return any(part.startswith(ADAPTER_PREFIX) for part in name.split("."))


def _lora_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    from peft.tuners.lora import LoraLayer  # peft (and what it imports) loads only when LoRA is used

    return [(name, m) for name, m in module.named_modules() if isinstance(m, LoraLayer)]


def _describe_adaptable(module: nn.Module, limit: int = 8) -> str:
    """A few targets that would work on ``module``: last name parts of its plain Linear / Conv2d
    layers, with one full name each (``qkv (blocks.0.attn.qkv), proj (...)``)."""
    first: dict[str, str] = {}
    for name, m in module.named_modules():
        if name and isinstance(m, ADAPTABLE) and getattr(m, "groups", 1) == 1:
            first.setdefault(name.rpartition(".")[2], name)
    if not first:
        return "it has no Linear or non-grouped Conv2d layer"
    shown = ", ".join(f"{short} ({full})" for short, full in list(first.items())[:limit])
    more = f", ... ({len(first) - limit} more)" if len(first) > limit else ""
    return f"its Linear / Conv2d layers include {shown}{more}"


def apply_lora(
    module: nn.Module, rank: int, alpha: float, dropout: float, target_modules: Sequence[str]
) -> list[str]:
    """Inject LoRA adapters into ``module`` in place and freeze every other parameter.

    Each targeted layer ``y = W x`` becomes ``y = W x + (alpha / rank) * B A dropout(x)`` with
    ``A: [rank, in]`` (Kaiming init) and ``B: [out, rank]`` (zeros), so the output is unchanged
    until ``B`` is trained. Convs get ``A`` as a conv with the layer's kernel and stride and ``B``
    as a 1x1 conv.

    Args:
        module: any ``nn.Module`` (a timm model, a ``Backbone``); modified in place.
        rank: adapter rank ``r`` (>= 1).
        alpha: LoRA scale numerator; the update is scaled by ``alpha / rank``.
        dropout: dropout probability on the adapter's input, in [0, 1).
        target_modules: layer names or name suffixes (``"qkv"``, ``"attn.proj"``, ``"mlp.fc1"``,
            ``"conv_pw"``); each must match at least one ``nn.Linear`` or non-grouped
            ``nn.Conv2d``.

    Returns:
        The names of the adapted layers, in ``named_modules`` order.

    Afterwards only parameters named ``...lora_...`` have ``requires_grad``; base weights, biases,
    norms and embeddings are frozen. Buffers are not parameters: BatchNorm running statistics
    still update in ``train()`` mode (put those layers in ``eval()`` or use timm's ``freeze``
    to keep them).
    """
    targets = (target_modules,) if isinstance(target_modules, str) else tuple(target_modules)
    if rank < 1:
        raise ValueError(f"apply_lora: rank must be >= 1, got {rank}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"apply_lora: dropout must be in [0, 1), got {dropout}")
    if not targets:
        raise ValueError(f"apply_lora: no target_modules given; {_describe_adaptable(module)}")
    if _lora_layers(module):
        # A second inject would add another adapter named "default" on top of the first.
        raise ValueError(f"apply_lora: {type(module).__name__} already has LoRA adapters; merge_lora it first")

    import peft
    from peft.tuners.tuners_utils import check_target_module_exists

    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets))
    named = [(name, m) for name, m in module.named_modules() if name]
    matched = [(name, m) for name, m in named if check_target_module_exists(config, name)]
    # peft only fails when no target matches at all; a misspelt one among several would go unnoticed.
    unmatched = [t for t in targets
                 if not any(check_target_module_exists(peft.LoraConfig(target_modules=[t]), n) for n, _ in matched)]
    if unmatched:
        raise ValueError(
            f"apply_lora: target(s) {', '.join(map(repr, unmatched))} of {list(targets)} match no layer of "
            f"{type(module).__name__}; {_describe_adaptable(module)}"
        )
    for name, m in matched:
        if not isinstance(m, ADAPTABLE):
            raise ValueError(
                f"apply_lora: target {name!r} is of type {type(m).__name__}; LoRA adapts nn.Linear and nn.Conv2d "
                f"layers only (name a layer, not a block or a norm); {_describe_adaptable(module)}"
            )
        if getattr(m, "groups", 1) > 1:
            kind = "depth-wise" if m.groups == m.in_channels else "grouped"
            raise ValueError(
                f"apply_lora: target {name!r} is a {kind} Conv2d (groups={m.groups}); peft adapts grouped convs "
                f"only when the rank is a multiple of groups and cannot merge them into the base weights "
                f"(merge_lora, export); {_describe_adaptable(module)}"
            )

    peft.inject_adapter_in_model(config, module)
    # peft freezes the base as well (bias="none"); done here so the contract does not rest on its default.
    for name, p in module.named_parameters():
        p.requires_grad_(_is_adapter(name))
    return [name for name, _ in matched]


def lora_state_dict(module: nn.Module) -> dict[str, Tensor]:
    """The adapter tensors of ``module`` only, keyed as in ``module.state_dict()``.

    Save them apart from the (frozen, usually pretrained) base; load them back with
    ``module.load_state_dict(adapters, strict=False)`` after :func:`apply_lora` with the same
    arguments (its ``unexpected_keys`` must be empty, its ``missing_keys`` are the base's).
    """
    if not _lora_layers(module):
        raise ValueError(f"lora_state_dict: {type(module).__name__} has no LoRA adapters (apply_lora first)")
    return {k: v for k, v in module.state_dict().items() if _is_adapter(k)}


def merge_lora(module: nn.Module) -> int:
    """Fold every adapter into its base layer and put the plain layer back in place.

    Afterwards ``module`` holds no peft code (plain ``nn.Linear`` / ``nn.Conv2d``, no
    ``peft_config`` attribute) and has the state-dict keys of the model before
    :func:`apply_lora`, so it exports and loads like one; outputs are those of the adapted module
    up to float rounding.

    ``requires_grad`` is left as it was on every remaining parameter: after :func:`apply_lora`
    that means the whole module is frozen (the adapters, the only trainable part, are gone). Call
    ``module.requires_grad_()`` to train it further.

    Returns:
        How many layers were merged (0 when ``module`` has no adapters).
    """
    layers = _lora_layers(module)
    if any(name == "" for name, _ in layers):
        raise ValueError("merge_lora: the module is itself a LoRA layer; merge its parent (or use get_base_layer())")
    for name, layer in layers:
        layer.merge(safe_merge=True)  # raises on NaN instead of writing it into the base weights
        parent_name, _, child = name.rpartition(".")
        setattr(module.get_submodule(parent_name), child, layer.get_base_layer())
    if hasattr(module, "peft_config"):  # set by inject_adapter_in_model
        del module.peft_config
    return len(layers)


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts of ``module``; shared parameters count once."""
    params = list(module.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def apply_lora_config(module: nn.Module, cfg: LoraConfig) -> list[str]:
    """:func:`apply_lora` with ``model.backbone.lora`` (nothing when its rank is 0)."""
    if cfg.rank == 0:
        return []
    return apply_lora(module, cfg.rank, cfg.alpha, cfg.dropout, cfg.targets)
