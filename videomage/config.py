"""Config records and the recipe file.

Every record is a frozen, keyword-only attrs class whose validators name the field, the
expectation and the received value. A recipe (TOML) describes a whole job; unknown keys are
errors with a did-you-mean hint, never silently ignored.
"""

from __future__ import annotations

import math
import re
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs

from videomage.errors import ConfigError, did_you_mean, format_choices

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "FusionConfig",
    "ModelConfig",
    "MotionConfig",
    "OutputConfig",
    "Recipe",
    "SamplingConfig",
    "SubjectConfig",
    "from_mapping",
]

T = TypeVar("T")


# -- validators that say what went wrong -------------------------------------------------------
def _number(value: Any) -> bool:
    # NaN passes every comparison test, so "value <= 0" alone lets it through.
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _positive(inst: Any, attr: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    if not _number(value) or value <= 0:
        raise ConfigError(f"{type(inst).__name__}.{attr.name}: expected a positive number, got {value!r}")


def _non_negative(inst: Any, attr: attrs.Attribute, value: Any) -> None:
    if not _number(value) or value < 0:
        raise ConfigError(f"{type(inst).__name__}.{attr.name}: expected a finite number >= 0, got {value!r}")


def _int_ge(low: int):
    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{type(inst).__name__}.{attr.name}: expected an integer >= {low}, got {value!r}")

    return check


def _non_empty_str(inst: Any, attr: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{type(inst).__name__}.{attr.name}: expected a non-empty string, got {value!r}")


#: A learned token: a word in angle brackets. Tokens name files (``subjects/<name>.safetensors``),
#: so no path characters; and no ``|``, which would let ``<|endoftext|>`` and the like take over a
#: text encoder's special tokens.
#: No ':' in a subject token: '<motion:...>' is the motion stage's namespace (videomage.stages.motion.ENTITY_PREFIX).
TOKEN_PATTERN = re.compile(r"<\w[\w-]*>")


def _token(inst: Any, attr: attrs.Attribute, value: Any) -> None:
    _non_empty_str(inst, attr, value)
    if not TOKEN_PATTERN.fullmatch(value):
        raise ConfigError(
            f"{type(inst).__name__}.{attr.name}: expected a new word in angle brackets (letters, digits, '_' "
            f"or '-'), such as '<toy>', got {value!r}"
        )


def _one_of(*choices: str):
    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if value not in choices:
            raise ConfigError(
                f"{type(inst).__name__}.{attr.name}: expected one of {format_choices(choices)}, got {value!r}"
                f"{did_you_mean(str(value), choices)}"
            )

    return check


def _words(value: Any) -> Any:
    # tuple("cat") would be ("c", "a", "t"): a string is a mistake for a list of one word.
    if isinstance(value, str):
        raise ConfigError(f"MotionConfig.entities: expected a list of words such as [\"person\", \"horse\"], got the "
                          f"string {value!r}; write entities = [{value!r}]".replace("'", '"'))
    return tuple(value)


def _str_list(inst: Any, attr: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, tuple) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{type(inst).__name__}.{attr.name}: expected a non-empty list of words, got {value!r}")
    for v in value:
        if not re.fullmatch(r"[\w][\w '-]*", v.strip()):
            raise ConfigError(f"{type(inst).__name__}.{attr.name}: {v!r} is not a word of the prompt (letters, digits, "
                              f"spaces, '-' or apostrophes)")


def _expert_list(inst: Any, attr: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{type(inst).__name__}.{attr.name}: expected a list of expert names such as "
                          f"['high_noise'] (empty: the backbone's default), got {value!r}")


def _opt_path(value: Any) -> Path | None:
    return None if value is None else Path(value)


def _table(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


def _options_table(inst: Any, attr: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{type(inst).__name__}.{attr.name}: expected a table of the component's options, such as "
                          f"{{ tau = 10 }}, got {value!r}")


def options_field() -> Any:
    """A component's options table: plain data, checked against the component's record by the registry."""
    return attrs.field(factory=dict, converter=_table, validator=_options_table)


def _move_deprecated(inst: Any, table: str, names: tuple[str, ...], component: str) -> None:
    """Move values of deprecated fields ``names`` into the options table ``table``, with a warning."""
    moved = {n: getattr(inst, n) for n in names if getattr(inst, n) is not None}
    if not moved:
        return
    cls = type(inst).__name__
    listed = ", ".join(f"{k} = {v!r}" for k, v in moved.items())
    warnings.warn(f"{cls}: {', '.join(moved)}: deprecated as {cls} field{'s' if len(moved) > 1 else ''}; "
                  f"{'these are options' if len(moved) > 1 else 'it is an option'} of the {component} now: write them in its table ({table} = {{ {listed} }}).",
                  FutureWarning, stacklevel=4)
    clash = sorted(set(moved) & set(getattr(inst, table)))
    if clash:
        raise ConfigError(f"{cls}: {clash[0]!r} is given twice, as a deprecated field and in {table}; keep the {table} one")
    object.__setattr__(inst, table, {**getattr(inst, table), **moved})
    for n in moved:
        object.__setattr__(inst, n, None)


def default(record: type, name: str) -> Any:
    """The default of field ``name`` of config record ``record`` (the CLI's defaults are the configs')."""
    return attrs.fields_dict(record)[name].default


# -- records -----------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class ModelConfig:
    """Which backbone to load: a Hub id or a local folder, and how."""

    id: str = attrs.field(validator=_non_empty_str)
    backbone: str | None = None
    dtype: str = attrs.field(default="float32", validator=_one_of("float32", "float16", "bfloat16"))
    device: str = "cpu"
    #: The adapter type every stage attaches (the paper's: LoRA), and its options.
    adapter: str = attrs.field(default="lora", validator=_non_empty_str)
    adapter_options: dict[str, Any] = options_field()
    #: Memory savers (they change no result, so no stage reruns when they change): activation
    #: checkpointing in every learning stage, and the text encoder moved to host memory once a
    #: stage's prompts are encoded (motion after its inversion, fusion and the final video).
    gradient_checkpointing: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    release_text_encoder: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))


@attrs.frozen(kw_only=True)
class SubjectConfig:
    """One subject: its images, token and class word, and the subject-learning settings (§1.1)."""

    token: str = attrs.field(validator=_token)
    class_word: str = attrs.field(validator=_non_empty_str)
    images: Path = attrs.field(converter=Path)
    prior_videos: Path | None = attrs.field(default=None, converter=_opt_path)
    steps: int = attrs.field(default=300, validator=_int_ge(1))
    lr: float = attrs.field(default=1e-4, validator=_positive)
    text_lr: float = attrs.field(default=1e-5, validator=_positive)
    rank: int = attrs.field(default=4, validator=_int_ge(1))
    prompt_template: str = attrs.field(default="A {token}", validator=_non_empty_str)
    #: Experts of a mixture-of-experts backbone the subject adapter lives in (empty: the backbone's default).
    experts: tuple[str, ...] = attrs.field(default=(), converter=tuple, validator=_expert_list)
    #: The loss (the paper's: denoising plus prior preservation, weighted by its option ``lambda_reg``).
    objective: str = attrs.field(default="denoise", validator=_non_empty_str)
    objective_options: dict[str, Any] = options_field()
    #: Deprecated: ``objective_options = { lambda_reg = ... }``.
    lambda_reg: float | None = None

    def __attrs_post_init__(self) -> None:
        _move_deprecated(self, "objective_options", ("lambda_reg",), "objective")


@attrs.frozen(kw_only=True)
class MotionConfig:
    """The reference clip and the appearance-agnostic motion-learning settings (§1.2)."""

    video: Path = attrs.field(converter=Path)
    prompt: str = attrs.field(validator=_non_empty_str)
    entities: tuple[str, ...] = attrs.field(converter=_words, validator=_str_list)
    steps: int = attrs.field(default=300, validator=_int_ge(1))
    inversion_steps: int = attrs.field(default=200, validator=_int_ge(0))
    lr: float = attrs.field(default=1e-4, validator=_positive)
    inversion_lr: float = attrs.field(default=5e-3, validator=_positive)
    rank: int = attrs.field(default=4, validator=_int_ge(1))
    appearance_template: str = attrs.field(default="A static video of {entities}", validator=_non_empty_str)
    #: Experts of a mixture-of-experts backbone the motion adapter lives in (empty: the backbone's default).
    experts: tuple[str, ...] = attrs.field(default=(), converter=tuple, validator=_expert_list)
    #: The motion loss (the paper's: the negative-CFG target, strength option ``omega``).
    objective: str = attrs.field(default="negative_cfg_motion", validator=_non_empty_str)
    objective_options: dict[str, Any] = options_field()
    #: The textual-inversion loss of the entity tokens (plain denoising on one frame).
    inversion_objective: str = attrs.field(default="denoise", validator=_non_empty_str)
    inversion_objective_options: dict[str, Any] = options_field()
    #: Deprecated: ``objective_options = { omega = ... }``.
    omega: float | None = None

    def __attrs_post_init__(self) -> None:
        _move_deprecated(self, "objective_options", ("omega",), "objective")


@attrs.frozen(kw_only=True)
class FusionConfig:
    """Test-time fusion of the subject LoRAs with attention regularisation (§1.3)."""

    steps: int = attrs.field(default=200, validator=_int_ge(1))
    lr: float = attrs.field(default=1e-4, validator=_positive)
    lambda_attn: float = attrs.field(default=0.6, validator=_non_negative)
    videos_per_subject: int = attrs.field(default=4, validator=_int_ge(1))
    mask_source: str = attrs.field(default="foreground", validator=_non_empty_str)
    mask_source_options: dict[str, Any] = options_field()
    #: The distillation loss (student against each teacher on its videos).
    distill_objective: str = attrs.field(default="fusion_distill", validator=_non_empty_str)
    distill_options: dict[str, Any] = options_field()
    #: The attention regularisation on CutMix composites, weighted by ``lambda_attn``.
    attention_objective: str = attrs.field(default="attention_reg", validator=_non_empty_str)
    attention_options: dict[str, Any] = options_field()


#: SamplingConfig fields of videomage 0.1 that were SCS's options; now keys of ``options``.
SCS_FIELDS = ("alpha_cross", "alpha_temporal", "guidance_norm", "tau", "beta_s", "beta_m", "guidance_checkpointing")


@attrs.frozen(kw_only=True)
class SamplingConfig:
    """The final video: the prompt, the settings every sampler shares, and the sampler with its options.

    ``sampler`` is the paper's spatial-temporal collaborative sampling by default; ``options``
    is the sampler's own table (``videomage plugins --options`` lists each sampler's).
    """

    prompt: str = attrs.field(validator=_non_empty_str)
    sampler: str = attrs.field(default="scs", validator=_non_empty_str)
    options: dict[str, Any] = options_field()
    negative_prompt: str = ""
    steps: int = attrs.field(default=50, validator=_int_ge(1))
    guidance_scale: float = attrs.field(default=9.0, validator=_non_negative)
    scheduler: str | None = None
    frames: int | None = attrs.field(default=None, validator=_positive)
    height: int | None = attrs.field(default=None, validator=_positive)
    width: int | None = attrs.field(default=None, validator=_positive)
    seed: int = attrs.field(default=0, validator=_int_ge(0))
    # Deprecated (videomage 0.1): SCS's options as fields; each moves into ``options`` with a warning.
    alpha_cross: float | None = None
    alpha_temporal: float | None = None
    guidance_norm: str | None = None
    tau: int | None = None
    beta_s: float | None = None
    beta_m: float | None = None
    guidance_checkpointing: bool | None = None

    def __attrs_post_init__(self) -> None:
        _move_deprecated(self, "options", SCS_FIELDS, "sampler")


@attrs.frozen(kw_only=True)
class OutputConfig:
    """Where the job writes its artifacts and videos."""

    dir: Path = attrs.field(default=Path("videomage-out"), converter=Path)
    gif: bool = False
    contact_sheet: bool = True


@attrs.frozen(kw_only=True)
class Recipe:
    """A whole job: model, subjects, motion, fusion, sampling and outputs."""

    model: ModelConfig
    subjects: tuple[SubjectConfig, ...] = attrs.field(converter=tuple)
    motion: MotionConfig | None = None
    fusion: FusionConfig = attrs.field(factory=FusionConfig)
    sampling: SamplingConfig | None = None
    output: OutputConfig = attrs.field(factory=OutputConfig)
    seed: int = attrs.field(default=0, validator=_int_ge(0))

    @subjects.validator
    def _check_subjects(self, attr: attrs.Attribute, value: tuple[SubjectConfig, ...]) -> None:
        tokens = [s.token for s in value]
        dupes = sorted({t for t in tokens if tokens.count(t) > 1})
        if dupes:
            raise ConfigError(f"Recipe.subjects: each subject needs its own token; {dupes[0]!r} is used twice")

    @classmethod
    def from_toml(cls, path: str | Path) -> Recipe:
        """Read a recipe file; relative paths in it are resolved against the file's folder."""
        from videomage.paths import check_input_file

        path = check_input_file(path, "recipe", error=ConfigError)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"recipe {str(path)!r} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"recipe {str(path)!r} cannot be read: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"recipe {str(path)!r} is not valid TOML: {exc}") from None
        recipe = from_mapping(cls, data, where=str(path))
        return recipe.resolve_paths(path.parent)

    def resolve_paths(self, base: Path) -> Recipe:
        """Make relative input/output paths relative to ``base``."""

        def fix(p: Path | None) -> Path | None:
            return p if p is None or p.is_absolute() else base / p

        subjects = tuple(attrs.evolve(s, images=fix(s.images), prior_videos=fix(s.prior_videos)) for s in self.subjects)
        motion = None if self.motion is None else attrs.evolve(self.motion, video=fix(self.motion.video))
        model = self.model
        local = base / model.id
        if not Path(model.id).is_absolute() and local.exists():
            model = attrs.evolve(model, id=str(local))
        return attrs.evolve(
            self, model=model, subjects=subjects, motion=motion, output=attrs.evolve(self.output, dir=fix(self.output.dir))
        )


def from_mapping(cls: type[T], data: Any, *, where: str = "recipe") -> T:
    """Build attrs record ``cls`` from plain data, refusing unknown keys with a hint."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table of {cls.__name__} settings, got {type(data).__name__}")
    fields = {f.name: f for f in attrs.fields(cls)}
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"{where}: unknown key {key!r} in [{cls.__name__}].{did_you_mean(key, fields)} "
                f"Valid keys: {format_choices(fields)}."
            )
    kwargs: dict[str, Any] = {}
    hints = _record_types(cls)
    for key, value in data.items():
        sub = hints.get(key)
        if sub is not None and isinstance(sub, tuple):  # a list of records
            if not isinstance(value, list):
                raise ConfigError(f"{where}: {key!r} must be a list of tables ([[{key}]]), got {type(value).__name__}")
            kwargs[key] = [from_mapping(sub[0], v, where=f"{where}: {key}[{i}]") for i, v in enumerate(value)]
        elif sub is not None:
            kwargs[key] = from_mapping(sub, value, where=f"{where}: [{key}]")
        else:
            kwargs[key] = value
    missing = [n for n, f in fields.items() if f.default is attrs.NOTHING and n not in kwargs]
    if missing:
        raise ConfigError(f"{where}: [{cls.__name__}] is missing required key {missing[0]!r}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _record_types(cls: type) -> dict[str, Any]:
    """Fields of ``cls`` that hold nested records (a class) or lists of records (a 1-tuple)."""
    nested = {
        Recipe: {
            "model": ModelConfig,
            "subjects": (SubjectConfig,),
            "motion": MotionConfig,
            "fusion": FusionConfig,
            "sampling": SamplingConfig,
            "output": OutputConfig,
        }
    }
    return nested.get(cls, {})
