"""Small config dataclasses shared by training, export, engines and the camera loop."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessConfig:
    """How a uint8 image becomes the network input. Written into checkpoints and manifests.

    The image is resized (uint8) straight to ``input_size`` (height, width), converted to RGB,
    scaled to [0, 1], normalized with ``mean``/``std`` and laid out as NCHW float32.
    """

    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: str = "RGB"
    layout: str = "NCHW"
    resize: str = "stretch"
    interpolation: str = "linear"
    normalize_in_network: bool = False  # uint8 NHWC input; the network casts and normalizes

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        d = dict(d)
        d["input_size"] = tuple(d["input_size"])
        d["mean"] = tuple(d["mean"])
        d["std"] = tuple(d["std"])
        return cls(**d)


@dataclass
class ModelConfig:
    """What a model is: architecture, task, classes and input. Travels with every checkpoint."""

    arch: str
    class_names: list[str]
    task: str = "classify"
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        return {
            "arch": self.arch,
            "task": self.task,
            "class_names": list(self.class_names),
            "preprocess": self.preprocess.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(
            arch=d["arch"],
            task=d.get("task", "classify"),
            class_names=list(d["class_names"]),
            preprocess=PreprocessConfig.from_dict(d["preprocess"]),
        )
