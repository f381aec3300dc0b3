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
    POST /api/view       the data of an interactive view (model map, attention lines, every
                         head, text coloured by an activation, saliency), drawn by the views'
                         JavaScript, served at /views
    POST /api/generate   the continuation, streamed as Server-Sent Events
    POST /api/sae/features  an SAE's most active features at each position of the prompt
    POST /api/sae/feature   one SAE feature's dashboard (the library's self-contained HTML)
    POST /api/spreadsheet/plan  the prompt's workbook (gpt2lab.spreadsheet): its sheets and size
    POST /api/spreadsheet       that workbook, as an .xlsx download

A request names its model, prompt and edits (ablate a head or an MLP, scale a neuron, add a
steering vector, set one value). The traces of recent runs are cached per (model, prompt, edits,
block), so the cells of a page fetch their slices without running the model again. Model work
runs in worker threads, at most ``max_concurrent`` at a time, and the event loop only waits on
them: a slow request never holds up the others. A generation holds its slot from its first
token to its last (or until its client goes away).

The request models and their limits are in gpt2lab.web.schemas, the work behind each endpoint in
gpt2lab.web.lab (``Lab``), which hands the SAE endpoints to gpt2lab.web.sae_lab and the
workbook's to gpt2lab.web.workbook; this module only routes requests to them. Their public
names stay importable from here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import GPT2LabError, UsageError
from ..model import GPT2
from ..sae import SAE
from .lab import Lab, partial_tokens
from .schemas import (
    CHARS_PER_TOKEN,
    MAX_BODY_BYTES,
    MAX_EDITS,
    MAX_PROMPT_CHARS,
    MAX_WINDOW,
    MIN_TEMPERATURE,
    AblateHead,
    AblateMlp,
    EditSpec,
    GenerateRequest,
    LensRequest,
    PromptRequest,
    RunRequest,
    SaeFeatureRequest,
    SaeFeaturesRequest,
    Sampling,
    SamplingRequest,
    ScaleNeuron,
    SetValue,
    SpreadsheetRequest,
    Steer,
    StepName,
    StepRequest,
    Text,
    TokenizeRequest,
    TraceRequest,
    ViewRequest,
)

__all__ = [
    "CHARS_PER_TOKEN",
    "MAX_BODY_BYTES",
    "MAX_EDITS",
    "MAX_PROMPT_CHARS",
    "MAX_WINDOW",
    "MIN_TEMPERATURE",
    "STATIC",
    "AblateHead",
    "AblateMlp",
    "EditSpec",
    "GenerateRequest",
    "LensRequest",
    "PromptRequest",
    "RunRequest",
    "Sampling",
    "SamplingRequest",
    "ScaleNeuron",
    "SetValue",
    "SpreadsheetRequest",
    "Steer",
    "StepName",
    "StepRequest",
    "Text",
    "TokenizeRequest",
    "TraceRequest",
    "ViewRequest",
    "create_app",
    "partial_tokens",
]

STATIC = Path(__file__).parent / "static"
VIEWS = Path(__file__).parents[1] / "viz" / "views"  # the views' JavaScript, shared with Jupyter
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


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
    saes: dict[str, SAE] | None = None,
    max_workbook_bytes: int = 50 * 10**6,
) -> FastAPI:
    """The web app for ``models`` (name -> model): the page at / and the JSON API at /api.

    Only these models are served; a request names one of them, never a path. Prompts are capped
    at ``max_prompt_tokens`` tokens (and the model's context) and ``CHARS_PER_TOKEN`` times as
    many characters, request bodies at ``MAX_BODY_BYTES``, generation at ``max_new_tokens`` per
    request, model work (a whole generation included) at ``max_concurrent`` at once, and cached
    traces at ``max_cache_bytes`` (the newest is always kept), and a downloaded workbook
    (/api/spreadsheet) at ``max_workbook_bytes`` as planned. ``saes`` (name -> SAE) are the
    sparse autoencoders served, each for the models whose step it reads.
    """
    if not models:
        raise UsageError("create_app needs at least one model")
    for what, value in {
        "max_prompt_tokens": max_prompt_tokens,
        "max_new_tokens": max_new_tokens,
        "max_concurrent": max_concurrent,
        "max_cache_bytes": max_cache_bytes,
        "max_workbook_bytes": max_workbook_bytes,
    }.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{what} must be a positive integer, got {value!r}")
    lab = Lab(
        dict(models),
        max_prompt_tokens,
        max_new_tokens,
        max_concurrent,
        max_cache_bytes,
        saes=saes,
        max_workbook_bytes=max_workbook_bytes,
    )
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

    @app.post("/api/view")
    async def view(req: ViewRequest) -> dict:
        return await lab.work(lab.view, req)

    @app.post("/api/sampling")
    async def sampling(req: SamplingRequest) -> dict:
        return await lab.work(lab.sampling, req)

    @app.post("/api/edit")
    async def edit(req: RunRequest) -> dict:
        return await lab.work(lab.edit, req)

    @app.post("/api/sae/features")
    async def sae_features(req: SaeFeaturesRequest) -> dict:
        return await lab.work(lab.sae_lab.features, req)

    @app.post("/api/sae/feature")
    async def sae_feature(req: SaeFeatureRequest) -> dict:
        return await lab.work(lab.sae_lab.feature, req)

    @app.post("/api/spreadsheet/plan")
    async def spreadsheet_plan(req: SpreadsheetRequest) -> dict:
        return await lab.work(lab.workbooks.plan_json, req)

    @app.post("/api/spreadsheet")
    async def spreadsheet(req: SpreadsheetRequest) -> Response:
        data = await lab.work(lab.workbooks.write, req)
        name = "".join(c if c.isalnum() else "-" for c in req.model)
        headers = {"Content-Disposition": f'attachment; filename="gpt2lab-{name}.xlsx"'}
        return Response(data, media_type=XLSX, headers=headers)

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
    app.mount("/views", StaticFiles(directory=VIEWS), name="views")
    app.add_middleware(_BodyLimit, max_bytes=MAX_BODY_BYTES)
    return app
