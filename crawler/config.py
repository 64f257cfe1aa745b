"""The one TOML config file, parsed into frozen dataclasses and validated at start-up.

Every error names the file, the line and what is wrong, so a user editing a config by
hand can fix it without reading code. Secrets (the SMTP password) come from the
environment, never from the file.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from crawler.safe_text import shown

def is_email_address(text: str) -> bool:
    """Good enough to try: an @, and no line break or control character to forge a header with."""
    return isinstance(text, str) and "@" in text and shown(text, inline=True) == text


SOURCE_TYPES = ("feed", "sitemap", "page", "homepage")
DEFAULT_USER_AGENT = "armswatch/0.1 (+https://github.com/armswatch/armswatch; news monitoring)"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def robots_product_token(user_agent: str) -> str:
    """The name robots.txt groups are matched against: the User-Agent's product token
    ("armswatch" of the default), as RFC 9309, 2.2.1 has it. Given the whole string, protego
    also applied groups named for any other word in it ("github", "news", "monitoring")."""
    token = re.match(r"[A-Za-z0-9_-]+", user_agent.strip())  # RFC 9309 allows no digits; users name bots "Bot2"
    return token.group() if token else user_agent


class ConfigError(ValueError):
    """A config problem, with the place it was found: `file:line: message`."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Source:
    name: str
    url: str
    type: str = "feed"
    language: str | None = None
    country: str | None = None
    section: str | None = None
    state_affiliated: bool = False
    enabled: bool = True
    user_agent: str | None = None
    max_items: int | None = None
    interval: float | None = None  # seconds between polls; None: the schedule default
    cron: str | None = None
    selector: str | None = None  # CSS selector for article links on a listing page
    max_pages: int = 1  # pagination depth for listing pages
    since_days: float | None = None  # sitemap date window
    notes: str | None = None
    silent_after: float | None = None  # seconds; overrides [alerts].silent_after for this source


@dataclass(frozen=True)
class CrawlSettings:
    db: str = "armswatch.db"
    user_agent: str = DEFAULT_USER_AGENT
    download_timeout: float = 30.0
    max_page_bytes: int = 5_000_000
    concurrency_per_domain: int = 2
    download_delay: float = 0.25
    obey_robots: bool = True
    allow_private_addresses: bool = True  # loopback demo/test sites need it; turn off for public crawls
    extraction_workers: int = 0  # 0: one per core
    rules: tuple[str, ...] = ("arms-procurement",)
    run_timeout: float = 3600.0  # hard limit for one crawl subprocess (scheduler)
    lock_wait: float = 10.0  # seconds a crawl waits for another crawl of the same database


@dataclass(frozen=True)
class Recipient:
    address: str
    rules: tuple[str, ...] = ()  # empty: every rule
    mode: str = "instant"  # instant | hourly | daily | weekly
    at: str = "08:00"  # time of day for daily/weekly digests
    weekday: str = "mon"
    story_updates: bool = False  # instant recipients may opt in to "also reported by" updates


@dataclass(frozen=True)
class AlertSettings:
    smtp_host: str | None = None  # None: write .eml files to outbox_dir instead of sending
    smtp_port: int = 587
    tls: str = "starttls"  # starttls | ssl | none
    smtp_user: str | None = None
    password_env: str = "ARMSWATCH_SMTP_PASSWORD"
    sender: str = "armswatch@localhost"
    outbox_dir: str = "outbox"
    timeout: float = 30.0
    max_attempts: int = 10
    health_failures: int = 3  # consecutive failed runs before a source is reported
    silent_after: float = 604800.0  # seconds without a new article before a source is reported silent
    retry_after: float = 300.0  # seconds before the first retry of an unsent email; doubles each attempt
    timezone: str = "UTC"  # IANA zone in which digest `at` times are read
    recipients: tuple[Recipient, ...] = ()


@dataclass(frozen=True)
class ScheduleSettings:
    interval: float = 1800.0
    jitter: float = 60.0
    min_interval: float = 600.0
    max_interval: float = 86400.0
    adaptive: bool = True
    misfire_grace_time: float = 600.0
    kill_grace: float = 10.0  # seconds between SIGTERM and SIGKILL for a crawl past run_timeout


@dataclass(frozen=True)
class Config:
    path: str
    crawl: CrawlSettings = field(default_factory=CrawlSettings)
    sources: tuple[Source, ...] = ()
    alerts: AlertSettings = field(default_factory=AlertSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)

    @property
    def enabled_sources(self) -> tuple[Source, ...]:
        return tuple(s for s in self.sources if s.enabled)


def parse_duration(value: Any) -> float:
    """'30m', '2h', '1d' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '30m', got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration like '15m', '2h' or '1d', got {value!r}")
    return float(match.group(1)) * _DURATION_SECONDS[match.group(2)]


def default_sources_path() -> Path:
    return Path(str(resources.files("crawler").joinpath("default_sources.toml")))


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raise ConfigError naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, f"cannot read config file: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _line_from_toml_error(exc)
        raise ConfigError(path, f"TOML syntax error: {exc}", line) from None
    return _Validator(path, text).config(data)


def config_from_sources(sources: list[Source], db: str | None = None, base: Config | None = None) -> Config:
    """A config for ad-hoc CLI sources (`--feed URL`), keeping the other settings of `base`."""
    base = base or Config(path="<command line>")
    crawl = base.crawl if db is None else _replace(base.crawl, db=db)
    return Config(path=base.path, crawl=crawl, sources=tuple(sources), alerts=base.alerts, schedule=base.schedule)


def _replace(obj: Any, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(obj, **changes)


def _line_from_toml_error(exc: tomllib.TOMLDecodeError) -> int | None:
    match = re.search(r"line (\d+)", str(exc))
    return int(match.group(1)) if match else None


class _Validator:
    """Turns parsed TOML into dataclasses, locating every complaint in the source text."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = text.splitlines()

    def error(self, message: str, key: str | None = None, value: Any = None, after: int = 0) -> ConfigError:
        return ConfigError(self.path, message, self.find_line(key, value, after))

    def find_line(self, key: str | None, value: Any = None, after: int = 0) -> int | None:
        """Best-effort line of `key = value` (or of the value alone) at or after line `after`."""
        if key is None and value is None:
            return None
        key_re = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=") if key else None
        needle = str(value) if value is not None and not isinstance(value, (dict, list)) else None
        for number, line in enumerate(self.lines[after:], start=after + 1):
            if key_re and key_re.search(line) and (needle is None or needle in line):
                return number
        if needle:
            for number, line in enumerate(self.lines[after:], start=after + 1):
                if needle in line:
                    return number
        return None

    def table_lines(self, header: str) -> list[int]:
        pattern = re.compile(rf"^\s*\[\[?\s*{re.escape(header)}\s*\]\]?\s*(#.*)?$")
        return [n for n, line in enumerate(self.lines, start=1) if pattern.match(line)]

    def build(self, cls: type, table: dict[str, Any], where: str, after: int = 0, convert: dict | None = None) -> Any:
        """Instantiate a settings dataclass from a table, rejecting unknown keys and wrong types."""
        convert = convert or {}
        known = {f.name: f for f in cls.__dataclass_fields__.values()}  # type: ignore[attr-defined]
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key not in known or key == "path":
                raise self.error(f"unknown key {key!r} in {where} (known: {', '.join(sorted(known))})", key, None, after)
            try:
                values[key] = convert[key](value) if key in convert else self.check_type(known[key], value)
            except (TypeError, ValueError) as exc:
                raise self.error(f"{where}.{key}: {exc}", key, None, after) from None
        try:
            return cls(**values)
        except TypeError as exc:
            raise self.error(f"{where}: {exc}", None, None, after) from None

    @staticmethod
    def check_type(field_: Any, value: Any) -> Any:
        hint = str(field_.type)
        if "tuple" in hint:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"expected a list of strings, got {value!r}")
            return tuple(value)
        if hint.startswith("bool"):
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {value!r}")
        elif hint.startswith("int"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"expected a whole number, got {value!r}")
        elif hint.startswith("float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"expected a number, got {value!r}")
            return float(value)
        elif hint.startswith("str") and not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        return value

    def config(self, data: dict[str, Any]) -> Config:
        allowed = {"crawl", "sources", "alerts", "schedule"}
        for key in data:
            if key not in allowed:
                line = (self.table_lines(key) or [self.find_line(key)])[0]
                raise ConfigError(self.path, f"unknown section {key!r} (known: {', '.join(sorted(allowed))})", line)
        crawl = self.build(
            CrawlSettings,
            self.table(data, "crawl"),
            "[crawl]",
            self.first_line("crawl"),
            convert={k: parse_duration for k in ("download_timeout", "run_timeout", "download_delay", "lock_wait")},
        )
        self.check_crawl(crawl, self.first_line("crawl"))
        if crawl.db and not Path(crawl.db).is_absolute():
            crawl = _replace(crawl, db=str((self.path.parent / crawl.db)))
        # rule files named by path are found relative to the config file, like the database
        crawl = _replace(
            crawl,
            rules=tuple(
                str(self.path.parent / r) if r.endswith(".toml") and not Path(r).is_absolute() else r
                for r in crawl.rules
            ),
        )
        sources = self.sources(data.get("sources", []))
        alerts = self.alerts(self.table(data, "alerts"))
        schedule = self.build(
            ScheduleSettings,
            self.table(data, "schedule"),
            "[schedule]",
            self.first_line("schedule"),
            convert={k: parse_duration for k in ("interval", "jitter", "min_interval", "max_interval", "misfire_grace_time", "kill_grace")},
        )
        return Config(path=str(self.path), crawl=crawl, sources=sources, alerts=alerts, schedule=schedule)

    def first_line(self, header: str) -> int:
        found = self.table_lines(header)
        return found[0] - 1 if found else 0

    def table(self, data: dict[str, Any], name: str) -> dict[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise self.error(f"{name!r} must be a table ([{name}])", name)
        return value

    def sources(self, raw: Any) -> tuple[Source, ...]:
        if not isinstance(raw, list):
            raise self.error("'sources' must be an array of tables ([[sources]])", "sources")
        headers = self.table_lines("sources")
        seen_names: set[str] = set()
        seen_urls: set[str] = set()
        result = []
        for index, table in enumerate(raw):
            after = headers[index] - 1 if index < len(headers) else 0
            where = f"[[sources]] #{index + 1}"
            for required in ("name", "url"):
                if required not in table:
                    line = headers[index] if index < len(headers) else None
                    raise ConfigError(self.path, f"{where}: missing required key {required!r}", line)
            source = self.build(
                Source,
                table,
                where,
                after,
                convert={"interval": parse_duration, "since_days": float, "silent_after": parse_duration},
            )
            self.check_source(source, where, after)
            if source.name in seen_names:
                raise self.error(f"{where}: duplicate source name {source.name!r}", "name", source.name, after)
            if source.url in seen_urls:
                raise self.error(f"{where}: duplicate source url {source.url!r}", "url", source.url, after)
            seen_names.add(source.name)
            seen_urls.add(source.url)
            result.append(source)
        return tuple(result)

    def check_crawl(self, crawl: CrawlSettings, after: int) -> None:
        """Values Scrapy would take silently and wrongly: no concurrency (a crawl that never ends),
        a zero or negative timeout or size limit (limits off, or every request failing)."""
        for key, least in (("concurrency_per_domain", 1), ("extraction_workers", 0), ("download_delay", 0)):
            if getattr(crawl, key) < least:
                raise self.error(f"[crawl]: {key} must be at least {least}, got {getattr(crawl, key)!r}", key, None, after)
        for key in ("download_timeout", "max_page_bytes", "run_timeout"):
            if getattr(crawl, key) <= 0:
                raise self.error(f"[crawl]: {key} must be more than 0, got {getattr(crawl, key)!r}", key, None, after)
        if not crawl.user_agent.strip():
            raise self.error("[crawl]: user_agent must not be empty (sites ask a crawler to say who it is)", "user_agent", None, after)

    def check_source(self, source: Source, where: str, after: int) -> None:
        if not str(source.name).strip() or shown(source.name, inline=True) != source.name:  # it is printed in tables
            raise self.error(f"{where}: name must be one line without control characters, got {source.name!r}",
                             "name", None, after)
        from crawler.urls import url_problem, without_password

        problem = url_problem(source.url)
        if problem:
            got = without_password(source.url) if isinstance(source.url, str) else source.url
            raise self.error(f"{where}: url {got!r} cannot be crawled: {problem}", "url", None, after)
        if source.type not in SOURCE_TYPES:
            raise self.error(f"{where}: type must be one of {', '.join(SOURCE_TYPES)}, got {source.type!r}", "type", None, after)
        if source.language is not None and not re.fullmatch(r"[a-z]{2}", source.language):
            raise self.error(f"{where}: language must be an ISO 639-1 code like 'en', got {source.language!r}", "language", None, after)
        if source.max_items is not None and source.max_items < 1:
            raise self.error(f"{where}: max_items must be at least 1", "max_items", None, after)

    def alerts(self, table: dict[str, Any]) -> AlertSettings:
        table = dict(table)
        raw_recipients = table.pop("recipients", [])
        after = self.first_line("alerts")
        settings = self.build(
            AlertSettings, table, "[alerts]", after,
            convert={k: parse_duration for k in ("timeout", "silent_after", "retry_after")},
        )
        if settings.tls not in ("starttls", "ssl", "none"):
            raise self.error(f"[alerts].tls must be starttls, ssl or none, got {settings.tls!r}", "tls", None, after)
        if not isinstance(raw_recipients, list):
            raise self.error("[alerts].recipients must be an array of tables ([[alerts.recipients]])", "recipients")
        headers = self.table_lines("alerts.recipients")
        recipients = []
        for index, raw in enumerate(raw_recipients):
            start = headers[index] - 1 if index < len(headers) else after
            recipient = self.build(Recipient, raw, f"[[alerts.recipients]] #{index + 1}", start)
            if not is_email_address(recipient.address):
                raise self.error(f"recipient address {recipient.address!r} is not an email address (an @, and no line break or control character)", "address", None, start)
            if recipient.mode not in ("instant", "hourly", "daily", "weekly"):
                raise self.error(f"recipient mode must be instant, hourly, daily or weekly, got {recipient.mode!r}", "mode", None, start)
            recipients.append(recipient)
        return _replace(settings, recipients=tuple(recipients))
