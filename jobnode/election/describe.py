"""Turns an algorithm module's header text into the description the API serves.

The header is the single source: prose for people reading the code, and the
`GET /api/v1/election/algorithms/{name}` body. Sections are underlined titles;
bullet lists become lists and "- name: meaning" bullets become a mapping.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from typing import Any

_SECTIONS = {
    "how it works": "how_it_works",
    "guarantees": "guarantees",
    "failure modes": "failure_modes",
    "best for": "best_for",
    "parameters": "parameters",
}


def describe_module(name: str) -> dict[str, Any]:
    """The description of algorithm `name`, parsed from `election.<name>`'s docstring."""
    module = importlib.import_module(f"{__package__}.{name}")
    # Under `python -OO` docstrings are stripped; the source still has them.
    text = module.__doc__ or ast.get_docstring(ast.parse(inspect.getsource(module))) or ""
    head, sections = _split(text)
    return {
        "name": name,
        "summary": head,
        "how_it_works": _paragraphs(sections.get("how_it_works", [])),
        "guarantees": _bullets(sections.get("guarantees", [])),
        "failure_modes": _bullets(sections.get("failure_modes", [])),
        "best_for": _paragraphs(sections.get("best_for", [])),
        "parameters": dict(b.split(": ", 1) for b in _bullets(sections.get("parameters", []))),
    }


def _split(text: str) -> tuple[str, dict[str, list[str]]]:
    lines = text.strip().splitlines()
    head: list[str] = []
    sections: dict[str, list[str]] = {}
    current = head
    for i, line in enumerate(lines):
        underline = lines[i + 1] if i + 1 < len(lines) else ""
        if underline.startswith("---") and set(underline) == {"-"}:
            current = sections.setdefault(_SECTIONS[line.strip().lower()], [])
        elif not (line.startswith("---") and set(line) == {"-"}):
            current.append(line)
    return " ".join(line.strip() for line in head if line.strip()), sections


def _paragraphs(lines: list[str]) -> str:
    paragraphs, current = [], []
    for line in [*lines, ""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return "\n\n".join(paragraphs)


def _bullets(lines: list[str]) -> list[str]:
    items: list[str] = []
    for line in lines:
        if line.startswith("- "):
            items.append(line[2:].strip())
        elif line.strip() and items:
            items[-1] += " " + line.strip()
    return items
