"""Every command's --help shows an example invocation a newcomer can copy.

Walks the click tree of `clipfeat.pipeline.cli.cli`; `train TASK` (one per registered task) are click
pass-through commands whose --help is the trainer's argparse help. An example is a line that
starts with `clipfeat <the command's path> ` (after `Example:` at most), and every --flag it
uses must be one the command accepts, so a stale example fails too.
"""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from clipfeat.pipeline.cli import cli
from clipfeat.trainers.task import TASKS


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, cmd in sorted(group.commands.items()):
        yield (*path, name), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*path, name))


COMMANDS = dict(_commands(cli))
LEAVES = [p for p, c in COMMANDS.items() if not isinstance(c, click.Group)]
GROUPS = [()] + [p for p, c in COMMANDS.items() if isinstance(c, click.Group)]
PASS_THROUGH = {("train", name) for name in TASKS}  # argparse behind click


def _examples(text: str, path: tuple[str, ...]) -> list[str]:
    """Example invocations of `clipfeat PATH` in a help text, continuation lines (`\\`) joined."""
    head = re.compile(r"^\s*(?:Example:\s*)?(clipfeat " + re.escape(" ".join(path)) + r"\s+\S.*)$") if path else \
        re.compile(r"^\s*(clipfeat [a-z][a-z-]*\s+\S.*)$")
    lines, out = text.splitlines(), []
    for i, line in enumerate(lines):
        m = head.match(line)
        if not m:
            continue
        example = m.group(1)
        while example.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            example = example.rstrip()[:-1] + " " + lines[i].strip()
        out.append(example)
    return out


def _help(path: tuple[str, ...]) -> str:
    r = CliRunner().invoke(cli, [*path, "--help"], prog_name="clipfeat")
    assert r.exit_code == 0, (path, r.output)
    return r.output


def _flags(example: str) -> set[str]:
    return {tok.split("=")[0] for tok in example.split() if re.fullmatch(r"--[a-z][a-z0-9-]*(=\S*)?", tok)}


def test_the_tree_is_walked():
    assert {("extract",), ("manifest",), ("render-views",), ("info",), ("verify",), ("ls",), ("export",), ("import",),
            ("copy",), ("train", "vqa"), ("train", "caption"), ("train", "nav"), ("eval", "vqa"), ("eval", "caption"),
            ("eval", "nav")} <= set(LEAVES)
    assert PASS_THROUGH <= set(LEAVES)


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_leaf_help_has_a_working_example(path):
    text = _help(path)
    examples = _examples(text, path)
    assert examples, f"`clipfeat {' '.join(path)} --help` shows no example line starting with `clipfeat {' '.join(path)} `:\n{text}"
    if path in PASS_THROUGH:  # argparse: the flags listed under "options:"
        known = set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", text, re.M))
    else:
        known = {o for p in COMMANDS[path].params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}
    for example in examples:
        unknown = _flags(example) - known
        assert not unknown, f"example uses flags that `clipfeat {' '.join(path)}` does not have {sorted(unknown)}: {example}"


@pytest.mark.parametrize("path", GROUPS, ids=lambda p: " ".join(p) or "clipfeat")
def test_group_help_shows_examples_of_its_commands(path):
    examples = _examples(_help(path), path)
    assert examples, path
    group = COMMANDS[path] if path else cli
    for example in examples:  # each names a real subcommand
        sub = example.split()[len(path) + 1]
        assert sub in group.commands, example


def test_top_level_help_covers_r2r():
    examples = _examples(_help(()), ())
    assert any(e.startswith("clipfeat extract --dataset r2r") for e in examples)
    assert any(e.startswith("clipfeat train nav") for e in examples)
