"""The API's documents, as pydantic models: FastAPI validates every answer against them
and publishes them in /openapi.json (which the schemathesis fuzz checks answers against)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Status = Literal["pending", "running", "complete", "failed", "canceled", "superseded"]


class Problem(BaseModel):
    """application/problem+json (RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


class JobRow(BaseModel):
    id: int
    actor: str
    queue: str
    status: str
    attempts: int
    deferrals: int
    priority: int
    change_id: int | None
    notification_id: int | None
    recipient: str | None
    created_at: datetime
    published_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    eta: datetime | None
    last_error: str | None
    route: str | None
    table_name: str | None


class JobList(BaseModel):
    jobs: list[JobRow]
    #: Pass as `cursor` for the next page; null on the last page.
    next: str | None
    limit: int
    sort: str
    order: str
    counts: dict[str, int] = Field(description="jobs matching the filters, per status")
    counts_estimated: bool = Field(
        description="true past 100,000 jobs: the planner's estimates, not exact counts"
    )
    q_scope: str | None = Field(None, description="what free text (q) searched, when given")


class JobTimings(BaseModel):
    id: int
    message_id: str
    actor: str
    queue: str
    status: str
    attempts: int
    deferrals: int
    priority: int
    notification_id: int | None
    change_id: int | None
    recipient: str | None
    unique_key: str | None
    created_at: datetime
    published_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    eta: datetime | None
    last_error: str | None
    queued_ms: float | None = Field(description="from publication (or creation) to start")
    processing_ms: float | None = Field(description="the last attempt, start to finish")
    due_in_seconds: float | None = Field(description="until a delayed pending job is due")


class Notification(BaseModel):
    id: int
    route: str
    table_name: str
    row_pk: Any
    change_ids: list[int]
    recipients: list[str]
    ai: bool
    on_ai_failure: str
    priority: str
    created_at: datetime
    due_at: datetime | None


class Summary(BaseModel):
    """The AI's summary: its text names people by alias only; the alias map is never shown."""

    status: str
    summary: str | None
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    error: str | None
    created_at: datetime


class Delivery(BaseModel):
    id: int
    recipient: str
    status: str
    attempts: int
    ambiguous: bool
    message_id_header: str
    created_at: datetime
    sent_at: datetime | None
    error: str | None


class JobDetail(BaseModel):
    job: JobTimings
    notification: Notification | None
    summary: Summary | None
    delivery: Delivery | None


class RetryAccepted(BaseModel):
    job_id: int
    status: Literal["pending"]
    published: bool = Field(description="false: the outbox publishes it on a later run")


class Skipped(BaseModel):
    id: int
    reason: str


class BulkRetryAccepted(BaseModel):
    retried: int
    published: int
    skipped: list[Skipped]
    more: bool = Field(description="more jobs match: send the same request again")


class Canceled(BaseModel):
    job_id: int
    status: Literal["canceled"]
    previous_status: str


#: A table name as PostgreSQL spells it unquoted, optionally schema-qualified.
TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_$]{0,62}([.][A-Za-z_][A-Za-z0-9_$]{0,62})?$"


class _Change(BaseModel):
    model_config = ConfigDict(extra="forbid")

    table: str = Field(description="table name, optionally schema-qualified",
                       pattern=TABLE_PATTERN)  # fmt: skip


class InsertChange(_Change):
    """A row was inserted: `row` is the new row."""

    operation: Literal["INSERT"]
    row: dict[str, Any]
    old_row: None = None


class UpdateChange(_Change):
    """A row was updated: `row` is the new row, `old_row` the old one."""

    operation: Literal["UPDATE"]
    row: dict[str, Any]
    old_row: dict[str, Any]


class DeleteChange(_Change):
    """A row was deleted: `old_row` is the row as it was."""

    operation: Literal["DELETE"]
    row: None = None
    old_row: dict[str, Any]


#: POST /api/changes' body (documentation: the body is read by herald/web/changes_in.py,
#: which also refuses NUL characters, and rows past [limits] max_change_depth (64 levels)
#: and max_change_bytes (1 MB), as the orchestrator would).
ChangeIn = Annotated[InsertChange | UpdateChange | DeleteChange, Field(discriminator="operation")]


class ChangeAccepted(BaseModel):
    change_id: int
    status: Literal["queued"]


class ChangeRow(BaseModel):
    id: int
    table_name: str
    operation: str
    row_pk: Any
    changed_at: datetime
    claimed_at: datetime | None
    outcome: str | None
    error: str | None


class TraceJob(BaseModel):
    id: int
    notification_id: int | None
    actor: str
    queue: str
    status: str
    attempts: int
    recipient: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    eta: datetime | None
    last_error: str | None


class TraceDelivery(Delivery):
    notification_id: int


class TraceNotification(Notification):
    jobs: list[TraceJob]
    summary: Summary | None
    deliveries: list[TraceDelivery]


class ChangeTrace(BaseModel):
    change: ChangeRow
    status: Literal["queued", "routed", "skipped", "failed"]
    notifications: list[TraceNotification]


class OrchestrateAccepted(BaseModel):
    status: Literal["sent"]


class Liveness(BaseModel):
    status: Literal["pass"]


class Health(BaseModel):
    """application/health+json (draft-inadarei-api-health-check)."""

    status: Literal["pass", "warn", "fail"]
    checks: dict[str, list[dict[str, Any]]]
    serviceId: str | None = None  # noqa: N815 - the draft's name
    description: str | None = None


def change_in_schema() -> dict[str, Any]:
    """ChangeIn's JSON schema with its definitions inlined (for the request body)."""
    schema = TypeAdapter(ChangeIn).json_schema(ref_template="#/$defs/{model}")
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items() if k != "discriminator"}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)
