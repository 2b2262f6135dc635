"""The strategy role: a test-time scaling method turns compute, spent through a
`tts.context.Context`, into an answer. Strategies are plugins (kind "strategy"): each module in
`strategies/` declares one class and its entry point."""

from __future__ import annotations

import inspect
import typing
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, create_model

from tts.context import Context
from tts.errors import ParameterError
from tts.types import Problem, Result


class Strategy(ABC):
    """A test-time scaling method: turns compute (through `ctx`) into an answer.

    A strategy declares itself with class attributes, so the CLI, the sweep and the run spec
    never list strategy names:

    - `size`: the constructor parameter that `-n` / a sweep's `n` sets (one name, `n`,
      across strategies); `aliases` maps another accepted name (a paper's) to a parameter.
    - `subsamplable`: whether it only selects among independent samples, so a sweep may draw
      its runs for several n from one recorded bank (a property where it depends on the
      configuration, as for offline vs online DeepConf).
    - `default_verifier`: the verifier it gets when none is named (None: it needs none).
    - `logprobs`: the top-k logprobs it asks of the generator (None: none).

    Its typed parameter model (`params_model()`) is derived from the constructor's signature:
    type hints and defaults give validation, the sweep schema and the configuration hashed
    into the run spec (`config()`: the constructor arguments, defaults filled in).
    """

    name: str = ""
    size: ClassVar[str] = "n"
    aliases: ClassVar[dict[str, str]] = {}
    subsamplable: bool = False
    default_verifier: ClassVar[str | None] = None
    logprobs: int | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> "Strategy":
        self = super().__new__(cls)
        try:  # remember the constructor arguments: they are the configuration (see config())
            bound = inspect.Signature(list(cls._signature().values())).bind(*args, **kwargs)
            bound.apply_defaults()
        except TypeError:  # unpickling (no arguments) or a bad call, which __init__ reports
            return self
        self._params = dict(bound.arguments)
        cls.validate(self._params)
        return self

    @classmethod
    def validate(cls, params: dict[str, Any]) -> BaseModel:
        """`params` checked against the constructor's types and constraints (`Count`, ranges,
        literals): the one validator of every strategy parameter, from the CLI, a sweep, a
        request to `tts serve` or Python; a bad one is a ParameterError naming the strategy and
        the parameter."""
        try:
            return cls.params_model().model_validate(params)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            got = f" (got {err['input']!r:.60})" if "input" in err and not isinstance(err["input"], dict) else ""
            raise ParameterError(f"strategy '{cls.name}': {where + ': ' if where else ''}"
                           f"{err['msg'].removeprefix('Value error, ')}{got}") from None

    @abstractmethod
    async def solve(self, problem: Problem, ctx: "Context") -> Result:
        """Solve one problem. Usage, grading and config hash are filled in by the runner."""

    def config(self) -> dict:
        """The parameters that identify this strategy's configuration (for config hashes): the
        constructor arguments with defaults filled in, normalised by the parameter model."""
        params = getattr(self, "_params", None)
        if params is None:
            return {k: v for k, v in vars(self).items() if not k.startswith("_")}
        try:
            return type(self).params_model().model_validate(params).model_dump(mode="json")
        except Exception:  # an object argument (DeepPrune's judge): hashed by its repr
            return dict(params)

    @classmethod
    def _signature(cls) -> dict[str, inspect.Parameter]:
        """The constructor's parameters. A constructor that passes `*args, **kwargs` on to its
        parent's (`def __init__(self, *args, extra: bool = False, **kwargs)`) takes the parent's
        parameters too, first: a subclass adds parameters without repeating the parent's."""
        ps = list(inspect.signature(cls.__init__).parameters.values())[1:]
        own = {p.name: p for p in ps if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind == p.VAR_KEYWORD for p in ps):
            return own
        parent = next(b for b in cls.__mro__[1:] if "__init__" in vars(b))
        inherited = parent._signature() if issubclass(parent, Strategy) else {}
        return {**inherited, **{k: p.replace(kind=p.KEYWORD_ONLY) for k, p in own.items()}}

    @classmethod
    def _hints(cls) -> dict[str, Any]:
        """The constructor parameters' annotations, constraints included (a parent's as well)."""
        hints: dict[str, Any] = {}
        for k in reversed(cls.__mro__):
            if isinstance(k, type) and issubclass(k, Strategy) and "__init__" in vars(k):
                hints.update(typing.get_type_hints(k.__init__, include_extras=True))
        return hints

    @classmethod
    def size_param(cls) -> str | None:
        """The parameter `n` sets: `size`, or a parameter that `aliases` names as its alias."""
        sig = cls._signature()
        if cls.size in sig:
            return cls.size
        return next((a for a, target in cls.aliases.items() if target == cls.size and a in sig), None)

    @classmethod
    def params_model(cls) -> type[BaseModel]:
        """The pydantic model of the constructor's parameters (cached per class)."""
        cached = cls.__dict__.get("_params_model")
        if cached is not None:
            return cached
        try:
            hints = cls._hints()
        except Exception:  # an annotation that cannot be resolved: validate nothing for it
            hints = {}
        sig = cls._signature()
        # Accept an alias for a parameter (either way round, so a rename keeps the old name).
        alt = {t: a for a, t in cls.aliases.items() if t in sig}
        alt.update({a: t for a, t in cls.aliases.items() if a in sig and t not in sig})
        fields: dict[str, Any] = {}
        for name, p in sig.items():
            default = ... if p.default is p.empty else p.default
            extra = {"validation_alias": AliasChoices(name, alt[name])} if name in alt else {}
            fields[name] = (hints.get(name, Any), Field(default, **extra))
        model = create_model(f"{cls.__name__}Params", __config__=ConfigDict(extra="forbid", populate_by_name=True,
                                                 arbitrary_types_allowed=True),
                             **fields)
        cls._params_model = model
        return model
