"""Style presets: a prompt template ("{prompt}" is replaced) and a negative prompt, by name.

The nine built-in names follow the authors' demo; the wording is ours. Custom presets come from a
JSON file: {"name": {"prompt": "... {prompt} ...", "negative_prompt": "..."}}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

_COMMON_NEGATIVE = "lowres, blurry, deformed face, extra fingers, watermark, text"


@dataclass(frozen=True)
class Style:
    prompt: str
    negative_prompt: str = ""

    def apply(self, prompt: str, negative_prompt: str | None = None) -> tuple[str, str]:
        """(styled prompt, negative prompt): the user's negative prompt is kept and the style's appended."""
        styled = self.prompt.replace("{prompt}", prompt) if "{prompt}" in self.prompt else f"{prompt}, {self.prompt}"
        negatives = ", ".join(p for p in (negative_prompt, self.negative_prompt) if p)
        return styled, negatives


BUILTIN_STYLES: dict[str, Style] = {
    "none": Style("{prompt}"),
    "watercolor": Style("watercolor painting of {prompt}, soft washes of colour, paper texture, loose brushwork",
                        f"photo, 3d render, harsh lines, {_COMMON_NEGATIVE}"),
    "film-noir": Style("film noir still of {prompt}, black and white, hard shadows, dramatic low-key light, 1940s",
                       f"colour, bright, cheerful, {_COMMON_NEGATIVE}"),
    "neon": Style("{prompt}, neon-lit night city, magenta and cyan glow, wet reflections, cinematic",
                  f"daylight, dull colours, {_COMMON_NEGATIVE}"),
    "jungle": Style("{prompt} in a dense jungle, tropical leaves, humid haze, shafts of sunlight, national geographic",
                    f"city, snow, {_COMMON_NEGATIVE}"),
    "mars": Style("{prompt} on the surface of Mars, red dust, rocky plains, spacesuit details, science fiction",
                  f"green, forest, ocean, {_COMMON_NEGATIVE}"),
    "vibrant": Style("{prompt}, vibrant saturated colours, bold colour blocking, editorial fashion photo",
                     f"muted, grey, black and white, {_COMMON_NEGATIVE}"),
    "snow": Style("{prompt} in falling snow, winter landscape, cold blue light, frost on clothes",
                  f"summer, beach, {_COMMON_NEGATIVE}"),
    "line-art": Style("line art drawing of {prompt}, clean ink outlines, minimal shading, white background",
                      f"photo, realistic, colour, {_COMMON_NEGATIVE}"),
}


def load_styles(path: str | Path | None = None) -> dict[str, Style]:
    """Built-in presets, plus (overriding by name) those in a JSON file."""
    styles = dict(BUILTIN_STYLES)
    if path is None:
        return styles
    from ..checks import check_input_file

    check_input_file(path, "styles file", error=UsageError)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise UsageError(f"styles file '{path}' could not be read as JSON ({err}); write it as "
                         '{"name": {"prompt": "... {prompt} ...", "negative_prompt": "..."}}') from None
    if not isinstance(data, dict):
        raise UsageError(f"styles file '{path}' must hold an object of name -> {{prompt, negative_prompt}}")
    for name, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("prompt"), str):
            raise UsageError(f"style '{name}' in '{path}' needs a \"prompt\" string (use {{prompt}} for the user's)")
        negative = entry.get("negative_prompt", "")
        if not isinstance(negative, str):
            raise UsageError(f"style '{name}' in '{path}': \"negative_prompt\" must be a string")
        styles[name] = Style(entry["prompt"], negative)
    return styles


def get_style(name: str, path: str | Path | None = None) -> Style:
    styles = load_styles(path)
    if name not in styles:
        raise UsageError(f"unknown style '{name}'; choose one of: {', '.join(sorted(styles))}")
    return styles[name]
