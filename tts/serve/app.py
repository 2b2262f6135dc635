"""The FastAPI app behind `tts serve`: every registered strategy behind OpenAI's chat
completions and responses, and the pass-through (`none`) behind text completions too.

All requests share one generator (one engine), each solved concurrently by `tts.solve` in a
scope of its own (see `scope`), so the engine batches across requests and a client that goes
away has every trace of its request aborted. Limits (`ServeOptions`): at most `max_concurrent`
requests are solved at once and `max_queue` more wait (beyond: 429 with Retry-After); a body
is at most `max_body_bytes` (413) and `max_depth` deep (400, see `limits`); a request asks at
most `max_n` for the strategy's size and `max_choices` choices (400); one that runs past
`max_seconds` is stopped and answered 408. What a client can fix is a 4xx (400, 404, 413), a
backend that failed a 502, anything else a 500; every error is OpenAI's error object.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

import tts
from tts.context import Accountant, Verifier
from tts.errors import BackendError, TTSError
from tts.experiment.build import build_strategy, build_verifier
from tts.interfaces import Generator
from tts.registry import lookup, names
from tts.serve import respond, scope
from tts.serve.limits import read_json
from tts.serve.metrics import Metrics
from tts.serve.schema import (APIError, ChatProblem, ChatRequest, ChatTask, CompletionRequest, Request as Body,
                              ResponsesRequest, ServeOptions, from_validation)
from tts.spec import BackendId
from tts.strategy import Strategy
from tts.types import (DEFAULT_SYSTEM_PROMPT, Budget, GenRequest, Result, Sampling, TextCompletion, TextRequest,
                       Usage)

log = logging.getLogger("tts.serve")
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

PASS_THROUGH = "none"  # the registered strategy that is one plain sample: a drop-in for vLLM's endpoint


@dataclass
class Plan:
    """What one request runs: resolved, validated, ready for `tts.solve` (once per choice)."""

    strategy: Strategy
    verifier: str | None
    budget: Budget | None
    sampling: Sampling
    seed: int
    system: str  # "" adds none
    stops: tuple[str, ...]
    logprobs: int | None  # top-k asked of every generation (None: none)
    choices: int
    chosen: dict[str, Any]  # echoed in the response's `tts` field

    @property
    def name(self) -> str:
        return self.chosen["strategy"]


class RequestGenerator(Generator):
    """The shared generator as one run of one request sees it: the request's stop strings and
    logprobs on every generation that sets none of its own (a step search keeps its delimiter),
    over the backend's view for the run (`Generator.for_run`: a replay starts from its bank's
    start). Closing it closes nothing: the backend is shared."""

    def __init__(self, inner: Generator, stops: tuple[str, ...], logprobs: int | None):
        self.inner, self.stops, self.k = inner, stops, logprobs
        self.model, self.num_params, self.markers = inner.model, inner.num_params, inner.markers
        self.realtime, self.plans_streams = inner.realtime, inner.plans_streams

    @property
    def identity(self) -> BackendId:
        return self.inner.identity

    def _shape(self, req: GenRequest) -> GenRequest:
        changes: dict[str, Any] = {}
        if self.stops and not req.stop:
            changes["stop"] = self.stops
        if self.k is not None and (req.logprobs is None or req.logprobs < self.k):
            changes["logprobs"] = self.k
        return req.replace(**changes) if changes else req

    async def generate(self, req: GenRequest):  # type: ignore[override]
        return await self.inner.generate(self._shape(req))

    def stream(self, req: GenRequest):  # type: ignore[override]
        return self.inner.stream(self._shape(req))

    def stream_plan(self, req: GenRequest):  # type: ignore[override]
        return self.inner.stream_plan(self._shape(req))

    async def count_prompt_tokens(self, req: GenRequest) -> int:
        return await self.inner.count_prompt_tokens(req)


@contextlib.contextmanager
def client_errors() -> Iterator[None]:
    """A failure as the status it deserves: a backend that failed after its retries is a 502
    (worth retrying); any other TTSError is a mistake the client can fix (an unknown question on
    a replay, more samples than a bank holds, thinking markers the model lacks, a strategy
    that cannot run here): a 400 with the message."""
    try:
        yield
    except BackendError as e:
        raise APIError(502, f"the backend failed: {e}", type="backend_error", code="backend_error") from None
    except TTSError as e:
        raise APIError(400, str(e), code="unsupported_request") from None


class Service:
    """The state the endpoints share: the generator, verifiers built so far, the queue."""

    def __init__(self, generator: Generator, opts: ServeOptions):
        self.generator, self.opts = generator, opts
        self.sampling = opts.resolve()  # the request defaults: the options given, else tts.Sampling's
        self.max_tokens = opts.max_tokens  # None: the rest of the context, as vLLM
        self.cap = opts.caps()
        self.strategies = set(names("strategy"))
        build_strategy(opts.strategy, opts.n, opts.params)  # the defaults must be valid
        self.verifiers: dict[str, Verifier] = {}
        self.metrics = Metrics()
        self.slots = asyncio.Semaphore(opts.max_concurrent)
        self.admitted = 0

    # -- choosing what runs --------------------------------------------------------------------
    def plan(self, req: Body, *, choices: int = 1, max_new: int | None = None, logprobs: int | None = None) -> Plan:
        o, t = self.opts, req.tts
        name, where = self._strategy_of(req.model)
        if t.strategy is not None:
            name, where = t.strategy, "tts.strategy"
        try:
            factory = lookup("strategy", name)
        except TTSError as e:
            raise APIError(400, str(e), where) from None
        size = factory.size_param()
        if t.n is not None and size is None:
            raise APIError(400, f"tts.n: strategy '{name}' has no size (it takes no n)", "tts.n")
        params = {**(o.params if name == o.strategy else {}), **t.params}
        try:
            strategy = build_strategy(name, t.n or o.n, params)
        except TTSError as e:
            raise APIError(400, str(e), "tts.params") from None
        n = strategy.config().get(size, 1) if size else 1
        if isinstance(n, int) and n > o.max_n:
            param = f"tts.params.{size}" if size in t.params else "tts.n"
            raise APIError(400, f"{param}: {n} is above this server's limit of {o.max_n} (--max-n)", param)
        if choices > o.max_choices:
            raise APIError(400, f"n: {choices} choices is above this server's limit of {o.max_choices} "
                           "(--max-choices)", "n")
        verifier = t.verifier or (o.verifier if name == o.strategy else None) or factory.default_verifier
        if verifier is not None:
            try:
                lookup("verifier", verifier)
            except TTSError as e:
                raise APIError(400, str(e), "tts.verifier") from None
        caps = dict(o.budget)  # the request's caps were checked by its schema (finite, > 0, known names)
        for k, v in t.budget.items():
            if k in caps and v > caps[k]:
                raise APIError(400, f"tts.budget.{k}: {v} is above this server's cap of {caps[k]}", f"tts.budget.{k}")
            caps[k] = v
        d = self.sampling
        # No temperature asked: the operator's --temperature, else OpenAI's and vLLM's default (1.0)
        # for the pass-through, tts.Sampling's for strategies.
        fallback = o.temperature if o.temperature is not None else 1.0 if name == PASS_THROUGH else d.temperature
        temperature = fallback if req.temperature is None else req.temperature
        sampling_info: dict[str, Any] = {"temperature": temperature}
        if temperature == 0 and isinstance(n, int) and n > 1:
            # Greedy samples are all the same: n of them buy one answer at n times the cost. A
            # strategy of several samples samples at the server's temperature instead, and says so.
            temperature = d.temperature
            sampling_info = {"temperature": temperature, "requested_temperature": 0.0}
        sampling = Sampling(temperature=temperature, top_p=d.top_p if req.top_p is None else req.top_p,
                            max_tokens=max_new or self.max_tokens or 0,  # 0: the rest of the context (`problem`)
                            enable_thinking=d.enable_thinking, thinking_budget=d.thinking_budget)
        system = o.system_prompt if o.system_prompt is not None else "" if name == PASS_THROUGH else DEFAULT_SYSTEM_PROMPT
        chosen = {"strategy": name, "params": respond.clean(strategy.config()), "verifier": verifier,
                  "budget": caps or None, "sampling": sampling_info}
        return Plan(strategy, verifier, Budget(**caps) if caps else None,  # type: ignore[arg-type]
                    sampling, o.seed if req.seed is None else req.seed, system, req.stops(), logprobs, choices, chosen)

    def _strategy_of(self, model: str) -> tuple[str, str]:
        """The strategy a model name asks for: `STRATEGY/MODEL`, else the server's default."""
        served = self.opts.served_model_name
        if model in ("", served):
            return self.opts.strategy, "model"
        head, _, rest = model.partition("/")
        if rest == served and head in self.strategies:
            return head, "model"
        raise APIError(404, f"model '{model}' is not served here; GET /v1/models lists the names "
                       f"('{served}' or STRATEGY/{served})", "model", code="model_not_found")

    async def verifier(self, name: str | None) -> Verifier | None:
        """Built once per name and shared (a reward model loads once)."""
        if name is None:
            return None
        if name not in self.verifiers:
            self.verifiers[name] = build_verifier(name, self.opts.verifier_model, self.generator)
        return self.verifiers[name]

    async def problem(self, chat: list[dict[str, str]], rid: str, plan: Plan) -> ChatProblem:
        """The conversation as a problem; checks it fits the model and sets max_tokens (when the
        request gave none: the rest of the context, as vLLM; a larger one is clipped to it)."""
        question = next(m["content"] for m in reversed(chat) if m["role"] == "user")
        problem = ChatProblem(rid, question, task="chat", chat=chat)
        limit = getattr(self.generator, "max_model_len", None)  # None: not checked
        if limit is not None or not plan.sampling.max_tokens:
            with client_errors():
                tokens = await self.generator.count_prompt_tokens(GenRequest(
                    problem.messages(plan.system), enable_thinking=plan.sampling.enable_thinking))
            room = Sampling().max_tokens if limit is None else limit - tokens
            if room < 1:
                raise APIError(400, f"messages: the prompt is {tokens} tokens; this model takes fewer than {limit} "
                               "(shorten the conversation)", "messages", code="context_length_exceeded")
            plan.sampling.max_tokens = min(plan.sampling.max_tokens or room, room)
        return problem

    # -- solving ---------------------------------------------------------------------------------
    def check_room(self) -> None:
        """429 when `max_concurrent` requests run and `max_queue` more wait."""
        if self.admitted >= self.opts.max_concurrent + self.opts.max_queue:
            raise APIError(429, f"the server is full ({self.opts.max_concurrent} requests running, "
                           f"{self.opts.max_queue} queued); retry shortly", type="rate_limit_error",
                           code="queue_full", headers={"Retry-After": "1"})

    async def slot(self, work: Callable[[], Awaitable[T]]) -> T:
        """`work()` once a solving slot is free, within `max_seconds`; its failures as APIErrors."""
        self.metrics.waiting.inc()
        try:
            await self.slots.acquire()
        finally:
            self.metrics.waiting.dec()
        self.metrics.running.inc()
        try:
            async with asyncio.timeout(self.opts.max_seconds):
                with client_errors():
                    return await work()
        except TimeoutError:
            raise APIError(408, f"the request took longer than this server's limit of {self.opts.max_seconds:g} s "
                           "(--max-seconds) and was stopped; ask for less (max_tokens, tts.n) or set "
                           "tts.budget.wall_seconds for the best answer in time", code="timeout") from None
        finally:
            self.metrics.running.dec()
            self.slots.release()

    async def solve(self, plan: Plan, problem: ChatProblem) -> list[Result]:
        """The request's choices: one run of the strategy each (choice i with seed + i), together."""
        async def work() -> list[Result]:
            verifier = await self.verifier(plan.verifier)
            task = ChatTask(plan.system)
            start = time.perf_counter()
            runs = [tts.solve(problem, plan.strategy, verifier=verifier, budget=plan.budget, sampling=plan.sampling,
                              task=task, seed=plan.seed + i, generator=RequestGenerator(
                                  self.generator.for_run(plan.seed + i), plan.stops, plan.logprobs))
                    for i in range(plan.choices)]
            results = list(await asyncio.gather(*runs))
            for r in results:
                self.metrics.spent(plan.name, r.usage, time.perf_counter() - start)
            return results

        try:
            return await self.slot(work)
        finally:
            close = getattr(plan.strategy, "close", None)  # a strategy may hold a model (DeepPrune's judge)
            if close is not None and inspect.isawaitable(maybe := close()):
                await maybe

    async def complete(self, req: CompletionRequest, plan: Plan) -> list[TextCompletion]:
        """The pass-through of a text completion: each prompt to the backend as it is (n samples
        each), the budget (the server's, or less) checked at its worst case first."""
        async def work() -> list[TextCompletion]:
            acc = Accountant(plan.budget)
            outs = []
            for prompt in req.prompts():
                text_req = TextRequest(prompt, n=req.n, max_tokens=req.max_tokens, temperature=plan.sampling.temperature,
                                       top_p=plan.sampling.top_p, stop=plan.stops, logprobs=req.logprobs, echo=req.echo)
                length = len(prompt) if isinstance(prompt, list) else len(prompt.encode())  # bytes bound tokens
                acc.check(acc.worst_generation(length, req.n, max(req.max_tokens, 1)))
                done = await self.generator.complete(text_req)
                acc.charge_generation(done.usage)
                outs.append(done)
            return outs

        return await self.slot(work)  # (a budget it would exceed is a 400: client_errors)

    async def close(self) -> None:
        for v in self.verifiers.values():
            close = getattr(v, "close", None)
            if close is not None and inspect.isawaitable(maybe := close()):
                await maybe


class ClientGone(Exception):
    pass


@dataclass
class Tally:
    """How a request is counted in `tts_requests_total`: its strategy once known; a stream counts
    itself when it ends (`deferred`)."""

    strategy: str = ""
    deferred: bool = False


def create_app(generator: Generator, opts: ServeOptions) -> FastAPI:
    """The app; `generator` is used as is (its owner closes it)."""
    service = Service(generator, opts)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        loop = asyncio.get_running_loop()
        previous = scope.install(loop)
        try:
            yield
        finally:
            scope.uninstall(loop, previous)
            await service.close()

    app = FastAPI(title="ttscale", lifespan=lifespan)
    app.state.service = service

    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        # Unknown routes and methods in OpenAI's error shape, as every other error.
        what = "no such route" if e.status_code == 404 else str(e.detail)
        return JSONResponse(APIError(e.status_code, f"{what}: {request.method} {request.url.path} (the API: "
                                     "/v1/chat/completions, /v1/completions, /v1/responses, /v1/models)",
                                     code="not_found" if e.status_code == 404 else None).body(),
                            status_code=e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        return JSONResponse(APIError(400, str(e)).body(), status_code=400)

    @app.exception_handler(Exception)
    async def server_error(request: Request, e: Exception) -> JSONResponse:
        log.exception("request failed")
        return JSONResponse(APIError(500, f"internal error: {type(e).__name__}", type="server_error",
                                     code="internal_error").body(), status_code=500)

    def authorize(request: Request) -> None:
        key = opts.api_key.get_secret_value() if opts.api_key is not None else None
        if not key:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(token.encode(), key.encode()):  # constant time
            raise APIError(401, "missing or wrong API key (send `Authorization: Bearer KEY`)",
                           type="authentication_error", code="invalid_api_key")

    async def body(request: Request, model: type[M]) -> M:
        authorize(request)
        data = await read_json(request, opts.max_body_bytes, opts.max_depth)
        try:
            return model.model_validate(data)
        except ValidationError as e:
            raise from_validation(e) from None

    def served(req: Body) -> str:
        return req.model or opts.served_model_name or ""

    @app.get("/health")
    async def health() -> Response:
        engine = getattr(generator, "engine", None)
        if getattr(engine, "errored", False):
            return JSONResponse({"status": "engine failed"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        authorize(request)
        return Response(service.metrics.text(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        authorize(request)
        name = opts.served_model_name
        listed = [name] + [f"{s}/{name}" for s in sorted(service.strategies)]
        return JSONResponse({"object": "list", "data": [
            {"id": n, "object": "model", "created": 0, "owned_by": "ttscale",
             "max_model_len": getattr(generator, "max_model_len", None)} for n in listed]})

    @contextlib.asynccontextmanager
    async def counted(tally: Tally):
        """Count the request under its strategy and final status."""
        status = "200"
        try:
            yield
        except APIError as e:
            status = str(e.status)
            raise
        except ClientGone:
            status = "499"
            raise
        except Exception:
            status = "500"
            raise
        finally:
            if not tally.deferred:
                service.metrics.requests.labels(tally.strategy, status).inc()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        tally = Tally()
        try:
            async with counted(tally):
                req = await body(request, ChatRequest)
                plan = service.plan(req, choices=req.n, max_new=req.max_new, logprobs=req.k)
                tally.strategy = plan.name
                rid = f"chatcmpl-{uuid.uuid4().hex}"
                problem = await service.problem(req.chat(), rid, plan)
                service.check_room()
                created, model = int(time.time()), served(req)

                def answers(results: list[Result]) -> tuple[list[respond.Answer], list[Any]]:
                    got = [respond.answer(r, plan.stops) for r in results]
                    lps = [None if req.k is None else respond.chat_logprobs(a, req.k, plan.name) for a in got]
                    return got, lps

                if req.stream:
                    first = [respond.chunk(rid, created, model, [{"index": i, "delta": {"role": "assistant", "content": ""},
                                                                   "logprobs": None, "finish_reason": None}])
                             for i in range(req.n)]

                    def rest(results: list[Result]) -> list[dict[str, Any]]:
                        got, lps = answers(results)
                        return respond.chat_chunks(rid, created, model, got, lps, plan.chosen, req.tts.return_candidates,
                                                   req.tts.telemetry, req.include_usage)

                    return _sse(service, first, lambda: service.solve(plan, problem), rest, tally)
                results = await _wait(service, lambda: service.solve(plan, problem), request)
                got, lps = answers(results)
                return JSONResponse(respond.chat_completion(rid, created, model, got, lps, plan.chosen,
                                                            req.tts.return_candidates, req.tts.telemetry))
        except ClientGone:
            return Response(status_code=499)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        tally = Tally()
        try:
            async with counted(tally):
                req = await body(request, CompletionRequest)
                plan = service.plan(req, choices=req.n)
                tally.strategy = plan.name
                if plan.name != PASS_THROUGH:
                    raise APIError(400, f"/v1/completions runs only the pass-through strategy '{PASS_THROUGH}' (a text "
                                   f"prompt has no conversation for strategy '{plan.name}' to solve): ask model "
                                   f"'{PASS_THROUGH}/{opts.served_model_name}', or use /v1/chat/completions",
                                   "tts.strategy" if req.tts.strategy else "model", code="strategy_unsupported")
                service.check_room()
                rid, created, model = f"cmpl-{uuid.uuid4().hex}", int(time.time()), served(req)

                def shaped(outs: list[TextCompletion]) -> list[dict[str, Any]]:
                    choices: list[dict[str, Any]] = []
                    for done in outs:
                        choices += respond.text_choices(done, plan.stops, req.logprobs, req.echo, len(choices),
                                                        prompt_only=req.max_tokens == 0)
                    return choices

                def bill(outs: list[TextCompletion]) -> Any:
                    return sum((d.usage for d in outs), Usage())

                if req.stream:
                    def rest(outs: list[TextCompletion]) -> list[dict[str, Any]]:
                        chunks = [{"id": rid, "object": "text_completion", "created": created, "model": model,
                                   "choices": [c]} for c in shaped(outs)]
                        if req.include_usage:
                            chunks.append({"id": rid, "object": "text_completion", "created": created, "model": model,
                                           "choices": [], "usage": respond.text_usage(bill(outs))})
                        return chunks

                    return _sse(service, [], lambda: service.complete(req, plan), rest, tally)
                outs = await _wait(service, lambda: service.complete(req, plan), request)
                return JSONResponse(respond.text_completion(rid, created, model, shaped(outs), bill(outs)))
        except ClientGone:
            return Response(status_code=499)

    @app.post("/v1/responses")
    async def responses(request: Request) -> Response:
        tally = Tally()
        try:
            async with counted(tally):
                req = await body(request, ResponsesRequest)
                plan = service.plan(req, max_new=req.max_output_tokens)
                tally.strategy = plan.name
                rid = f"resp_{uuid.uuid4().hex}"
                problem = await service.problem(req.chat(), rid, plan)
                service.check_room()
                created, model = int(time.time()), served(req)
                if req.stream:
                    start = respond.response(rid, created, model, None, req, None, "in_progress")
                    first = [{"type": "response.created", "response": start},
                             {"type": "response.in_progress", "response": start}]

                    def rest(results: list[Result]) -> list[dict[str, Any]]:
                        return respond.response_events(rid, created, model, respond.answer(results[0], plan.stops),
                                                       req, plan.chosen)

                    return _sse(service, first, lambda: service.solve(plan, problem), rest, tally, events=True)
                results = await _wait(service, lambda: service.solve(plan, problem), request)
                return JSONResponse(respond.response(rid, created, model, respond.answer(results[0], plan.stops),
                                                     req, plan.chosen))
        except ClientGone:
            return Response(status_code=499)

    return app


async def _wait(service: Service, work: Callable[[], Awaitable[T]], request: Request) -> T:
    """The request's result; a client that disconnects first cancels it (and all its traces)."""
    service.admitted += 1
    s = scope.Scope()
    task = s.spawn(work())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientGone()
    finally:
        service.admitted -= 1
        await s.cancel()  # on success, whatever a strategy left running


def _sse(service: Service, first: list[dict[str, Any]], work: Callable[[], Awaitable[T]],
         rest: Callable[[T], list[dict[str, Any]]], tally: Tally, events: bool = False) -> StreamingResponse:
    """A server-sent event stream: `first` at once, keep-alive comments while the work runs, then
    `rest(result)` and `[DONE]` (Responses events: numbered, no [DONE]). A failure arrives as an
    error event. The work starts with the body, so a response never sent starts nothing."""
    tally.deferred = True

    async def stream() -> AsyncIterator[str]:
        status = "499"  # until the end is out, an end means the client went away
        service.admitted += 1
        seq = 0

        def event(obj: dict[str, Any]) -> str:
            nonlocal seq
            if events:
                obj = {**obj, "sequence_number": seq}
                seq += 1
                return f"event: {obj['type']}\ndata: {json.dumps(obj)}\n\n"
            return f"data: {json.dumps(obj)}\n\n"

        s = scope.Scope()
        task = s.spawn(work())
        try:
            for obj in first:
                yield event(obj)
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=service.opts.keepalive)
                if not done:
                    yield ": keep-alive\n\n"
            try:
                out = rest(task.result())
            except Exception as e:  # noqa: BLE001 - a fault mid-stream is an error event, never a cut stream
                if not isinstance(e, APIError):
                    log.exception("stream failed")
                    e = APIError(500, f"internal error: {type(e).__name__}", type="server_error", code="internal_error")
                status = str(e.status)
                err = e.body()["error"]  # Responses: an `error` event with the fields at its top
                yield event({"type": "error", "code": err["code"], "message": err["message"], "param": err["param"]}
                            if events else e.body())
                return
            tail = [event(obj) for obj in out] + ([] if events else ["data: [DONE]\n\n"])
            for i, text in enumerate(tail):
                if i == len(tail) - 1:
                    status = "200"  # a client may hang up as soon as the last event is in: it had it all
                yield text
        finally:
            service.admitted -= 1
            service.metrics.requests.labels(tally.strategy, status).inc()
            await s.cancel()  # a client gone mid-strategy: every trace of its request is aborted

    return _Closing(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache",
                                                                       "X-Accel-Buffering": "no"})


class _Closing(StreamingResponse):
    """A stream whose body is closed the moment the response ends, however it ends. Starlette
    stops iterating a body whose client went away but leaves the generator to the garbage
    collector, so its `finally` (which cancels the request's work) could run much later."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
