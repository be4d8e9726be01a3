"""videomage: multi-subject and motion customization of text-to-video diffusion models.

The public API is exactly what this module exports.
"""

from videomage._version import __version__
from videomage.components import (
    Adapter,
    AttentionStore,
    Backbone,
    Command,
    LoadReport,
    MaskSource,
    Metric,
    Objective,
    ObjectiveOutput,
    Sampler,
    TrainingContext,
    VideoSpec,
)
from videomage.errors import (
    ArtifactError,
    ConfigError,
    InputError,
    PluginError,
    RegistryError,
    TrainingError,
    VideomageError,
)
from videomage.hookspecs import hookimpl
from videomage.sampling import Concept, SamplingRequest
from videomage.plugins import get_plugin_manager, get_registry

__all__ = [
    "Adapter",
    "ArtifactError",
    "AttentionStore",
    "Backbone",
    "Command",
    "Concept",
    "ConfigError",
    "InputError",
    "LoadReport",
    "MaskSource",
    "Metric",
    "Objective",
    "ObjectiveOutput",
    "PluginError",
    "RegistryError",
    "Sampler",
    "SamplingRequest",
    "TrainingContext",
    "TrainingError",
    "VideoSpec",
    "VideomageError",
    "__version__",
    "get_plugin_manager",
    "get_registry",
    "hookimpl",
]
