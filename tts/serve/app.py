"""The FastAPI app behind `tts serve`: every registered strategy as an OpenAI chat endpoint.

All requests share one generator (one engine), each solved concurrently by `tts.solve` in a
scope of its own (see `scope`), so the engine batches across requests and a client that goes
away has every trace of its request aborted. At most `max_concurrent` requests are solved at
once; `max_queue` more wait; beyond that a request gets 429 with Retry-After.
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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

import tts
from tts.context import Verifier
from tts.errors import TTSError
from tts.experiment.build import build_strategy, build_verifier
from tts.interfaces import Generator
from tts.registry import lookup, names
from tts.serve import respond, scope
from tts.serve.metrics import Metrics
from tts.strategy import Strategy
from tts.serve.schema import APIError, ChatProblem, ChatRequest, ChatTask, ServeOptions, from_validation
from tts.types import DEFAULT_SYSTEM_PROMPT, Budget, GenRequest, Result

log = logging.getLogger("tts.serve")


@dataclass
class Plan:
    """What one request runs: resolved, validated, ready for `tts.solve`."""

    strategy: Strategy
    verifier: str | None
    budget: Budget | None
    sampling: tts.Sampling
    seed: int
    chosen: dict[str, Any]  # echoed in the response's `tts` field


class Service:
    """The state the endpoints share: the generator, verifiers built so far, the queue."""

    def __init__(self, generator: Generator, opts: ServeOptions):
        self.generator, self.opts = generator, opts
        self.sampling = opts.resolve()  # the request defaults: the options given, else tts.Sampling's
        system = DEFAULT_SYSTEM_PROMPT if opts.system_prompt is None else opts.system_prompt
        self.task = ChatTask(system)  # "": the conversation as sent
        self.cap = opts.caps()
        self.strategies = set(names("strategy"))
        build_strategy(opts.strategy, opts.n, opts.params)  # the defaults must be valid
        self.verifiers: dict[str, Verifier] = {}
        self.metrics = Metrics()
        self.slots = asyncio.Semaphore(opts.max_concurrent)
        self.admitted = 0

    # -- choosing what runs --------------------------------------------------------------------
    def plan(self, req: ChatRequest) -> Plan:
        o, t = self.opts, req.tts
        name, field = self._strategy_of(req.model)
        if t.strategy is not None:
            name, field = t.strategy, "tts.strategy"
        try:
            lookup("strategy", name)
        except TTSError as e:
            raise APIError(400, str(e), field) from None
        params = {**(o.params if name == o.strategy else {}), **t.params}
        try:
            strategy = build_strategy(name, t.n or req.n or o.n, params)
        except TTSError as e:
            raise APIError(400, str(e), "tts.params") from None
        verifier = t.verifier or (o.verifier if name == o.strategy else None) or lookup("strategy", name).default_verifier
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
        budget = Budget(**caps) if caps else None  # type: ignore[arg-type]
        d = self.sampling
        sampling = tts.Sampling(
            temperature=d.temperature if req.temperature is None else req.temperature,
            top_p=d.top_p if req.top_p is None else req.top_p,
            max_tokens=req.max_completion_tokens or req.max_tokens or d.max_tokens,
            enable_thinking=d.enable_thinking,
            thinking_budget=d.thinking_budget,
        )
        chosen = {"strategy": name, "params": respond.clean(strategy.config()), "verifier": verifier,
                  "budget": caps or None}
        return Plan(strategy, verifier, budget, sampling, o.seed if req.seed is None else req.seed, chosen)

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

    async def problem(self, req: ChatRequest, rid: str) -> ChatProblem:
        chat = req.chat()
        question = next(m["content"] for m in reversed(chat) if m["role"] == "user")
        problem = ChatProblem(rid, question, task="chat", chat=chat)
        limit = getattr(self.generator, "max_model_len", None)  # None: not checked
        if limit is not None:
            tokens = await self.generator.count_prompt_tokens(GenRequest(problem.messages(self.task.system_prompt)))
            if tokens >= limit:
                raise APIError(400, f"messages: the prompt is {tokens} tokens; this model takes fewer than {limit} "
                               "(shorten the conversation)", "messages", code="context_length_exceeded")
        return problem

    # -- solving ---------------------------------------------------------------------------------
    def check_room(self) -> None:
        """429 when `max_concurrent` requests run and `max_queue` more wait."""
        if self.admitted >= self.opts.max_concurrent + self.opts.max_queue:
            raise APIError(429, f"the server is full ({self.opts.max_concurrent} requests running, "
                           f"{self.opts.max_queue} queued); retry shortly", type="rate_limit_error",
                           code="queue_full", headers={"Retry-After": "1"})

    async def solve(self, plan: Plan, problem: ChatProblem) -> Result:
        self.metrics.waiting.inc()
        try:
            await self.slots.acquire()
        finally:
            self.metrics.waiting.dec()
        self.metrics.running.inc()
        try:
            verifier = await self.verifier(plan.verifier)
            start = time.perf_counter()
            result = await tts.solve(problem, plan.strategy, generator=self.generator, verifier=verifier,
                                     budget=plan.budget, sampling=plan.sampling, task=self.task, seed=plan.seed)
            self.metrics.spent(plan.chosen["strategy"], result.usage, time.perf_counter() - start)
            return result
        finally:
            self.metrics.running.dec()
            self.slots.release()
            close = getattr(plan.strategy, "close", None)  # a strategy may hold a model (DeepPrune's judge)
            if close is not None and inspect.isawaitable(maybe := close()):
                await maybe

    async def close(self) -> None:
        for v in self.verifiers.values():
            close = getattr(v, "close", None)
            if close is not None and inspect.isawaitable(maybe := close()):
                await maybe


class ClientGone(Exception):
    pass


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

    def authorize(request: Request) -> None:
        key = opts.api_key.get_secret_value() if opts.api_key is not None else None
        if not key:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(token.encode(), key.encode()):  # constant time
            raise APIError(401, "missing or wrong API key (send `Authorization: Bearer KEY`)",
                           type="authentication_error", code="invalid_api_key")

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
        served = opts.served_model_name
        listed = [served] + [f"{s}/{served}" for s in sorted(service.strategies)]
        return JSONResponse({"object": "list", "data": [
            {"id": n, "object": "model", "created": 0, "owned_by": "ttscale"} for n in listed]})

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        strategy = ""
        try:
            authorize(request)
            try:
                req = ChatRequest.model_validate(json.loads(await request.body()))
            except json.JSONDecodeError as e:
                raise APIError(400, f"malformed JSON in the request body: {e}") from None
            except ValidationError as e:
                raise from_validation(e) from None
            plan = service.plan(req)
            strategy = plan.chosen["strategy"]
            rid = f"chatcmpl-{uuid.uuid4().hex}"
            problem = await service.problem(req, rid)
            service.check_room()
            if req.stream:
                # The strategy starts with the body, so a response never sent starts nothing.
                return StreamingResponse(_stream(service, rid, req, plan, problem), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            service.admitted += 1
            try:
                result = await _wait(service, plan, problem, request)
            finally:
                service.admitted -= 1
            body = respond.completion(rid, int(time.time()), req.model or opts.served_model_name, result,
                                      plan.chosen, req.tts.return_candidates, req.tts.telemetry)
            service.metrics.requests.labels(strategy, "200").inc()
            return JSONResponse(body)
        except APIError as e:
            service.metrics.requests.labels(strategy, str(e.status)).inc()
            raise
        except ClientGone:
            service.metrics.requests.labels(strategy, "499").inc()
            return Response(status_code=499)

    return app


async def _wait(service: Service, plan: Plan, problem: ChatProblem, request: Request) -> Result:
    """The request's result; a client that disconnects first cancels it (and all its traces)."""
    s = scope.Scope()
    task = s.spawn(service.solve(plan, problem))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                return _result(task)
            if await request.is_disconnected():
                raise ClientGone()
    finally:
        await s.cancel()  # on success, whatever a strategy left running


def _result(task: asyncio.Task) -> Result:
    try:
        return task.result()
    except Exception as e:  # noqa: BLE001 - the backend (or the strategy on it) failed: 502, keep serving
        log.exception("request failed")
        raise APIError(502, f"the backend failed: {type(e).__name__}: {e}", type="backend_error",
                       code="backend_error") from None


async def _stream(service: Service, rid: str, req: ChatRequest, plan: Plan,
                  problem: ChatProblem) -> AsyncIterator[str]:
    """SSE: the role at once, keep-alive comments while the strategy works, then the selected
    answer as content chunks, the candidates (when asked), a final chunk with the usage."""
    created, model = int(time.time()), req.model or service.opts.served_model_name
    event = lambda obj: f"data: {json.dumps(obj)}\n\n"  # noqa: E731
    status = "499"  # until the answer is out, an end means the client went away
    service.admitted += 1
    s = scope.Scope()
    task = s.spawn(service.solve(plan, problem))
    try:
        yield event(respond.chunk(rid, created, model, [{"index": 0, "delta": {"role": "assistant"},
                                                         "finish_reason": None}]))
        while not task.done():
            done, _ = await asyncio.wait({task}, timeout=service.opts.keepalive)
            if not done:
                yield ": keep-alive\n\n"
        try:
            result = _result(task)
        except APIError as e:
            status = str(e.status)
            yield event(e.body())
            return
        trace = respond.selected(result)
        for piece in respond.pieces(respond.full_text(trace)):
            yield event(respond.chunk(rid, created, model, [{"index": 0, "delta": {"content": piece},
                                                             "finish_reason": None}]))
        yield event(respond.chunk(rid, created, model, [{"index": 0, "delta": {},
                                                         "finish_reason": respond.finish_reason(trace)}]))
        if req.tts.return_candidates:
            for c in respond.candidates(result):
                yield event(respond.chunk(rid, created, model, [{"index": c["index"], "tts": c["tts"],
                            "delta": {"role": "assistant", "content": c["message"]["content"]},
                            "finish_reason": c["finish_reason"]}]))
        yield event(respond.chunk(rid, created, model, [], usage=respond.usage(result),
                                  tts=respond.info(result, plan.chosen, req.tts.telemetry)))
        yield "data: [DONE]\n\n"
        status = "200"
    finally:
        service.admitted -= 1
        service.metrics.requests.labels(plan.chosen["strategy"], status).inc()
        await s.cancel()  # a client gone mid-strategy: every trace of its request is aborted
