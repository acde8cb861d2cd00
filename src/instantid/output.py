"""Writing generated images: PNG (parameters in a text chunk), JPEG or WebP (parameters in EXIF), each
written to a temporary file and renamed, so nothing is ever half-written. Quiet: the front ends say what was
written (the CLI prints the paths; the service lists them in the job)."""

from __future__ import annotations

import json
from pathlib import Path

from .checks import check_output_dir, check_output_file, write_atomically
from .errors import OutputPathError

# Output extensions and the Pillow format each is written in.
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_EXIF_IMAGE_DESCRIPTION = 0x010E  # ASCII: the parameters as JSON (json.dumps escapes non-ASCII)


def is_folder_target(out_arg: str) -> bool:
    import os

    try:
        return out_arg.endswith(("/", os.sep)) or Path(out_arg).is_dir()
    except (OSError, ValueError):  # a name too long to stat is not a folder; check_output_file says what it is
        return False


def check_out_arg(out_arg: str, flag: str = "--out") -> None:
    """Refuse, before any work, an --out that could not be written or whose extension we do not write."""
    if not out_arg:
        raise OutputPathError(f"{flag} is empty; pass a file name (out.png) or a folder (outdir/)")
    if is_folder_target(out_arg):
        check_output_dir(out_arg, f"{flag} folder")
        return
    suffix = Path(out_arg).suffix.lower()
    if suffix and suffix not in OUTPUT_FORMATS:
        raise OutputPathError(f"{flag} {out_arg}: '{suffix}' is not an image format written here; use "
                              f"{', '.join(OUTPUT_FORMATS)} (or no extension for PNG)")
    check_output_file(out_arg, f"{flag} file")


def output_suffix(out_arg: str) -> str:
    suffix = Path(out_arg).suffix
    return suffix if suffix.lower() in OUTPUT_FORMATS and not is_folder_target(out_arg) else ".png"


def output_paths(out_arg: str, count: int, label: str = "") -> list[Path]:
    """Image paths for `count` images: OUT.png (or OUT_LABEL.png, OUT_000.png, ...), or files in a folder OUT/.
    OUT.jpg / OUT.webp keep their format; no extension means PNG. Creates the folder."""
    out = Path(out_arg)
    suffix = output_suffix(out_arg)
    if is_folder_target(out_arg):
        out.mkdir(parents=True, exist_ok=True)
        out = out / "instantid.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = f"{out.stem}_{label}" if label else out.stem
    names = [f"{stem}{suffix}"] if count == 1 else [f"{stem}_{i:03d}{suffix}" for i in range(count)]
    return [out.with_name(name) for name in names]


def write_images(images, paths, metadata: dict) -> list[Path]:
    """Save each image at its path with `metadata` and the instantid version inside (save_with_parameters)."""
    from . import __version__

    return [save_with_parameters(image, Path(path), {**metadata, "instantid_version": __version__})
            for path, image in zip(paths, images)]


def save_with_parameters(image, path: Path, parameters: dict) -> Path:
    """Save `image` at `path` in the format its extension names, with `parameters` inside, atomically."""
    from PIL.PngImagePlugin import PngInfo

    text = json.dumps(parameters)
    image_format = OUTPUT_FORMATS.get(path.suffix.lower(), "PNG")

    def write(temporary: Path) -> None:
        if image_format == "PNG":
            info = PngInfo()
            info.add_text("parameters", text)
            image.save(temporary, format="PNG", pnginfo=info)
        else:
            from PIL import Image

            exif = Image.Exif()
            exif[_EXIF_IMAGE_DESCRIPTION] = text
            image.convert("RGB").save(temporary, format=image_format, exif=exif.tobytes(), quality=95)

    return write_atomically(path, write, "output image")


def read_parameters(path) -> dict:
    """The parameters written by save_with_parameters (PNG text chunk or EXIF ImageDescription)."""
    from PIL import Image

    with Image.open(path) as image:
        text = image.text.get("parameters") if hasattr(image, "text") else None
        if text is None:
            text = image.getexif().get(_EXIF_IMAGE_DESCRIPTION)
    return json.loads(text) if text else {}
