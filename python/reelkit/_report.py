"""What every report shares: its three texts, JSON as data, inline HTML in
Jupyter, written to a directory as the command line writes it."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Union


class TextReport:
    """A report as ``report.json``, ``report.md`` and ``report.html``."""

    def __init__(self, json_text: str, markdown: str, html: str) -> None:
        self.data: dict = json.loads(json_text)
        self._json = json_text
        self._markdown = markdown
        self._html = html

    def to_json(self) -> str:
        return self._json

    def to_markdown(self) -> str:
        return self._markdown

    def to_html(self) -> str:
        return self._html

    def _repr_html_(self) -> str:
        return self._html

    def save(self, directory: Union[str, os.PathLike]) -> None:
        """Write report.json, report.md and report.html into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for name, text in (("report.json", self._json), ("report.md", self._markdown), ("report.html", self._html)):
            tmp = d / (name + ".part")
            tmp.write_text(text)
            tmp.replace(d / name)
