"""The requests of the web API as pydantic models, and the limits they and the server enforce.

Every request is checked here before any model work: unknown fields are refused, numbers are
bounded (a window of at most ``MAX_WINDOW`` rows and columns, at most ``MAX_EDITS`` edits), and
an edit names its kind, so ``{"kind": "ablate_head", ...}`` is parsed as an ``AblateHead``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, NonNegativeInt, field_validator

from ..generate import SamplingSettings

MAX_PROMPT_CHARS = 100_000  # a bound checked before tokenizing; the token limit is the real one
# A prompt may also have at most CHARS_PER_TOKEN * max_prompt_tokens characters (English text has
# about 4 per token): the pure-Python BPE (no tiktoken) is quadratic in the length of one word,
# and a prompt that long would be refused for its tokens anyway.
CHARS_PER_TOKEN = 16
MAX_BODY_BYTES = 2**20  # a request's JSON; a longer one is refused (413) before it is read whole
MAX_WINDOW = 256  # rows or columns of a step per request
MAX_EDITS = 16
MIN_TEMPERATURE = 1e-4  # or 0 (greedy): logits / T must stay finite in float32
MAX_SAE_STRENGTH = 1000.0  # |strength| of an sae_feature edit, in the SAE's step's units
MAX_SAE_FEATURES = 20  # features listed per position by /api/sae/features


class _Strict(BaseModel):
    """Unknown fields are refused, so a misspelt one ("layr") is an error, not a default."""

    model_config = ConfigDict(extra="forbid")


Text = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]
StepName = Annotated[str, Field(min_length=1, max_length=100)]


class AblateHead(_Strict):
    """``trace.ablate_head``: head ``head`` of block ``layer`` outputs 0 (or its mean)."""

    kind: Literal["ablate_head"]
    layer: NonNegativeInt
    head: NonNegativeInt
    how: Literal["zero", "mean"] = "zero"


class AblateMlp(_Strict):
    """``trace.ablate_mlp``: the MLP of block ``layer`` adds 0 (or its mean)."""

    kind: Literal["ablate_mlp"]
    layer: NonNegativeInt
    how: Literal["zero", "mean"] = "zero"


class ScaleNeuron(_Strict):
    """``trace.scale_neuron``: MLP neuron ``neuron`` of block ``layer`` times ``factor``."""

    kind: Literal["scale_neuron"]
    layer: NonNegativeInt
    neuron: NonNegativeInt
    factor: FiniteFloat


class Steer(_Strict):
    """``add_vector(layer, steering_vector(model, positive, negative, layer), scale=scale)``."""

    kind: Literal["steer"]
    layer: NonNegativeInt
    positive: Text
    negative: Text
    scale: FiniteFloat = 1.0


class SetValue(_Strict):
    """Run to ``step``, set the number at ``index`` (after the batch index) to ``value``, and
    run on from there (``run_to`` then ``set_to``)."""

    kind: Literal["set_value"]
    step: StepName
    index: list[NonNegativeInt] = Field(min_length=1, max_length=3)
    value: FiniteFloat


class SaeFeature(_Strict):
    """``sae.steer(sae, feature, strength, mode=mode)``: turn an SAE's feature up (``add`` its
    direction times ``strength``) or hold its activation at ``strength`` (``clamp``)."""

    kind: Literal["sae_feature"]
    sae: str = Field(min_length=1, max_length=200)
    feature: NonNegativeInt
    strength: FiniteFloat = Field(ge=-MAX_SAE_STRENGTH, le=MAX_SAE_STRENGTH)
    mode: Literal["add", "clamp"] = "add"


EditSpec = Annotated[
    AblateHead | AblateMlp | ScaleNeuron | Steer | SetValue | SaeFeature,
    Field(discriminator="kind"),
]


class TokenizeRequest(_Strict):
    model: str = Field(max_length=200)
    prompt: Text


class SaeFeaturesRequest(TokenizeRequest):
    """The ``k`` most active features of SAE ``sae`` at each position of the prompt."""

    sae: str = Field(min_length=1, max_length=200)
    k: int = Field(5, ge=1, le=MAX_SAE_FEATURES)


class SaeFeatureRequest(_Strict):
    """The dashboard of feature ``feature`` of SAE ``sae``."""

    model: str = Field(max_length=200)
    sae: str = Field(min_length=1, max_length=200)
    feature: NonNegativeInt


class PromptRequest(TokenizeRequest):
    edits: list[EditSpec] = Field(default_factory=list, max_length=MAX_EDITS)


class SpreadsheetRequest(TokenizeRequest):
    """The workbook that computes ``model`` on ``prompt`` (gpt2lab.spreadsheet); no edits: the
    workbook is the unedited model, and any number in it can be changed there."""


class TraceRequest(PromptRequest):
    """``layer``: the block whose steps the trace keeps (the page's chosen block)."""

    layer: NonNegativeInt = 0


class RunRequest(TraceRequest):
    """``k``: how many of the most likely next tokens to return."""

    k: int = Field(10, ge=1, le=100)


class StepRequest(TraceRequest):
    """A window of step ``step``: rows (positions) and columns (channels, keys or vocabulary)
    from the offsets, ``head`` for per-head steps. ``sort_row`` (vocabulary steps only: logits,
    probabilities) orders the columns by that row's values, largest first unless
    ``descending`` is false; the offsets then count in that order."""

    step: StepName
    head: NonNegativeInt = 0
    row_offset: NonNegativeInt = 0
    row_limit: int = Field(64, ge=1, le=MAX_WINDOW)
    col_offset: NonNegativeInt = 0
    col_limit: int = Field(64, ge=1, le=MAX_WINDOW)
    sort_row: NonNegativeInt | None = None
    descending: bool = True


class ViewRequest(TraceRequest):
    """The data of an interactive view (gpt2lab.viz.views): the model ``map`` (with block
    ``layer``'s values), ``attention`` lines, every ``heads``' pattern, the prompt as ``text``
    coloured by an activation, or the ``saliency`` of its tokens.

    ``text`` colours by (``color``): an MLP ``neuron`` of block ``layer``; the output norm of
    ``head`` of block ``layer``; the residual stream after block ``layer`` along the embedding
    of ``token`` (a ``direction``); or ``feature`` of SAE ``sae`` (at the SAE's own step).
    ``saliency`` scores each token for ``target`` (default: the most likely token) read at
    ``position`` (default: the last), by gradient x input and by ablation."""

    view: Literal["map", "attention", "heads", "text", "saliency"]
    color: Literal["neuron", "head", "direction", "feature"] = "neuron"
    neuron: NonNegativeInt = 0
    head: NonNegativeInt = 0
    token: str | None = Field(None, min_length=1, max_length=100)
    sae: str | None = Field(None, min_length=1, max_length=200)
    feature: NonNegativeInt = 0
    target: str | None = Field(None, min_length=1, max_length=100)
    position: NonNegativeInt | None = None


class LensRequest(TraceRequest):
    k: int = Field(5, ge=1, le=20)
    points: Literal["all", "post"] = "post"
    target: str | None = Field(None, min_length=1, max_length=100)


class Sampling(_Strict):
    """The fields of ``SamplingSettings``."""

    greedy: bool = False
    temperature: FiniteFloat = Field(1.0, ge=0)
    top_k: int | None = Field(None, ge=1)
    top_p: FiniteFloat | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, value: float) -> float:
        if 0 < value < MIN_TEMPERATURE:
            raise ValueError(f"must be 0 (greedy) or at least {MIN_TEMPERATURE}")
        return value

    def settings(self) -> SamplingSettings:
        return SamplingSettings(self.greedy, self.temperature, self.top_k, self.top_p, self.seed)


class SamplingRequest(TraceRequest, Sampling):
    """``top``: how many of the most likely tokens the explanation shows."""

    top: int = Field(10, ge=1, le=100)


class GenerateRequest(PromptRequest, Sampling):
    max_new_tokens: int = Field(20, ge=1)
