"""Bounded field types shared by event data and stored tasks.

Everything here is controlled by whoever posts an event, so every type has a size limit
and a message that names what is wrong. Models ignore unknown fields (producers may send
more than we read) but never store them.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from nextup.recurrence import Mode
from nextup.targets import MAX_URL, mailbox, webhook_target

ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,128}$"
MAX_TITLE = 500
MAX_RULE = 2048
MAX_COUNT = 100_000
MAX_REMINDER_LEAD = timedelta(days=366)
# Dates outside this window are a producer's bug, not a plan: refusing them keeps the
# recurrence engine and DynamoDB sort keys away from year-1 and year-9999 edge cases.
MIN_YEAR, MAX_YEAR = 1900, 2200


def _coerce_id(value: Any) -> Any:
    # The seed's producers send integer task ids.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Id = Annotated[str, BeforeValidator(_coerce_id), StringConstraints(pattern=ID_PATTERN)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_TITLE)]


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The IANA zone called `name`, or ValueError with a message fit for a client."""
    if len(name) > 64 or not re.fullmatch(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*", name):
        raise ValueError(f"not an IANA time zone name: {name[:64]!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone: {name!r}") from None


def _check_zone(name: str) -> str:
    zone(name)
    return name


TimeZoneName = Annotated[str, AfterValidator(_check_zone)]


def _check_year(value: datetime) -> datetime:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"year must be between {MIN_YEAR} and {MAX_YEAR}")
    return value


# Naive datetimes are allowed here and resolved by the model that knows the task's zone
# (see `localize`): producers like the seed's send naive UTC timestamps.
Timestamp = Annotated[datetime, AfterValidator(_check_year)]


def localize(value: datetime | None, tz: tzinfo | None) -> datetime | None:
    """Attach `tz` (default UTC) to a naive datetime; aware ones are kept as they are."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=tz or UTC)


# Read back from our own store (`store` validates with this context): a stored value was
# checked when it was written. Rules tightened since then are enforced where the value is
# used (`notify`, `webhooks` parse it again and fail that one reminder), never on reading,
# so one old task can never make the store unreadable for a sweep.
STORED = {"stored": True}


def _stored(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("stored"))


def _check_email(value: str, info: ValidationInfo) -> str:
    return value if _stored(info) else mailbox(value)


def _check_url(value: str, info: ValidationInfo) -> str:
    # Stored in its canonical ASCII form (an IDN host IDNA-encoded), the form sent to.
    return value if _stored(info) else webhook_target(value).url


Email = Annotated[str, AfterValidator(_check_email)]
WebhookUrl = Annotated[str, AfterValidator(_check_url)]


# Empty defaults are written `Field(default=[])`, not `default_factory=list`: pydantic copies
# an unhashable default for each model all the same, and a builtin factory has it read the
# factory's signature through `inspect`, which compiles the tokenizer's patterns on first
# use (~9 ms of a function's first event).
class Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_max_length=MAX_URL, defer_build=True)


class RecurrenceSpec(Model):
    """An RFC 5545 RRULE (or an English phrase, stored as the RRULE it means) and how it
    repeats."""

    rule: Annotated[str, StringConstraints(min_length=1, max_length=MAX_RULE)]
    mode: Mode = Mode.SCHEDULE
    until: Timestamp | None = None
    count: Annotated[int, Field(ge=1, le=MAX_COUNT)] | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _phrase(
        cls, data: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> RecurrenceSpec:
        # "every! 3 days until 2027-06-30": the RRULE goes to `rule`, the mode and end to
        # the fields the producer left out; a field it did set must agree with the phrase.
        # A stored rule is the RRULE a phrase was turned into when it was written: reading
        # it back neither translates nor parses it (that would load the whole engine on
        # every read, and on the first event of functions that never compute a date).
        # A RecurrenceSpec passed on as it is (not a dict) was checked when it was made.
        rule = data.get("rule") if isinstance(data, dict) else None
        if _stored(info) or not isinstance(rule, str):
            return handler(data)
        from nextup.recurrence import RuleError
        from nextup.recurrence.phrases import translate

        try:
            phrase = translate(rule)
        except RuleError:
            phrase = None  # `_valid_rule` reports it, at the rule's own field
        if phrase is None:
            return handler(data)
        said = {"mode": phrase.mode, "until": phrase.until, "count": phrase.count}
        filled = {k: v for k, v in said.items() if v is not None and data.get(k) is None}
        spec = handler({**data, **filled, "rule": phrase.rule})
        for name in said.keys() - filled.keys():
            if phrase.differs(name, getattr(spec, name)):
                raise ValueError(f"{name} {data[name]!r} contradicts the rule {rule!r}")
        return spec

    @field_validator("rule")
    @classmethod
    def _valid_rule(cls, rule: str, info: ValidationInfo) -> str:
        if _stored(info):
            return rule  # checked when it was written (see `_phrase`)
        from nextup.recurrence.syntax import parse_rule  # the engine, on first use

        parse_rule(rule)
        return rule

    @field_validator("until", mode="before")
    @classmethod
    def _date_until(cls, value: Any) -> Any:
        # A bare date means "through the end of that day", like the seed's recurring_end_date.
        if isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            value = date.fromisoformat(value)
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime.combine(value, time(23, 59, 59))
        return value


def _check_lead(value: timedelta) -> timedelta:
    if not timedelta(0) <= value <= MAX_REMINDER_LEAD:
        raise ValueError("must be between PT0S and P366D")
    return value


class ReminderSpec(Model):
    """When to remind, relative to the task's due time (ISO 8601 duration, e.g. PT15M)."""

    before: Annotated[timedelta, AfterValidator(_check_lead)] = timedelta(0)


class NotifySpec(Model):
    """Where reminders go: e-mail, webhook, or both."""

    email: Email | None = None
    webhook: WebhookUrl | None = None


class TaskFields(Model):
    """The fields a producer may set on a task; all optional so updates can be partial."""

    title: Title | None = None
    due_at: Timestamp | None = None
    timezone: TimeZoneName | None = None
    recurrence: RecurrenceSpec | None = None
    reminder: ReminderSpec | None = None
    notify: NotifySpec | None = None

    def zone(self) -> tzinfo | None:
        return zone(self.timezone) if self.timezone else None
