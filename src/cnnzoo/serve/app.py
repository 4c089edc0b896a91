"""The Happy House door as a web service: `create_app(model)` -> a FastAPI app.

    GET  /          the page (static files of this package; no build step, no CDN)
    POST /predict   an image (multipart field `file`, or a raw image/* body) -> JSON;
                    ?explain=true adds a Grad-CAM heat map of the decision
    GET  /model     what is served: architecture, input shape, classes, its run's metrics
    GET  /health    liveness and counters
    GET  /openapi.json

Every refused request gets a 4xx status and `{"error": "<one sentence>", "status": N}`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import asynccontextmanager
from importlib import resources
from typing import Literal

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from cnnzoo.inference import faces as face_step
from cnnzoo.serve.model import MAX_BYTES, MAX_PIXELS, RequestError, ServedModel

STATIC = resources.files("cnnzoo.serve") / "static"
RAW_TYPES = ("application/octet-stream", "")  # plus any image/*
ANSWER_TIMEOUT_S = 30.0
BODY_TIMEOUT_S = 30.0  # a request body must arrive within this: a stalled upload must not hold a connection
# Images up to this many pixels are decoded on the event loop (a 640x480 JPEG takes ~2 ms,
# a thread hop about as much as a 64x64 one); larger ones in a worker thread.
INLINE_PIXELS = 640 * 480
# The page loads only its own files; images it shows are data:/blob: URLs, video a camera stream.
PAGE_POLICY = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


# -- response schemas (they make the OpenAPI document useful) ----------------------------------
class ClassScore(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    class_: str = Field(alias="class")
    index: int
    probability: float


class ModelRef(BaseModel):
    name: str
    version: str = Field(description="First 12 hex digits of the model file's SHA-256.")
    architecture: str


class ImageInfo(BaseModel):
    format: str | None
    width: int
    height: int
    bytes: int


class Explanation(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    method: Literal["gradcam", "saliency"]
    layer: str | None = Field(None, description="Grad-CAM's feature map.")
    class_: str = Field(alias="class", description="The class explained: the one the answer reports.")
    index: int
    probability: float
    image: str = Field(description="The model's input with the heat map over it, a PNG data URL.")
    heatmap: str = Field(description="The map alone, 8-bit grey (255 = strongest), a PNG data URL.")


class FaceAnswer(BaseModel):
    box: list[int] = Field(description="x, y, width, height of the crop judged, in the photo's pixels.")
    probabilities: list[float]
    prediction: ClassScore
    p_happy: float | None = Field(None, description="Sigmoid models only: p(class 1) of this face.")
    happy: bool | None = None
    too_small: bool = Field(description="Cut from fewer than 16 pixels across: too small to judge.")
    whole_frame: bool = Field(description="The image was judged whole: it is a face crop itself.")


class Prediction(BaseModel):
    model: ModelRef
    classes: list[str]
    probabilities: list[float] | None = Field(None, description="One per class, in the order of `classes` (with "
                                              "the face step: the deciding face's; absent when no face is found).")
    prediction: ClassScore | None = None
    top: list[ClassScore] | None = Field(None, description="Up to 5 classes, most probable first.")
    faces: list[FaceAnswer] | None = Field(None, description="With the face step: each face found, largest first.")
    faces_found: int | None = Field(None, description="Faces the detector found; those at least half as wide "
                                       "as the largest are judged (up to 16).")
    decided_by: int | None = Field(None, description="The face the decision rests on: the least smiling one.")
    reason: str | None = Field(None, description="With the face step: why the door is open or closed, e.g. "
                                                 "'no face found', 'a face is too small to judge: ...'.")
    detect_ms: float | None = Field(None, description="The face detector's time for this photo.")
    happy: bool | None = Field(None, description="Sigmoid models only: p_happy >= threshold.")
    p_happy: float | None = Field(None, description="Sigmoid models only: p(class 1).")
    door: Literal["open", "closed"] | None = Field(None, description="Sigmoid models only.")
    threshold: float | None = None
    positive_class: str | None = None
    image: ImageInfo
    preview: str | None = Field(None, description="With ?preview=true: the model's input as a PNG data URL.")
    explanation: Explanation | None = Field(None, description="With ?explain=true: what the decision looked at.")
    elapsed_ms: float


class ErrorBody(BaseModel):
    error: str
    status: int


class Health(BaseModel):
    status: Literal["ok"]
    model: str
    version: str
    uptime_s: float
    predictions: int
    refused: int
    failed: int
    queued: int
    batches: int = Field(description="Forward passes run so far (each answers 1 or more requests).")
    largest_batch: int


ERRORS = {code: {"model": ErrorBody, "description": why} for code, why in {
    400: "Empty body, or a multipart body without a `file` upload",
    408: "The body did not arrive in time",
    413: "Body over the byte limit, or an image over the pixel limit",
    415: "Content type other than multipart/form-data, image/* or application/octet-stream, or an image "
         "other than JPEG or PNG",
    422: "Not an image, or a corrupt or truncated one",
    503: "The server is shutting down or the model did not answer in time",
}.items()}

PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "description": "The image, as a multipart upload in the field `file` or as the raw body.",
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary"}}}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class _Counters:
    def __init__(self):
        self._lock = threading.Lock()
        self.predictions = self.refused = self.failed = 0

    def add(self, field: str) -> None:
        with self._lock:
            setattr(self, field, getattr(self, field) + 1)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to pass `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"The body is {int(declared):,} bytes, more than the limit of {limit:,}: "
                                "send a smaller image.")
    chunks, size = [], 0

    async def receive():
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"The body is more than the limit of {limit:,} bytes: send a smaller image.")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(receive(), BODY_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise RequestError(408, f"The body did not arrive within {BODY_TIMEOUT_S:.0f} s ({size:,} bytes came): "
                                "send the image again.") from None
    return b"".join(chunks)


async def _image_bytes(request: Request, limit: int) -> bytes:
    """The uploaded image's bytes from a multipart form or a raw body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    multipart = content_type == "multipart/form-data"
    if not (multipart or content_type in RAW_TYPES or content_type.startswith("image/")):
        raise RequestError(415, f"The content type {content_type} is not an image upload: send "
                                "multipart/form-data with the image in the field 'file', or the raw image "
                                "as image/* or application/octet-stream.")
    body = await _read_body(request, limit)
    if not multipart:
        return body
    if not body:
        raise RequestError(400, "The request has no image: the body (or the uploaded file) is empty.")

    async def replay():  # hand the already-read (size-checked) body to Starlette's parser
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=10)
    except (StarletteHTTPException, ValueError) as error:
        why = getattr(error, "detail", None) or str(error)
        raise RequestError(400, f"The multipart body cannot be parsed ({why}): send the image in the "
                                "field 'file'.") from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise RequestError(400, "The multipart body has no file upload named 'file': send the image in "
                                "the field 'file'.")
    data = await upload.read()
    await form.close()
    return data


def create_app(model_path, *, unsafe: bool = False, threshold: float = 0.5, max_bytes: int = MAX_BYTES,
               max_pixels: int = MAX_PIXELS, max_batch: int = 32, threads: int | None = None,
               faces: str = "auto") -> FastAPI:
    """The door service for a model file or run folder, loaded once with Keras' safe mode.

    `unsafe=True` allows model files that can run code (Lambda layers); `threshold` is
    p(class 1) from which a sigmoid model opens the door; `max_bytes` limits the request
    body and `max_pixels` the image's width x height before it is decoded; `threads` is the
    forward pass's thread count (default: half the cores); `faces` the face step (auto: when the
    run was trained on face crops; on; off). A `.onnx` file is served on onnxruntime, without Keras.
    """
    from cnnzoo import __version__ as cnnzoo_version

    served = ServedModel(model_path, unsafe=unsafe, threshold=threshold, max_bytes=max_bytes,
                         max_pixels=max_pixels, max_batch=max_batch, threads=threads, faces=faces)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        served.close()

    app = FastAPI(
        title="cnnzoo serve: the Happy House door",
        description=f"Serving {served.name} ({served.architecture}, classes: {', '.join(served.class_names)}).",
        version=cnnzoo_version, lifespan=lifespan,
        docs_url=None, redoc_url=None,  # their pages load scripts from a CDN; /openapi.json stays
        # No redirects (e.g. /static -> /static/): Starlette builds their Location from the client's
        # own Host header, which would echo whatever a request claims to be.
        redirect_slashes=False,
    )
    app.state.served = served
    app.state.counters = counters = _Counters()
    _answer_errors_in_json(app, counters)
    _page_and_status_routes(app, served, counters)
    _prediction_route(app, served, counters)
    return app


def _answer_errors_in_json(app: FastAPI, counters: _Counters) -> None:
    """Every refusal as a 4xx `{"error", "status"}`, a bug as a 500 in the same form; security
    headers on every answer."""

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, error: RequestError):
        counters.add("refused")
        return _error(error.status, error.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException):
        message = {404: f"There is nothing at {request.url.path}: see /openapi.json for the API.",
                   405: f"{request.method} is not allowed on {request.url.path}."}.get(error.status_code, str(error.detail))
        return _error(error.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError):
        counters.add("refused")
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"Invalid {where}: {first.get('msg', 'invalid value')}.")

    app.add_middleware(_Headers, counters=counters)


class _Headers:
    """Security headers on every answer, and a bug answered as a 500 in JSON. Plain ASGI:
    Starlette's `@app.middleware("http")` (BaseHTTPMiddleware) ran each request through a task
    group and memory streams, a fifth of the event loop's time per request (profiled)."""

    def __init__(self, app, counters: _Counters):
        self.app = app
        self.counters = counters

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        page = scope["path"] == "/" or scope["path"].startswith("/static/")
        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                if page:
                    headers["Content-Security-Policy"] = PAGE_POLICY
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:  # a bug, not the client's fault: say so in JSON, keep serving
            self.counters.add("failed")
            if started:
                raise
            response = _error(500, "The server failed to answer this request; it keeps serving others.")
            await response(scope, receive, send_with_headers)


def _page_and_status_routes(app: FastAPI, served: ServedModel, counters: _Counters) -> None:
    """/ (the page and its static files), /health and /model."""

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/health", response_model=Health, summary="Liveness and request counters")
    async def health():
        return Health(status="ok", model=served.name, version=served.version,
                      uptime_s=round(time.time() - served.started, 1), predictions=counters.predictions,
                      refused=counters.refused, failed=counters.failed, queued=served.batcher.pending(),
                      batches=served.batcher.batches, largest_batch=served.batcher.largest_batch)

    @app.get("/model", summary="The served model: architecture, input, classes and its run's metrics")
    async def model_info() -> dict:
        return served.info()


def _prediction_route(app: FastAPI, served: ServedModel, counters: _Counters) -> None:
    """POST /predict: check the header, decode (a large image in a worker thread, at most 4 in
    memory at once), then wait for the inference thread's micro-batch."""
    decode_slots = anyio.CapacityLimiter(4)

    @app.post("/predict", response_model=Prediction, response_model_exclude_none=True,
              summary="Is the person happy? Class probabilities of one image",
              responses=ERRORS, openapi_extra=PREDICT_BODY)
    async def predict(request: Request,
                      preview: bool = Query(False, description="Include the model's input as a PNG data URL."),
                      explain: bool = Query(False, description="Include a heat map of what decided the class "
                                                               "(Grad-CAM), as PNG data URLs.")):
        started = time.perf_counter()
        data = await _image_bytes(request, served.max_bytes)
        image = served.inspect(data)  # the header only: refuses pixel bombs before decoding
        explain = explain and served.explains
        if served.face_crop is not None:
            result = await _judge_faces(served, data, decode_slots, explain, preview)
        else:
            if image["width"] * image["height"] <= INLINE_PIXELS:
                array = served.pixels(data)
            else:
                array = await anyio.to_thread.run_sync(served.pixels, data, limiter=decode_slots)
            row = (await _answers(served, [array], explain))[0]
            proba = row[0] if explain else row
            result = served.answer(proba)
            if explain:
                result["explanation"] = served.explanation(array, *row)
            if preview:
                result["preview"] = served.preview(array)
        result["model"] = {"name": served.name, "version": served.version, "architecture": served.architecture}
        result["image"] = image
        result["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 2)
        counters.add("predictions")
        return JSONResponse(result)  # already the schema's shape: FastAPI's re-validation skipped


async def _answers(served: ServedModel, arrays: list, explain: bool = False, explain_class: int | None = None) -> list:
    """The inference thread's rows for `arrays` (one micro-batch when they arrive together)."""
    futures = [asyncio.wrap_future(served.batcher.submit(array, explain=explain, explain_class=explain_class))
               for array in arrays]
    try:
        return await asyncio.wait_for(asyncio.gather(*futures), ANSWER_TIMEOUT_S)
    except TimeoutError:
        raise RequestError(503, f"The model did not answer within {ANSWER_TIMEOUT_S:.0f} s: try again.") from None


async def _judge_faces(served: ServedModel, data: bytes, decode_slots, explain: bool, preview: bool) -> dict:
    """The face step: detect (on a worker thread, at most 4 at once, as large decodes), judge every
    face in one micro-batch, decide over them; the heat map and preview are the deciding face's
    (the map of its crop, for the class and with the probability its answer pooled over the views)."""
    faces, found, detect_ms = await anyio.to_thread.run_sync(served.find_faces, data, limiter=decode_slots)
    rows = face_step.pooled(await _answers(served, face_step.inputs(faces)), faces)
    result, deciding = served.face_answer(faces, rows, found)
    result["detect_ms"] = round(detect_ms, 2)
    if deciding is not None:
        array = faces[deciding].pixels
        if explain:
            index = served.decision(rows[deciding])
            _, heat, _ = (await _answers(served, [array], True, index))[0]
            result["explanation"] = served.explanation(array, rows[deciding], heat, index)
        if preview:
            result["preview"] = served.preview(array)
    return result
