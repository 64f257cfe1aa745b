"""The docs cannot drift: every command and every config key a user can set is documented."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import click

from crawler.cli import cli
from crawler.config import AlertSettings, CrawlSettings, Recipient, ScheduleSettings, Source, load_config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLE = ROOT / "examples" / "armswatch.toml"


def all_commands(group: click.Group, prefix: str = "armswatch") -> list[str]:
    names = []
    for name, command in group.commands.items():
        if command.hidden:
            continue
        names.append(f"{prefix} {name}")
        if isinstance(command, click.Group):
            names += all_commands(command, f"{prefix} {name}")
    return names


def test_readme_opens_with_the_two_commands_ci_runs():
    block = re.search(r"```sh\n(.*?)\n```", README, re.S).group(1).splitlines()
    assert len(block) == 2
    assert block[0].endswith("armswatch demo")
    ci = (ROOT / ".ci" / "run").read_text()
    assert block[1] in ci


def test_every_command_is_in_the_readme():
    missing = [c for c in all_commands(cli) if f"`{c}" not in README]
    assert missing == []


def test_every_config_key_is_in_the_commented_example():
    text = EXAMPLE.read_text(encoding="utf-8")
    keys = set()
    for cls in (CrawlSettings, Source, AlertSettings, ScheduleSettings, Recipient):
        keys |= {f.name for f in dataclasses.fields(cls)} - {"recipients"}
    missing = sorted(k for k in keys if not re.search(rf"^\s*#?\s*{k}\s*=", text, re.M))
    assert missing == []


def test_the_example_config_loads():
    config = load_config(EXAMPLE)
    assert config.sources and config.alerts.recipients
