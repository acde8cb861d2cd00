"""`instantid ui`: a Gradio app with the authors' demo controls, on the service's job layer.

Generating submits a job exactly as POST /v1/generations does (submissions.accept: the same parameter
table, photo checks and face check), then follows it in the store for the progress bar; the one worker
runs it on the one pipeline. Results are the job's PNGs, shown with the parameters they carry.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path

from ..params import JOB_PARAMS_BY_NAME, PARAMS_BY_NAME, TINY_DEFAULTS, family_default, family_skip
from .errors import ApiError

logger = logging.getLogger(__name__)

# px: the photo inputs and the keypoints preview, so that the prompt and its button fit one screen
PHOTO_HEIGHT, FILES_HEIGHT = 240, 150

# Knobs of params.py without a dedicated control above (e.g. negative_face_noise): shown as sliders.
_DEDICATED = {"num_inference_steps", "guidance_scale", "controlnet_conditioning_scale", "ip_adapter_scale",
              "control_guidance_start", "control_guidance_end", "seed", "width", "height", "num_images_per_prompt"}
EXTRA_KNOBS = [name for name in PARAMS_BY_NAME if name not in _DEDICATED]


def _caption(parameters: dict) -> str:
    keys = ("seed", "num_inference_steps", "guidance_scale", "controlnet_conditioning_scale", "ip_adapter_scale",
            "width", "height", "style", "scheduler", "loras")
    return ", ".join(f"{k}={parameters[k]}" for k in keys if parameters.get(k) not in (None, ""))


def parameters_text(parameters: dict) -> str:
    """The parameters as JSON, one key per line with its value on that line (keypoints stay one line)."""
    lines = [f" {json.dumps(key)}: {json.dumps(value)}" for key, value in parameters.items()]
    return "{\n" + ",\n".join(lines) + "\n}"


def _ordinal(n: int) -> str:
    return "largest" if n == 0 else f"{n + 1}{ {1: 'nd', 2: 'rd'}.get(n, 'th')} largest"


def face_report(engine, faces, face_index: int) -> str:
    """One line per face photo: how many faces were found and which one is used (group photos, never silent)."""
    lines = []
    for number, photo in enumerate(faces, 1):
        found = engine.faces(photo)
        if len(found) > face_index:
            box = ", ".join(f"{v:.0f}" for v in found[face_index].bbox)
            lines.append(f"photo {number}: {len(found)} face(s); using the {_ordinal(face_index)} (box {box})")
        else:
            lines.append(f"photo {number}: {len(found)} face(s); none is the {_ordinal(face_index)}: skipped")
    return "\n".join(f"- {line}" for line in lines)


def build(service, tiny: bool = False):
    import gradio as gr

    from ..pipelines.conditions import CONDITION_KINDS
    from .loras import as_text
    from .submissions import accept

    store, engine = service.store, service.engine
    kinds = list(engine.control_kinds)  # extra ControlNets loaded at start: a photo and a strength each
    default_scheduler = engine.default_scheduler
    knob = JOB_PARAMS_BY_NAME  # per-job knobs: choices, ranges and help from the parameter table
    family = getattr(engine, "family", "sdxl")
    not_here = family_skip(family)  # the table's knobs for another family (FLUX: no adapter scale; SDXL: no true CFG)
    extra_knobs = [name for name in EXTRA_KNOBS if name not in not_here]

    def param_slider(name: str, label: str, step: float, maximum: float | None = None, value=None):
        param = PARAMS_BY_NAME[name]
        default = value if value is not None else family_default(name, family)
        return gr.Slider(param.min, maximum if maximum is not None else param.max, value=default, step=step,
                         label=label, info=param.help, elem_id=name, visible=name not in not_here)

    def preview(faces, pose, face_index):
        if not faces:
            raise gr.Error("upload a face photo first")
        try:
            image = engine.keypoint_image(faces, pose, int(face_index or 0))
            report = face_report(engine, faces, int(face_index or 0))
        except Exception as err:  # no face, unreadable photo: say which, in one line
            message = str(err)
            for path in [*faces, pose]:
                if path:
                    message = message.replace(str(Path(path).parent) + os.sep, "")
            raise gr.Error(message)
        return image, report + ("\n- keypoints from the pose photo" if pose else "")

    def generate(faces, pose, prompt, negative_prompt, style, identitynet_scale, adapter_scale, control_start,
                 control_end, steps, guidance, seed, randomize, width, height, num_images, scheduler, face_index,
                 face_detail, face_detail_strength, *rest, progress=gr.Progress()):
        if not faces:
            raise gr.Error("upload at least one face photo")
        if service.not_ready():
            raise gr.Error(f"not ready yet: {service.not_ready()}; try again in a moment")
        extra_values, rest = rest[:len(extra_knobs)], rest[len(extra_knobs):]
        control_photos, control_scales, lora_scales = rest[:len(kinds)], rest[len(kinds):2 * len(kinds)], \
            rest[2 * len(kinds):]
        seed = random.randrange(2**31) if randomize else int(seed)
        fields = {"prompt": prompt, "negative_prompt": negative_prompt or "", "style": style,
                  "controlnet_conditioning_scale": identitynet_scale,
                  "ip_adapter_scale": None if "ip_adapter_scale" in not_here else adapter_scale,
                  "control_guidance_start": control_start, "control_guidance_end": control_end,
                  "num_inference_steps": int(steps), "guidance_scale": guidance, "seed": seed,
                  "width": int(width) or None, "height": int(height) or None, "num_images_per_prompt": int(num_images),
                  "scheduler": None if scheduler == "default" else scheduler, "face_index": int(face_index or 0),
                  "face_detail": face_detail, "face_detail_strength": face_detail_strength,
                  **dict(zip(extra_knobs, extra_values))}
        if engine.loras:
            fields["loras"] = as_text({lora.name: float(scale) for lora, scale in zip(engine.loras, lora_scales)})
        files = {"face": [Path(f).read_bytes() for f in faces]}
        if pose:
            files["pose"] = [Path(pose).read_bytes()]
        for kind, photo, scale in zip(kinds, control_photos, control_scales):
            if photo:
                files[kind] = [Path(photo).read_bytes()]
                fields[f"{kind}_scale"] = scale
        try:
            job = accept(service, fields, files)
        except ApiError as err:
            raise gr.Error(err.message)
        service.wake()
        progress(0, desc="queued")
        while True:
            job = store.get(job.id)
            if job.status in ("done", "failed", "cancelled"):
                break
            if job.status == "running" and job.total:
                progress((job.step, job.total), desc="generating", unit="steps")
            else:
                progress(0, desc=f"queued ({store.queue_position(job)} ahead)")
            time.sleep(0.1)
        if job.status != "done":
            raise gr.Error(f"generation {job.status}: {job.error}")
        images = [(str(store.image_path(job.id, n)), _caption(job.parameters)) for n in range(job.images)]
        return images, parameters_text(job.parameters), seed

    with gr.Blocks(title="InstantID") as demo:
        gr.Markdown("# InstantID" + (" on FLUX (InfiniteYou)" if family == "flux" else "")
                    + "\nUpload face photos of one person, describe the picture, generate."
                    + (" *Tiny random model: the images are noise.*" if tiny else ""))
        with gr.Row():
            with gr.Column():
                faces = gr.File(label="face photo(s) of one person", file_count="multiple", file_types=["image"],
                                type="filepath", height=FILES_HEIGHT, elem_id="faces")
                pose = gr.Image(label="pose photo (optional): face keypoints from here", type="filepath",
                                height=PHOTO_HEIGHT, elem_id="pose")
                face_index = gr.Number(value=knob["face_index"].default, precision=0, minimum=knob["face_index"].min,
                                       maximum=knob["face_index"].max, elem_id="face_index",
                                       label="face in group photos (0 = largest, 1 = second largest, ...)")
                preview_button = gr.Button("preview face keypoints", elem_id="preview")
                prompt = gr.Textbox(label="prompt", value="a portrait", elem_id="prompt")
                negative = gr.Textbox(label="negative prompt", elem_id="negative_prompt")
                style = gr.Dropdown(list(knob["style"].choices), value=knob["style"].default, label="style",
                                    elem_id="style")
                run = gr.Button("generate", variant="primary", elem_id="generate")  # by the prompt, on the first screen
                with gr.Accordion("advanced", open=tiny):
                    identitynet = param_slider("controlnet_conditioning_scale", "IdentityNet strength", 0.05, 1.5)
                    adapter = param_slider("ip_adapter_scale", "adapter strength", 0.05, 1.5)
                    start = param_slider("control_guidance_start", "IdentityNet from (fraction of steps)", 0.05)
                    end = param_slider("control_guidance_end", "IdentityNet until (fraction of steps)", 0.05)
                    steps = param_slider("num_inference_steps", "steps", 1, 100,
                                         value=TINY_DEFAULTS["num_inference_steps"] if tiny else None)
                    guidance = param_slider("guidance_scale", "guidance (CFG)", 0.1, 20)
                    scheduler = gr.Dropdown([(f"server default ({default_scheduler or 'the base model’s'})", "default"),
                                             *[(name, name) for name in knob["scheduler"].choices]], value="default",
                                            label="scheduler (sampler)", elem_id="scheduler",
                                            visible=family != "flux")  # FLUX keeps its flow-matching sampler
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, minimum=0, label="seed", elem_id="seed")
                        randomize = gr.Checkbox(value=False, label="random seed", elem_id="randomize")
                    with gr.Row():
                        width = gr.Number(value=TINY_DEFAULTS["width"] if tiny else 0, precision=0, minimum=0, maximum=4096,
                                          label="width (0 = from the photo)", elem_id="width")
                        height = gr.Number(value=TINY_DEFAULTS["height"] if tiny else 0, precision=0, minimum=0, maximum=4096,
                                           label="height (0 = from the photo)", elem_id="height")
                    num_images = param_slider("num_images_per_prompt", "images", 1, service.limits.max_images)
                    # any other knob of the parameter table, as a slider with the table's range and help
                    extra = [param_slider(name, name.replace("_", " "), 1 if PARAMS_BY_NAME[name].type is int else 0.05)
                             for name in extra_knobs]
                    with gr.Row():
                        face_detail = gr.Radio(list(knob["face_detail"].choices), value=knob["face_detail"].default,
                                               elem_id="face_detail", info=knob["face_detail"].help,
                                               label="face detail: repaint small faces after generating")
                        strength = knob["face_detail_strength"]  # (0, 1]: the slider starts one step above 0
                        face_detail_strength = gr.Slider(strength.min + 0.05, strength.max, value=strength.default,
                                                         step=0.05, label="face detail strength", info=strength.help,
                                                         elem_id="face_detail_strength")
                    control_photos = [gr.Image(label=f"{kind} ControlNet photo (optional)", type="filepath",
                                               elem_id=f"{kind}_photo") for kind in kinds]
                    scales = [CONDITION_KINDS[kind].scale_param for kind in kinds]  # 1.5: the useful part of the range
                    control_scales = [gr.Slider(param.min, 1.5, value=param.default, step=0.05, info=param.help,
                                                label=f"{kind} strength", elem_id=param.name)
                                      for kind, param in zip(kinds, scales)]
                    lora_sliders = [gr.Slider(knob["lora_scale"].min, knob["lora_scale"].max, value=lora.scale, step=0.05,
                                              elem_id=f"lora_{lora.name}", info=knob["lora_scale"].help,
                                              label=f"LoRA {lora.name}") for lora in engine.loras]
                    missing = [kind for kind in CONDITION_KINDS if kind not in kinds]
                    notes = []
                    if missing:
                        notes.append(f"Extra ControlNet photos ({', '.join(missing)}): start with "
                                     f"`--controlnet {missing[0]}`.")
                    if not engine.loras:
                        notes.append("LoRAs: none loaded; start with `--lora FILE[:SCALE]` (repeatable) to choose "
                                     "them here.")
                    if notes:
                        gr.Markdown(" ".join(notes))
            with gr.Column():  # what comes out: the keypoints preview, the images and their parameters
                keypoints = gr.Image(label="keypoints InstantID will use", interactive=False, height=PHOTO_HEIGHT,
                                     elem_id="keypoints")
                found = gr.Markdown(elem_id="faces_found")
                gallery = gr.Gallery(label="results", format="png", columns=2, elem_id="gallery")
                used_seed = gr.Number(label="seed used", interactive=False, elem_id="used_seed")
                parameters = gr.Code(label="parameters (also in each PNG's `parameters` text chunk)",
                                     language="json", interactive=False, elem_id="parameters")
        preview_button.click(preview, [faces, pose, face_index], [keypoints, found])
        run.click(generate, [faces, pose, prompt, negative, style, identitynet, adapter, start, end, steps, guidance,
                             seed, randomize, width, height, num_images, scheduler, face_index, face_detail,
                             face_detail_strength, *extra, *control_photos, *control_scales, *lora_sliders],
                  [gallery, parameters, used_seed])
    return demo


def launch(config, state_dir: Path, *, host: str = "127.0.0.1", port: int = 7860, verbose: bool = False) -> None:
    """Start the service (an Engine of `config` loading in the background, one worker) and serve the UI on
    host:port until stopped."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no calls home
    from .engine import Engine
    from .store.sqlite import SqliteStore
    from .limits import Limits
    from .service import LocalService

    state_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(state_dir)
    service = LocalService(store, Engine(config, face_cache_dir=state_dir / "face-cache"), Limits())
    service.start()
    demo = build(service, tiny=config.load.tiny)
    try:
        demo.queue().launch(server_name=host, server_port=port, allowed_paths=[str(store.jobs_dir)],
                            ssr_mode=False, quiet=not verbose, show_error=True)
    finally:
        service.stop()
