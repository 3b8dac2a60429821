"""The HTTP API's request and response bodies (`POST /v1/judge`); rows and results are the referee's own."""

from __future__ import annotations

from pydantic import BaseModel, Field

from urpo_kit.config.schema import Mode, VerdictKind
from urpo_kit.referee.rows import JudgeResult, JudgeRow


class JudgeRequest(BaseModel):
    """Several rows in one request (a bare row is accepted too), optionally judged in another mode or verdict."""

    rows: list[JudgeRow] = Field(min_length=1, description="the rows to judge")
    mode: Mode | None = Field(None, description="listwise | pairwise | pointwise (default: the server's)")
    verdict: VerdictKind | None = Field(None, description="sample | likelihood (default: the server's)")


class JudgeResponse(BaseModel):
    """One result per row, in request order."""

    model: str
    mode: Mode
    verdict: VerdictKind
    results: list[JudgeResult]
