"""GPT-2 as a notebook in the browser: the JSON API behind ``gpt2lab serve``, and its page.

Each endpoint checks its request and calls the library functions a notebook user calls
(``run_with_cache``, ``run_to``, the edits of gpt2lab.trace, ``logit_lens``, ``explain_sampling``,
``generate_text``), then returns their results as JSON:

    GET  /api/models     the models this server was started with: configs, step tables, limits
    POST /api/tokenize   text -> words -> BPE merges -> tokens -> ids
    POST /api/run        one forward pass: tokens, the steps of a block (shapes, formulas), the
                         most likely next tokens
    POST /api/step       a window (rows x columns) of one step's values: a big table is never
                         sent whole
    POST /api/lens       the logit lens
    POST /api/sampling   one sampling step, stage by stage, and the text with its token appended
    POST /api/edit       the next-token probabilities without and with the edits
    POST /api/generate   the continuation, streamed as Server-Sent Events

A request names its model, prompt and edits (ablate a head or an MLP, scale a neuron, add a
steering vector, set one value). The traces of recent runs are cached per (model, prompt, edits,
block), so the cells of a page fetch their slices without running the model again. Model work
runs in worker threads, at most ``max_concurrent`` at a time, and the event loop only waits on
them: a slow request never holds up the others. A generation holds its slot from its first
token to its last (or until its client goes away).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import anyio
import anyio.to_thread
import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, NonNegativeInt, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from torch import Tensor

from ..errors import GPT2LabError, UsageError, check_index
from ..generate import SamplingSettings, explain_sampling, prompt_ids
from ..hooks import DERIVED, describe, layer_of, step_names
from ..inspect_view import _json_numbers, step_table
from ..lens import logit_lens
from ..model import GPT2
from ..tokenizer import Tokenizer
from ..trace import (
    Edit,
    Trace,
    ablate_head,
    ablate_mlp,
    add_vector,
    scale_neuron,
    set_to,
    steering_vector,
)

STATIC = Path(__file__).parent / "static"
MAX_PROMPT_CHARS = 100_000  # a bound checked before tokenizing; the token limit is the real one
# A prompt may also have at most CHARS_PER_TOKEN * max_prompt_tokens characters (English text has
# about 4 per token): the pure-Python BPE (no tiktoken) is quadratic in the length of one word,
# and a prompt that long would be refused for its tokens anyway.
CHARS_PER_TOKEN = 16
MAX_BODY_BYTES = 2**20  # a request's JSON; a longer one is refused (413) before it is read whole
MAX_WINDOW = 256  # rows or columns of a step per request
MAX_EDITS = 16
MIN_TEMPERATURE = 1e-4  # or 0 (greedy): logits / T must stay finite in float32

T = TypeVar("T")


# --- requests ---------------------------------------------------------------------------------
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


EditSpec = Annotated[
    AblateHead | AblateMlp | ScaleNeuron | Steer | SetValue, Field(discriminator="kind")
]


class TokenizeRequest(_Strict):
    model: str = Field(max_length=200)
    prompt: Text


class PromptRequest(TokenizeRequest):
    edits: list[EditSpec] = Field(default_factory=list, max_length=MAX_EDITS)


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


# --- the server's state -----------------------------------------------------------------------
class _TraceCache:
    """The traces of recent runs, least recently used first, within a memory budget (the newest
    one always stays)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._traces: OrderedDict[tuple, Trace] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, run: Callable[[], Trace]) -> Trace:
        with self._lock:
            if key in self._traces:
                self._traces.move_to_end(key)
                self._trim()  # a trace grows when its hook_probs is first read
                return self._traces[key]
        trace = run()  # outside the lock, so that other requests go on meanwhile
        with self._lock:
            self._traces[key] = trace
            self._trim()
        return trace

    def _trim(self) -> None:
        while len(self._traces) > 1 and self._bytes() > self.max_bytes:
            self._traces.popitem(last=False)

    def _bytes(self) -> int:
        return sum(trace.nbytes for trace in self._traces.values())


def _kept_steps(layer: int) -> list[str]:
    """What a trace keeps: the embeddings, every block's residual stream (the logit lens reads
    it), every step of block ``layer``, the final layer norm, the logits and probabilities."""
    steps = ["hook_embed", "hook_pos_embed", "blocks.*.hook_resid_*", f"blocks.{layer}.*"]
    return [*steps, "ln_final.*", "hook_logits", "hook_probs"]


def partial_tokens(tokenizer: Tokenizer) -> dict[int, str]:
    """The ids whose bytes are not whole UTF-8 characters (they decode to "\ufffd"), with
    their bytes in hex ("e2 80"): the page labels them, since "\ufffd" alone says nothing."""
    partial = {}
    for i in range(tokenizer.vocab_size):
        data = tokenizer.token_bytes(i)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            partial[i] = data.hex(" ")
    return partial


def _column_order(row: Tensor, descending: bool) -> Tensor:
    """The column indices of ``row`` by value (stable, so ties stay in vocabulary order)."""
    return torch.sort(row.float(), descending=descending, stable=True).indices


def _next_probs(trace: Trace) -> Tensor:
    """softmax(logits) at the last position [V]: the next-token distribution."""
    return torch.softmax(trace.logits[0, -1].float(), dim=-1)


def _next_tokens(model: GPT2, trace: Trace, k: int) -> list[dict]:
    """The ``k`` most likely next tokens: id, text, probability, logit."""
    top = torch.topk(_next_probs(trace), k)
    logits = trace.logits[0, -1]
    return [
        {"id": i, "token": model.tokenizer.decode([i]), "prob": p, "logit": float(logits[i])}
        for p, i in zip(top.values.tolist(), top.indices.tolist())
    ]


class _Lab:
    """The models and limits of one app, and the work its endpoints hand to worker threads."""

    def __init__(
        self,
        models: dict[str, GPT2],
        max_prompt_tokens: int,
        max_new_tokens: int,
        max_concurrent: int,
        max_cache_bytes: int,
    ) -> None:
        self.models = models
        self.max_prompt_tokens = max_prompt_tokens
        self.max_prompt_chars = min(MAX_PROMPT_CHARS, CHARS_PER_TOKEN * max_prompt_tokens)
        self.max_new_tokens = max_new_tokens
        self.max_concurrent = max_concurrent
        self._limiter: anyio.CapacityLimiter | None = None
        self.traces = _TraceCache(max_cache_bytes)
        self._partial: dict[str, dict[int, str]] = {}

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:  # made in the event loop: older anyio needs a running one
            self._limiter = anyio.CapacityLimiter(self.max_concurrent)
        return self._limiter

    async def work(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a worker thread, once one of the ``max_concurrent`` slots is free.
        A request waiting for a slot holds no thread, so the others (and the page's files) are
        served meanwhile."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of the ``max_concurrent`` slots, held until the block ends: for work in several
        steps, such as a generation streamed token by token. It may be released by another
        task than the one that took it (a stream is read by the response's task)."""
        borrower = object()
        await self.limiter.acquire_on_behalf_of(borrower)
        try:
            yield
        finally:
            self.limiter.release_on_behalf_of(borrower)

    def model(self, name: str) -> GPT2:
        if name not in self.models:
            raise HTTPException(
                404,
                f"unknown model {name!r}: this server was started with "
                f"{', '.join(map(repr, self.models))} and serves nothing else "
                "(gpt2lab serve --model NAME)",
            )
        return self.models[name]

    def ids(self, model: GPT2, text: str) -> list[int]:
        if len(text) > self.max_prompt_chars:
            raise UsageError(
                f"the prompt has {len(text)} characters; this server takes at most "
                f"{self.max_prompt_chars} ({CHARS_PER_TOKEN} per token of its "
                f"{self.max_prompt_tokens}-token limit)"
            )
        ids = prompt_ids(model, text)
        if len(ids) > self.max_prompt_tokens:
            raise UsageError(
                f"the prompt has {len(ids)} tokens; this server takes at most "
                f"{self.max_prompt_tokens}"
            )
        return ids

    def edits(self, model: GPT2, ids: list[int], specs: list[EditSpec]) -> list[Edit]:
        """The library's edits for the specs, in order (a value is set after the edits before
        it have run). Layers, heads and neurons are checked by the edits themselves."""
        edits: list[Edit] = []
        for spec in specs:
            if isinstance(spec, AblateHead):
                edits.append(ablate_head(spec.layer, spec.head, spec.how))
            elif isinstance(spec, AblateMlp):
                edits.append(ablate_mlp(spec.layer, spec.how))
            elif isinstance(spec, ScaleNeuron):
                edits.append(scale_neuron(spec.layer, spec.neuron, spec.factor))
            elif isinstance(spec, Steer):
                for text in (spec.positive, spec.negative):
                    self.ids(model, text)  # the prompt's length limit holds for these too
                vector = steering_vector(model, spec.positive, spec.negative, spec.layer)
                edits.append(add_vector(spec.layer, vector, scale=spec.scale))
            else:
                edits.append(self._set_value(model, ids, spec, list(edits)))
        return edits

    @staticmethod
    def _set_value(model: GPT2, ids: list[int], spec: SetValue, before: list[Edit]) -> Edit:
        paused = model.run_to(ids, spec.step, edits=before)
        value = paused.value
        if len(spec.index) != value.dim() - 1:
            raise UsageError(
                f"{paused.name} has shape {list(value.shape)}: give {value.dim() - 1} indices "
                "(every dimension after the batch)"
            )
        for dim, i in enumerate(spec.index, start=1):
            check_index(f"index {dim - 1} of {paused.name}", i, value.shape[dim])
        largest = torch.finfo(value.dtype).max
        if not abs(spec.value) <= largest:
            raise UsageError(
                f"value {spec.value:g} does not fit in {paused.name}, a {value.dtype} tensor "
                f"(largest {largest:g})"
            )
        value[(0, *spec.index)] = spec.value
        return set_to(paused.name, value)

    def trace(self, req: TraceRequest, layer: int | None = None) -> tuple[GPT2, Trace]:
        """The model and the trace of (model, prompt, edits), keeping block ``layer``'s steps
        (default ``req.layer``): from the cache, or run now."""
        model = self.model(req.model)
        layer = req.layer if layer is None else layer
        check_index("layer", layer, model.config.n_layer)
        edits_key = json.dumps([spec.model_dump() for spec in req.edits], sort_keys=True)

        def run() -> Trace:
            ids = self.ids(model, req.prompt)
            edits = self.edits(model, ids, req.edits)
            trace = model.run_with_cache(ids, _kept_steps(layer), edits=edits)
            _check_finite(trace.logits, req.edits)
            return trace

        return model, self.traces.get((req.model, req.prompt, edits_key, layer), run)

    def partial_tokens(self, name: str) -> dict[int, str]:
        """``partial_tokens`` of a model's tokenizer, worked out once."""
        if name not in self._partial:
            self._partial[name] = partial_tokens(self.models[name].tokenizer)
        return self._partial[name]

    # --- the endpoints' work ------------------------------------------------------------------
    def describe_models(self) -> dict:
        return {
            "models": [
                {
                    "name": name,
                    "config": vars(model.config),
                    "parameters": model.num_parameters(),
                    "steps": [vars(step) for step in step_table(model.config)],
                    "partial_tokens": self.partial_tokens(name),
                }
                for name, model in self.models.items()
            ],
            "limits": {
                "max_prompt_tokens": self.max_prompt_tokens,
                "max_prompt_chars": self.max_prompt_chars,
                "max_new_tokens": self.max_new_tokens,
                "max_window": MAX_WINDOW,
                "max_edits": MAX_EDITS,
                "max_concurrent": self.max_concurrent,
                "max_body_bytes": MAX_BODY_BYTES,
            },
        }

    def tokenize(self, req: TokenizeRequest) -> dict:
        model = self.model(req.model)
        ids = self.ids(model, req.prompt)
        tok = model.tokenizer
        return {
            "ids": ids,
            "tokens": [tok.id_to_token(i) for i in ids],
            "texts": [tok.decode([i]) for i in ids],
            "words": [word.to_dict() for word in tok.trace(req.prompt, allowed_special="all")],
        }

    def run(self, req: RunRequest) -> dict:
        model, trace = self.trace(req)
        shown = [n for n in step_names(model.config) if layer_of(n) in (None, req.layer)]
        return {
            "ids": trace.ids[0].tolist(),
            "tokens": trace.tokens(),
            "layer": req.layer,
            "steps": [
                {
                    "name": name,
                    # hook_probs is computed on first use; it has the logits' shape
                    "shape": list((trace.logits if name in DERIVED else trace[name]).shape),
                    "axes": describe(name).shape,
                    "formula": describe(name).formula,
                }
                for name in shown
            ],
            "next": _next_tokens(model, trace, req.k),
        }

    def step(self, req: StepRequest) -> dict:
        model = self.model(req.model)
        check_index("layer", req.layer, model.config.n_layer)  # even if the step names its block
        block = layer_of(req.step) if req.step in step_names(model.config) else None
        model, trace = self.trace(req, block)
        full = trace[req.step]  # the library's message for a misspelt name or a pattern
        axes = describe(req.step).shape.strip("[]").split(", ")[1:]  # without B
        value = full[0]
        if value.dim() == 3:  # [H, T, D or S]
            check_index("head", req.head, value.shape[0])
            value, axes = value[req.head], axes[1:]
        n_rows, n_cols = value.shape
        if req.row_offset >= n_rows or req.col_offset >= n_cols:
            raise UsageError(
                f"{req.step} has {n_rows} rows and {n_cols} columns; got row_offset "
                f"{req.row_offset}, col_offset {req.col_offset}"
            )
        columns = torch.arange(req.col_offset, min(n_cols, req.col_offset + req.col_limit))
        if req.sort_row is not None:
            if axes[-1] != "V":
                raise UsageError(
                    f"sort_row orders the vocabulary of the logits or probabilities; {req.step} "
                    "has no vocabulary axis"
                )
            check_index("sort_row", req.sort_row, n_rows)
            columns = _column_order(value[req.sort_row], req.descending)[columns]
        window = value[req.row_offset : req.row_offset + req.row_limit][:, columns]
        columns = columns.tolist()
        return {
            "name": req.step,
            "shape": list(full.shape),
            "formula": describe(req.step).formula,
            "head": req.head if full.dim() == 4 else None,
            "axes": axes,
            "rows": n_rows,
            "columns": n_cols,
            "row_offset": req.row_offset,
            "col_offset": req.col_offset,
            "column_ids": columns if axes[-1] == "V" else None,
            "column_tokens": [model.tokenizer.decode([i]) for i in columns]
            if axes[-1] == "V"
            else None,
            "values": _json_numbers(window),
        }

    def lens(self, req: LensRequest) -> dict:
        model, trace = self.trace(req)
        return logit_lens(model, trace, k=req.k, target=req.target, points=req.points).to_dict()

    def sampling(self, req: SamplingRequest) -> dict:
        model, trace = self.trace(req)
        tok = model.tokenizer
        ex = explain_sampling(trace.logits[0, -1], req.settings(), top=req.top, tokenizer=tok)
        ids = [*trace.ids[0].tolist(), ex.chosen]
        return ex.to_dict() | {
            "chosen_token": tok.decode([ex.chosen]),
            "ids": ids,
            "text": tok.decode(ids),
        }

    def edit(self, req: RunRequest) -> dict:
        """The ``k`` most likely next tokens without the edits and with them (the union of
        both), each with both probabilities, the most likely first."""
        model, before = self.trace(req.model_copy(update={"edits": []}))
        _, after = self.trace(req)
        old, new = _next_probs(before), _next_probs(after)
        top = torch.cat([torch.topk(old, req.k).indices, torch.topk(new, req.k).indices])
        rows = [
            {
                "id": i,
                "token": model.tokenizer.decode([i]),
                "before": float(old[i]),
                "after": float(new[i]),
            }
            for i in dict.fromkeys(top.tolist())
        ]
        rows.sort(key=lambda row: -max(row["before"], row["after"]))
        return {"rows": rows}

    def start_generation(self, req: GenerateRequest) -> Iterator[str]:
        model = self.model(req.model)
        ids = self.ids(model, req.prompt)
        if req.max_new_tokens > self.max_new_tokens:
            raise UsageError(
                f"max_new_tokens is {req.max_new_tokens}; this server generates at most "
                f"{self.max_new_tokens} tokens per request"
            )
        if any(isinstance(spec, SetValue) for spec in req.edits):
            raise UsageError(
                "a set_value edit holds one number of this prompt's forward pass; generation "
                "computes one new position at a time, so remove it to generate"
            )
        edits = self.edits(model, ids, req.edits)
        if edits:  # an edit too large gives inf or NaN, and sampling cannot draw from that
            _check_finite(model.run_with_hooks(ids, edits)[0, -1], req.edits)
        settings = dataclasses.asdict(req.settings())
        return model.generate_text(
            ids, req.max_new_tokens, **settings, stream=True, edits=edits or None
        )

    async def generation(self, req: GenerateRequest) -> AsyncIterator[str]:
        """The events of a generation: one per token, then "done" (or "error"). The whole
        generation holds one slot. A bad request raises before the first event."""
        async with self.slot():
            pieces = await anyio.to_thread.run_sync(self.start_generation, req)
            try:
                while (piece := await anyio.to_thread.run_sync(next, pieces, None)) is not None:
                    yield _sse("token", {"text": piece})
            except GPT2LabError as error:
                yield _sse("error", {"detail": str(error)})
                return
            except Exception as error:  # the response has begun: say so rather than cut it off
                yield _sse("error", {"detail": f"generation failed: {error}"})
                return
            yield _sse("done", {})


def _check_finite(logits: Tensor, specs: list[EditSpec]) -> None:
    if not bool(torch.isfinite(logits).all()):
        raise UsageError(
            "the logits are inf or NaN"
            + (": an edit's factor, scale or value is too large" if specs else "")
        )


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


class _BodyLimit:
    """Refuses (413) a request body over ``max_bytes``: by its Content-Length before reading it,
    or, for a chunked one, as soon as the bytes read pass the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        read = 0

        async def counted() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self.max_bytes:
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, counted, send)

    def _message(self) -> str:
        return f"the request body is over {self.max_bytes} bytes, this server's limit"

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse({"detail": self._message()}, status_code=413)
        await response(scope, receive, send)


# --- the app ----------------------------------------------------------------------------------
def create_app(
    models: dict[str, GPT2],
    *,
    max_prompt_tokens: int = 1024,
    max_new_tokens: int = 256,
    max_concurrent: int = 2,
    max_cache_bytes: int = 2 * 2**30,
) -> FastAPI:
    """The web app for ``models`` (name -> model): the page at / and the JSON API at /api.

    Only these models are served; a request names one of them, never a path. Prompts are capped
    at ``max_prompt_tokens`` tokens (and the model's context) and ``CHARS_PER_TOKEN`` times as
    many characters, request bodies at ``MAX_BODY_BYTES``, generation at ``max_new_tokens`` per
    request, model work (a whole generation included) at ``max_concurrent`` at once, and cached
    traces at ``max_cache_bytes`` (the newest is always kept).
    """
    if not models:
        raise UsageError("create_app needs at least one model")
    for what, value in {
        "max_prompt_tokens": max_prompt_tokens,
        "max_new_tokens": max_new_tokens,
        "max_concurrent": max_concurrent,
        "max_cache_bytes": max_cache_bytes,
    }.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{what} must be a positive integer, got {value!r}")
    lab = _Lab(dict(models), max_prompt_tokens, max_new_tokens, max_concurrent, max_cache_bytes)
    # No Swagger or ReDoc pages: they load their scripts from a CDN. /openapi.json stays.
    app = FastAPI(title="gpt2lab", summary="GPT-2 as a notebook", docs_url=None, redoc_url=None)
    app.state.lab = lab

    @app.exception_handler(GPT2LabError)
    async def bad_request(_request: Request, error: GPT2LabError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        # One readable line per problem; the offending input is left out (it may be huge, or
        # NaN, which JSON cannot hold).
        problems = [
            f"{'.'.join(str(part) for part in e['loc'][1:]) or 'body'}: {e['msg']}"
            for e in error.errors()
        ]
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/models")
    async def list_models() -> dict:
        # In a thread (the partial tokens take a moment the first time) but in no model slot.
        return await anyio.to_thread.run_sync(lab.describe_models)

    @app.post("/api/tokenize")
    async def tokenize(req: TokenizeRequest) -> dict:
        return await lab.work(lab.tokenize, req)

    @app.post("/api/run")
    async def run(req: RunRequest) -> dict:
        return await lab.work(lab.run, req)

    @app.post("/api/step")
    async def step(req: StepRequest) -> dict:
        return await lab.work(lab.step, req)

    @app.post("/api/lens")
    async def lens(req: LensRequest) -> dict:
        return await lab.work(lab.lens, req)

    @app.post("/api/sampling")
    async def sampling(req: SamplingRequest) -> dict:
        return await lab.work(lab.sampling, req)

    @app.post("/api/edit")
    async def edit(req: RunRequest) -> dict:
        return await lab.work(lab.edit, req)

    @app.post("/api/generate")
    async def generate(req: GenerateRequest) -> StreamingResponse:
        stream = lab.generation(req)
        try:  # bad requests fail here, with a 4xx
            first = await anext(stream)
        except BaseException:
            await stream.aclose()
            raise

        async def events() -> AsyncIterator[str]:
            # If the client goes away, the response stops reading; ``stream`` is then closed
            # when it is dropped (asyncio finalizes async generators), freeing its slot.
            yield first
            async for event in stream:
                yield event

        headers = {"Cache-Control": "no-cache"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(_BodyLimit, max_bytes=MAX_BODY_BYTES)
    return app
