"""The plugin author's kit: every helper a bundled plugin uses, from one public module.

The component interfaces and errors are exported by ``videomage`` itself; this module adds
what implementing them takes. The bundled plugins import from ``videomage``, ``videomage.kit``
and ``videomage.testing`` only, so a third-party plugin can do everything they do. Names here
follow the deprecation policy of the docs' migration notes: one that moves stays importable
from here, with a warning, for at least one minor version.

Importing this module imports torch and safetensors, never diffusers, transformers or peft.

Groups:

* **Backbones, text**: [`TokenTable`][videomage.text.TokenTable] (learned tokens as their own
  trainable rows, float32 whatever the model's dtype) and [`TextMethods`][videomage.text.TextMethods]
  (the ``Backbone`` text methods written once over a token table).
* **Backbones, model files**: reading a diffusers-layout folder or a Hub id's configs without
  loading weights (``read_config``, ``component_configs``, ``check_model_request``, ``DTYPES``),
  the native clip size (``read_video_spec``, ``write_video_spec``), an architecture hash for
  ``Backbone.fingerprint`` (``config_fingerprint``), safetensors-first loading
  (``use_safetensors``, ``convert_folder``) and dtype casting as diffusers loads (``cast_as_loaded``).
* **Backbones, checkpointing**: ``checkpointed``, ``checkpoint_call`` for
  ``Backbone.activation_checkpointing``; ``checkpoint_always`` for
  ``enable_gradient_checkpointing``; ``capturing``, ``recomputing``, ``replays`` for
  attention-capture processors that run under it.
* **Objectives**: ``backward_scope`` (keep a context open until the trainer's backward pass).
* **Commands**: loading a backbone and an adapter by name (``load_backbone``, ``make_adapter``),
  artifacts (``Artifact``), atomic writes (``atomic_write``), videos out (``write_mp4``,
  ``write_contact_sheet``), running the method's stages from code (``learn_subject``,
  ``learn_motion``, ``fuse``, ``generate`` with their configs and ``StageOptions``;
  ``content_hash`` for cache keys), a whole job as ``videomage run`` runs it (``run_recipe``
  with a ``Recipe`` of ``ModelConfig``, subjects, motion, fusion, ``SamplingConfig`` and
  ``OutputConfig``) and the training loop (``Trainer``).
* **Errors and deprecations**: ``did_you_mean`` and ``format_choices`` for messages that list
  the valid choices; ``moved_names`` to keep an old import path of your own plugin working.
"""

from __future__ import annotations

from videomage.artifact import Artifact, atomic_write
from videomage.checkpointing import capturing, checkpoint_always, checkpoint_call, checkpointed, recomputing, replays
from videomage.config import FusionConfig, ModelConfig, MotionConfig, OutputConfig, Recipe, SamplingConfig, SubjectConfig
from videomage.deprecation import moved_names
from videomage.errors import did_you_mean, format_choices
from videomage.loading import load_backbone, make_adapter
from videomage.media import write_contact_sheet, write_mp4
from videomage.memory import cast_as_loaded
from videomage.options import as_dict, build, choice, flag, from_values, integer, number, text
from videomage.modelfiles import (
    DTYPES,
    check_model_request,
    component_configs,
    config_fingerprint,
    read_config,
    read_video_spec,
    write_video_spec,
)
from videomage.sampling import FIELDS, SPACINGS, coerce
from videomage.stages.common import StageOptions, content_hash
from videomage.stages.fusion import fuse
from videomage.stages.generate import generate
from videomage.stages.motion import learn_motion
from videomage.stages.subject import learn_subject
from videomage.text import TextMethods, TokenTable
from videomage.trainer import ParamGroup, Trainer, TrainerConfig, backward_scope
from videomage.weightfiles import convert_folder, use_safetensors
from videomage.workflow import run_recipe

__all__ = [
    # backbones: text
    "TextMethods",
    "TokenTable",
    # backbones: model files
    "DTYPES",
    "cast_as_loaded",
    "check_model_request",
    "component_configs",
    "config_fingerprint",
    "convert_folder",
    "read_config",
    "read_video_spec",
    "use_safetensors",
    "write_video_spec",
    # backbones: checkpointing and attention capture
    "capturing",
    "checkpoint_always",
    "checkpoint_call",
    "checkpointed",
    "recomputing",
    "replays",
    # objectives
    "backward_scope",
    # commands: models, artifacts, files, stages, training
    "Artifact",
    "FusionConfig",
    "MotionConfig",
    "ParamGroup",
    "StageOptions",
    "SubjectConfig",
    "Trainer",
    "TrainerConfig",
    "atomic_write",
    "content_hash",
    "fuse",
    "generate",
    "learn_motion",
    "learn_subject",
    "load_backbone",
    "make_adapter",
    "write_contact_sheet",
    "write_mp4",
    "Recipe",
    "ModelConfig",
    "OutputConfig",
    "SamplingConfig",
    "run_recipe",
    # component options and sampling requests
    "FIELDS",
    "SPACINGS",
    "as_dict",
    "build",
    "choice",
    "coerce",
    "flag",
    "from_values",
    "integer",
    "number",
    "text",
    # errors and deprecations
    "did_you_mean",
    "format_choices",
    "moved_names",
]
