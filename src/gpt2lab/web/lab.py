"""The lab behind the web API: the models a server was started with, the slots that bound its
model work, the cache of recent traces, and each endpoint's answer shaped as JSON (the page's
edits become the library's in gpt2lab.web.edits).

``Lab`` does the work of every endpoint in plain functions of a request (run in worker threads,
at most ``max_concurrent`` at a time, by ``Lab.work``); gpt2lab.web.app only routes to them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import threading
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import TypeVar

import anyio
import anyio.to_thread
import torch
from fastapi import HTTPException
from torch import Tensor

from ..config import GPT2Config
from ..errors import GPT2LabError, UsageError, check_index
from ..generate import explain_sampling, prompt_ids
from ..hooks import DERIVED, describe, head_axis, head_index, layer_of, step_axes, step_names
from ..inspection import step_table
from ..lens import logit_lens
from ..model import GPT2
from ..prompts import token_id, tokenizer_of
from ..sae import SAE
from ..saliency import saliency
from ..tokenizer import Tokenizer
from ..trace import Trace
from ..viz import views
from ..viz.web_json import json_numbers, step_json
from .edits import check_finite, library_edits
from .sae_lab import SaeLab, sae_json
from .schemas import (
    CHARS_PER_TOKEN,
    MAX_BODY_BYTES,
    MAX_EDITS,
    MAX_PROMPT_CHARS,
    MAX_WINDOW,
    GenerateRequest,
    LensRequest,
    RunRequest,
    SamplingRequest,
    SetValue,
    StepRequest,
    TokenizeRequest,
    TraceRequest,
    ViewRequest,
)
from .workbook import Workbooks

T = TypeVar("T")


class TraceCache:
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


def kept_steps(layer: int, config: GPT2Config | None = None) -> list[str]:
    """What a trace keeps: the embeddings (hook_pos_embed where the model has one), every
    block's residual stream (the logit lens reads it), every step of block ``layer``, the final
    norm (where ``config`` has one), the logits and probabilities."""
    steps = ["hook_*", "blocks.*.hook_resid_*", f"blocks.{layer}.*"]
    return steps + (["ln_final.*"] if config is None or config.final_norm else [])


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
        {"id": i, "token": tokenizer_of(model).decode([i]), "prob": p, "logit": float(logits[i])}
        for p, i in zip(top.values.tolist(), top.indices.tolist())
    ]


class Lab:
    """The models and limits of one app, and the work its endpoints hand to worker threads."""

    def __init__(
        self,
        models: dict[str, GPT2],
        max_prompt_tokens: int,
        max_new_tokens: int,
        max_concurrent: int,
        max_cache_bytes: int,
        saes: dict[str, SAE] | None = None,
        max_workbook_bytes: int = 50 * 10**6,
    ) -> None:
        self.models = models
        self.sae_lab = SaeLab(models, saes or {}, self.model, self.ids)
        self.workbooks = Workbooks(self.model, self.ids, max_workbook_bytes)
        self.max_prompt_tokens = max_prompt_tokens
        self.max_prompt_chars = min(MAX_PROMPT_CHARS, CHARS_PER_TOKEN * max_prompt_tokens)
        self.max_new_tokens = max_new_tokens
        self.max_concurrent = max_concurrent
        self._limiter: anyio.CapacityLimiter | None = None
        self.traces = TraceCache(max_cache_bytes)
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

    def trace(
        self, req: TraceRequest, layer: int | None = None, *, names: str | None = None
    ) -> tuple[GPT2, Trace]:
        """The model and the trace of (model, prompt, edits), keeping block ``layer``'s steps
        (default ``req.layer``), or the steps ``names`` (a glob such as
        ``blocks.*.attn.hook_pattern``): from the cache, or run now."""
        model = self.model(req.model)
        layer = req.layer if layer is None else layer
        check_index("layer", layer, model.config.n_layer)
        edits_key = json.dumps([spec.model_dump() for spec in req.edits], sort_keys=True)

        def run() -> Trace:
            ids = self.ids(model, req.prompt)
            edits = self.edits(req.model, ids, req.edits)
            trace = model.run_with_cache(ids, names or kept_steps(layer, model.config), edits=edits)
            check_finite(trace.logits, req.edits)
            return trace

        kept = layer if names is None else names
        return model, self.traces.get((req.model, req.prompt, edits_key, kept), run)

    def edits(self, name: str, ids: list[int], specs: list) -> list:
        """The library's edits for a request's specs on model ``name``."""
        model = self.models[name]
        return library_edits(
            model,
            ids,
            specs,
            functools.partial(self.ids, model),
            functools.partial(self.sae_lab.sae, name),
        )

    def partial_tokens(self, name: str) -> dict[int, str]:
        """``partial_tokens`` of a model's tokenizer, worked out once."""
        if name not in self._partial:
            self._partial[name] = partial_tokens(tokenizer_of(self.models[name]))
        return self._partial[name]

    # --- the endpoints' work ------------------------------------------------------------------
    def describe_models(self) -> dict:
        return {
            "models": [
                {
                    "name": name,
                    "config": model.config.to_dict(),
                    "parameters": model.num_parameters(),
                    "steps": [vars(step) for step in step_table(model.config)],
                    "partial_tokens": self.partial_tokens(name),
                    "saes": [
                        sae_json(sae_name, self.sae_lab.saes[sae_name])
                        for sae_name in self.sae_lab.names(name)
                    ],
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
        tok = tokenizer_of(model)
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
                # hook_probs is computed on first use; it has the logits' shape
                step_json(
                    name,
                    list((trace.logits if name in DERIVED else trace[name]).shape),
                    model.config,
                )
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
        config = model.config
        axes = step_axes(req.step, config)[1:]  # without B
        value = full[0]
        heads = head_axis(req.step, config)
        if heads is not None:  # one head's table: [T, D] or [T, S]
            check_index("head", req.head, config.n_head)
            value = value.select(heads - 1, head_index(req.step, req.head, config))
            axes.pop(heads - 1)
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
        column_ids = columns.tolist()
        return {
            "name": req.step,
            "shape": list(full.shape),
            "formula": describe(req.step, config).formula,
            "head": req.head if heads is not None else None,
            "axes": axes,
            "rows": n_rows,
            "columns": n_cols,
            "row_offset": req.row_offset,
            "col_offset": req.col_offset,
            "column_ids": column_ids if axes[-1] == "V" else None,
            "column_tokens": [tokenizer_of(model).decode([i]) for i in column_ids]
            if axes[-1] == "V"
            else None,
            "values": json_numbers(window),
        }

    def lens(self, req: LensRequest) -> dict:
        model, trace = self.trace(req)
        return logit_lens(model, trace, k=req.k, target=req.target, points=req.points).to_dict()

    def view(self, req: ViewRequest) -> dict:
        """The data an interactive view draws, built by gpt2lab.viz.views as in a notebook."""
        if req.view == "map":
            model, trace = self.trace(req)
            return views.model_map(model, trace, layer=req.layer, name=req.model).data
        if req.view == "text":
            return self.colored_text(req).data
        if req.view == "saliency":
            return self.saliency_data(req)
        _, trace = self.trace(req, names="blocks.*.attn.hook_pattern")
        if req.view == "attention":
            # The page's block only: the header's menu chooses another.
            return views.attention_lines(trace, layer=req.layer, layers=[req.layer]).data
        return views.attention_heads(trace).data

    def colored_text(self, req: ViewRequest) -> views.View:
        """The prompt coloured by one activation (``req.color``, see ``ViewRequest``)."""
        if req.color == "feature":
            if req.sae is None:
                raise UsageError("colouring by an SAE feature needs the SAE's name (sae)")
            sae = self.sae_lab.sae(req.model, req.sae)
            check_index("feature", req.feature, sae.cfg.d_sae)
            _, trace = self.trace(req, names=sae.hook_name)
            with torch.no_grad():
                f = sae.encode(trace[sae.hook_name][0].float())  # [T, d_sae]
            label = f"{req.sae} feature {req.feature}"
            return views.colored_text(trace.tokens(0), f[:, req.feature].cpu(), label)
        model, trace = self.trace(req)
        if req.color == "neuron":
            return views.neuron_text(trace, req.layer, req.neuron)
        if req.color == "head":
            return views.head_norm_text(model, trace, req.layer, req.head)
        if req.token is None:
            raise UsageError("colouring by a direction needs a token (token), e.g. ' fast'")
        direction = model.transformer.wte.weight[token_id(model, req.token)]
        name = f"blocks.{req.layer}.hook_resid_post"
        label = f"block {req.layer} resid_post · W_E[{req.token!r}]"
        return views.direction_text(trace, name, direction, label=label)

    def saliency_data(self, req: ViewRequest) -> dict:
        """``saliency`` of each token for ``req.target`` (default: the most likely token) at
        ``req.position`` (default: the last), on the model without the edits: the library's
        saliency reads the plain model."""
        model, trace = self.trace(req.model_copy(update={"edits": []}))
        ids = trace.ids[0].tolist()
        position = len(ids) - 1 if req.position is None else req.position
        check_index("position", position, len(ids))
        # By default, the model's own choice there.
        target: int | str = req.target or int(trace.logits[0, position].argmax())
        result = saliency(model, ids, target, position=position)
        return views.saliency_view(result).data | {"edits_left_out": len(req.edits)}

    def sampling(self, req: SamplingRequest) -> dict:
        model, trace = self.trace(req)
        tok = tokenizer_of(model)
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
                "token": tokenizer_of(model).decode([i]),
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
        edits = self.edits(req.model, ids, req.edits)
        if edits:  # an edit too large gives inf or NaN, and sampling cannot draw from that
            check_finite(model.run_with_hooks(ids, edits)[0, -1], req.edits)
        settings = dataclasses.asdict(req.settings())
        return model.generate_text(
            ids, req.max_new_tokens, **settings, stream=True, edits=edits or None
        )

    async def generation(self, req: GenerateRequest) -> AsyncGenerator[str, None]:
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


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
