"""API errors: a status, a machine-readable code and one sentence, never a stack trace.

A sentence may name the input it refuses, but only as ``quoted``: a short, escaped prefix. An
error that copied its input would answer a 50 MB address with a 50 MB body, and would carry
whatever bytes the client chose into logs, terminals and the console.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.errors import KafkaError
from clickhouse_connect.driver.exceptions import ClickHouseError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

QUOTE_LIMIT = 60
"""Characters of an input an error message shows: enough to recognise it by."""
SENTENCE_LIMIT = 300
"""Characters of a sentence written elsewhere (a validator's), which may embed its input."""
MAX_PROBLEMS = 10

log = logging.getLogger("smtp_discovery.admin")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def quoted(text: object, limit: int = QUOTE_LIMIT) -> str:
    """``text`` as an error message may show it: the repr (escaped, quoted) of its first
    ``limit`` characters, and "…" after it when it was cut."""
    text = str(text)
    return repr(text[:limit]) + ("…" if len(text) > limit else "")


def clipped(sentence: str, limit: int = SENTENCE_LIMIT) -> str:
    """A sentence someone else wrote (a validator's, a parser's), cut to ``limit`` characters:
    they quote their input whole (``f"invalid domain {domain!r}"``)."""
    return sentence if len(sentence) <= limit else sentence[:limit] + "…"


def problems(errors: Iterable[Mapping[str, Any]], *, nowhere: str = "value") -> str:
    """Pydantic's errors as one sentence each, naming the field: its location and message, never
    its ``input``. A location part that may be a long or unprintable key the client chose is
    quoted."""
    sentences = []
    for error in list(errors)[:MAX_PROBLEMS]:
        parts = [_where(p) for p in error.get("loc", ()) if p != "body"]
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        sentences.append(f"{'.'.join(parts) or nowhere}: {clipped(message)}")
    return "; ".join(sentences)


def _where(part: object) -> str:
    text = str(part)
    return text if len(text) <= QUOTE_LIMIT and text.isprintable() else quoted(text)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(body(exc.code, exc.message), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = problems(exc.errors(), nowhere="request")
        return JSONResponse(body("invalid_request", message), status_code=422)

    # Kafka or ClickHouse failing under a request is the service's trouble, not the client's:
    # 503 with a sentence saying which (the first line of the server's, clipped), never a trace.
    @app.exception_handler(ClickHouseError)
    async def _clickhouse(request: Request, exc: ClickHouseError) -> JSONResponse:
        return _unavailable(request, "clickhouse_unavailable", "ClickHouse", exc)

    @app.exception_handler(KafkaError)
    async def _kafka(request: Request, exc: KafkaError) -> JSONResponse:
        return _unavailable(request, "kafka_unavailable", "Kafka", exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(body(code, str(exc.detail)), status_code=exc.status_code)


def _unavailable(request: Request, code: str, what: str, exc: Exception) -> JSONResponse:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    sentence = f"{what} failed this request: {clipped(first, 200)}"
    log.error("%s %s: %s", request.method, request.url.path, sentence)
    return JSONResponse(body(code, sentence), status_code=503)
