"""Bit-identity of outputs between two versions of instantid, capability by capability.

Runs every capability on the tiny random models and the official-parity fixture with fixed seeds, and saves
the raw outputs (float arrays via output_type="np" where the API allows, else PNG/PIL pixels; the face-swap
mask too) to one .npz per case. Only APIs present in both versions compared (library entries, the drop-in
pipelines, the `generate` / `swap` / `multi` CLI and the HTTP service) are used, so one script runs under
either checkout.

Usage (one output folder per version, then compare them)::

    cache=/tmp/bitid-cache   # the tiny models, built once and shared by both runs
    PYTHONPATH=<old checkout>/src OMP_NUM_THREADS=1 python benchmarks/bit_identity.py --out /tmp/bitid-old --cache $cache
    PYTHONPATH=<new checkout>/src OMP_NUM_THREADS=1 python benchmarks/bit_identity.py --out /tmp/bitid-new --cache $cache
    python benchmarks/bit_identity.py --compare /tmp/bitid-old /tmp/bitid-new

`--only a,b` runs some cases; `--list` names them. The parity cases need the project's shared/ folder beside
the repository (or `--parity DIR`). The run prints, and `--out` keeps (run.json), which instantid was
imported, so a wrong PYTHONPATH shows. `--compare` prints a table (case, equal, max abs diff) and exits 1
when any case differs or is missing on one side.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PARITY = REPO.parent / "shared" / "fixtures" / "official-parity"
KPS64 = np.array([[20.0, 25.0], [44.0, 25.0], [32.0, 38.0], [23.0, 50.0], [41.0, 50.0]])
KPS128 = np.array([[52.0, 50.0], [68.0, 50.0], [60.0, 58.0], [54.0, 66.0], [66.0, 66.0]])  # a ~40 px face


def as_arrays(images) -> np.ndarray:
    """Pipeline images (np array, torch tensor, or list of PIL images) as one numpy array, exactly."""
    if isinstance(images, np.ndarray):
        return images
    if type(images).__module__.startswith("torch"):
        return images.detach().cpu().numpy()
    return np.stack([np.asarray(image) for image in images])


def generator(seed: int):
    import torch

    return torch.Generator().manual_seed(seed)


class Context:
    """Models loaded once per run, on first use."""

    def __init__(self, out: Path, cache: Path, parity: Path):
        self.out, self.cache, self.parity = out, cache, parity
        self._cache = {}

    def once(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def photo(self, name):
        from instantid.face.samples import sample_photo

        return sample_photo(name)

    @property
    def analyzer(self):
        from instantid.face import get_face_analyzer

        return self.once("dlib", lambda: get_face_analyzer("dlib"))

    def tiny(self, arch="sdxl"):
        from instantid.testing.tiny import tiny_instantid_cached

        return tiny_instantid_cached(arch=arch, embedding_dim=128, cache_dir=self.cache / "instantid" / "tiny")

    def lora(self) -> Path:
        from instantid.testing.tiny import build_tiny_lora

        path = self.cache / "sketch.safetensors"
        if not path.is_file():
            build_tiny_lora(self.tiny().base, path)
        return path

    def pipe(self, key="sdxl", **load_kwargs):
        def make():
            from instantid.pipelines.loading import load_pipeline

            paths = self.tiny("sd15" if key == "sd15" else "sdxl")
            pipe = load_pipeline(paths.base, paths.identitynet, paths.adapter, device="cpu", **load_kwargs)
            pipe.set_progress_bar_config(disable=True)
            return pipe

        return self.once(("pipe", key), make)

    @property
    def parity_pipe(self):
        def make():
            from diffusers import ControlNetModel

            from instantid import StableDiffusionXLInstantIDPipeline

            pipe = StableDiffusionXLInstantIDPipeline.from_pretrained(
                self.parity / "base", controlnet=ControlNetModel.from_pretrained(self.parity / "ControlNetModel"))
            pipe.load_ip_adapter_instantid(self.parity / "ip-adapter.bin")
            pipe.set_progress_bar_config(disable=True)
            return pipe

        return self.once("parity", make)

    def embedding(self, name="grace_hopper"):
        return self.once(("emb", name), lambda: self.analyzer.detect(self.photo(name))[0].embedding)


CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


# ---- the drop-in pipeline on the official-parity fixture (image_embeds, as the released code is called)


def _parity_call(ctx, name, **extra):
    from PIL import Image

    spec = json.loads((ctx.parity / "cases.json").read_text())[name]
    call = {k: v for k, v in spec.items() if k not in ("seed", "generator")}
    call.update(extra)
    images = ctx.parity_pipe(image_embeds=np.load(ctx.parity / "face_embedding.npy"),
                             image=Image.open(ctx.parity / "kps.png"), generator=generator(spec["seed"]),
                             output_type="np", **call).images
    return {"images": as_arrays(images)}


@case
def parity_txt2img(ctx):
    return _parity_call(ctx, "txt2img")


@case
def parity_no_cfg_window(ctx):
    return _parity_call(ctx, "no_cfg_window")


@case
def parity_face_region_and_negative_noise(ctx):
    """Enhance face region (a box) and a noisy CFG negative, on the drop-in call."""
    return _parity_call(ctx, "txt2img", face_region_mask=(32, 24, 96, 112), negative_face_noise=0.5)


# ---- the library entry on the tiny SDXL family (dlib faces, real photos)


@case
def generate_lib(ctx):
    from instantid import generate_from_photos

    result = generate_from_photos(ctx.pipe(), ctx.photo("grace_hopper"), "a portrait", analyzer=ctx.analyzer,
                                  width=64, height=64, num_inference_steps=3, seed=1, output_type="np")
    return {"images": as_arrays(result.images)}


@case
def generate_lib_refs_pose_style(ctx):
    """Two references averaged, the pose from a group photo, a style, a negative prompt, 2 images, the
    adapter scale and IdentityNet window given."""
    from instantid import generate_from_photos

    result = generate_from_photos(ctx.pipe(), [ctx.photo("astronaut"), ctx.photo("grace_hopper")], "a portrait",
                                  analyzer=ctx.analyzer, pose_photo=ctx.photo("t1"), style="watercolor",
                                  negative_prompt="blurry", width=96, height=64, num_inference_steps=3, seed=2,
                                  num_images_per_prompt=2, ip_adapter_scale=0.6, control_guidance_end=0.7,
                                  output_type="np")
    return {"images": as_arrays(result.images)}


@case
def generate_lib_kps_face_index_noise(ctx):
    """Explicit keypoints, the 2nd-largest face of a group photo, negative_face_noise, guidance scale."""
    from instantid import generate_from_photos

    result = generate_from_photos(ctx.pipe(), ctx.photo("t1"), "a portrait", analyzer=ctx.analyzer, face_index=1,
                                  kps=KPS64.ravel().tolist(), width=64, height=64, num_inference_steps=3, seed=3,
                                  guidance_scale=3.0, negative_face_noise=0.3, output_type="np")
    return {"images": as_arrays(result.images)}


@case
def generate_lib_prompt_weighting(ctx):
    from instantid import generate_from_photos

    result = generate_from_photos(ctx.pipe(), ctx.photo("astronaut"), "a (red:1.4) portrait, (blurry)--",
                                  analyzer=ctx.analyzer, prompt_weighting=True, width=64, height=64,
                                  num_inference_steps=2, seed=4, output_type="np")
    return {"images": as_arrays(result.images)}


@case
def interpolation_series(ctx):
    from instantid import generate_from_photos

    result = generate_from_photos(ctx.pipe(), ctx.photo("grace_hopper"), "a portrait", analyzer=ctx.analyzer,
                                  interpolate=ctx.photo("tom_hanks"), weights=[0.0, 0.5, 1.0], width=64, height=64,
                                  num_inference_steps=2, seed=5, output_type="np")
    return {"images": as_arrays(result.images)}


@case
def yaw_series(ctx):
    from instantid import generate_from_photos

    result = generate_from_photos(ctx.pipe(), ctx.photo("astronaut"), "a portrait", analyzer=ctx.analyzer,
                                  yaw=[-25, 0, 25], width=64, height=64, num_inference_steps=2, seed=6,
                                  output_type="np")
    return {"images": as_arrays(result.images)}


@case
def generate_lib_face_detail(ctx):
    """generate with the face-detail pass on (PIL output: the pass pastes pixels)."""
    from instantid import generate_from_photos

    result = generate_from_photos(ctx.pipe(), ctx.photo("astronaut"), "a knight", analyzer=ctx.analyzer,
                                  width=128, height=128, num_inference_steps=3, seed=7, face_detail="on",
                                  face_detail_strength=0.5)
    return {"images": as_arrays(result.images)}


@case
def face_detail_passes(ctx):
    """The detail pass itself: one face, and two faces each with its own identity."""
    from PIL import Image

    from instantid.pipelines.face_detail import face_detail, face_detail_all

    scene = Image.open(ctx.photo("astronaut")).convert("RGB").resize((128, 128), Image.LANCZOS)
    fast = dict(num_inference_steps=3, guidance_scale=2.0, strength=0.6)
    one = face_detail(ctx.pipe(), scene, ctx.embedding(), KPS128, prompt="a portrait", generator=generator(0), **fast)
    image, _ = face_detail_all(ctx.pipe(), scene, [(ctx.embedding(), KPS128),
                                                   (ctx.embedding() * 0.5, KPS128 + [-36, 30])],
                               make_generator=lambda: generator(1), **fast)
    return {"one": np.asarray(one.image), "one_mask": one.repainted.mask, "two": np.asarray(image)}


# ---- regions and multi-identity


@case
def regions_dropin(ctx):
    """identity_regions on the drop-in call: two random identities in two boxes, one at scale 0.5."""
    from instantid import IdentityRegion
    from instantid.face.keypoints import draw_kps

    left, right = (0, 8, 32, 64), (32, 8, 64, 64)

    def kps_in(box):
        x1, y1, x2, y2 = box
        return KPS64 / 64 * [(x2 - x1), (y2 - y1)] + [x1, y1]

    faces = [np.random.default_rng(s).normal(size=128).astype(np.float32) * 3 for s in (1, 2)]
    regions = [IdentityRegion(left, embedding=faces[0], kps=kps_in(left)),
               IdentityRegion(right, embedding=faces[1], kps=kps_in(right), scale=0.5)]
    images = ctx.pipe()(prompt="two people", image_embeds=faces[0], image=draw_kps((64, 64), KPS64),
                        identity_regions=regions, width=64, height=64, num_inference_steps=2, guidance_scale=2.0,
                        generator=generator(0), output_type="np").images
    return {"images": as_arrays(images)}


@case
def face_region_tiny(ctx):
    from instantid.face.keypoints import draw_kps

    images = ctx.pipe()(prompt="a person", image_embeds=ctx.embedding(), image=draw_kps((64, 64), KPS64),
                        face_region_mask=(16, 16, 48, 56), width=64, height=64, num_inference_steps=2,
                        guidance_scale=2.0, generator=generator(0), output_type="np").images
    return {"images": as_arrays(images)}


@case
def multi_identity_boxes(ctx):
    from instantid import generate_multi_identity, identities_from_photos

    identities, size = identities_from_photos([ctx.photo("grace_hopper"), ctx.photo("tom_hanks")], ctx.analyzer,
                                              boxes=[(0, 0, 64, 128), (64, 0, 128, 128)], size=(128, 128),
                                              scale=[1.0, 0.7])
    result = generate_multi_identity(ctx.pipe(), identities, "two people", width=size[0], height=size[1],
                                     num_inference_steps=2, seed=8, output_type="np")
    return {"images": as_arrays(result.images)}


@case
def multi_identity_layout(ctx):
    """Places and poses from the six-person photo (large faces: no small-face retry)."""
    return _layout_case(ctx, ctx.photo("t1"))


def _layout_case(ctx, layout_photo):
    """Two identities placed and posed by the faces of `layout_photo`: the images and the keypoints used."""
    from instantid import generate_multi_identity, identities_from_photos

    identities, size = identities_from_photos([ctx.photo("grace_hopper"), ctx.photo("astronaut")], ctx.analyzer,
                                              layout_photo=layout_photo, size=(128, 96))
    result = generate_multi_identity(ctx.pipe(), identities, "two people", width=size[0], height=size[1],
                                     num_inference_steps=2, seed=9, output_type="np")
    return {"images": as_arrays(result.images),
            "kps": np.stack([np.asarray(i.kps, np.float64) for i in identities])}


@case
def multi_identity_layout_small_faces(ctx):
    """The six-person photo at 25%: normal detection finds 2 faces, the small-face retry 4 (the redesign's one
    face picker gives the layout the retry; before, the layout called analyzer.detect directly)."""
    from PIL import Image

    full = Image.open(ctx.photo("t1")).convert("RGB")
    return _layout_case(ctx, np.asarray(full.resize((full.width // 4, full.height // 4), Image.LANCZOS)))


@case
def multi_identity_face_detail(ctx):
    from instantid import generate_multi_identity, identities_from_photos

    identities, size = identities_from_photos([ctx.photo("grace_hopper"), ctx.photo("tom_hanks")], ctx.analyzer,
                                              boxes=[(0, 0, 64, 128), (64, 0, 128, 128)], size=(128, 128))
    result = generate_multi_identity(ctx.pipe(), identities, "two people", width=size[0], height=size[1],
                                     num_inference_steps=3, seed=10, face_detail="on", face_detail_strength=0.5)
    return {"images": as_arrays(result.images)}


# ---- img2img, inpainting, face swap


def _blocks():
    from PIL import Image

    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((8, 8, 3)).repeat(8, 0).repeat(8, 1) * 255).astype(np.uint8))


@case
def img2img(ctx):
    from instantid import StableDiffusionXLInstantIDImg2ImgPipeline
    from instantid.face.keypoints import draw_kps

    pipe = StableDiffusionXLInstantIDImg2ImgPipeline.from_pipe(ctx.pipe())
    images = pipe(prompt="a person", image=_blocks(), control_image=draw_kps((64, 64), KPS64),
                  image_embeds=ctx.embedding(), strength=0.6, num_inference_steps=4, guidance_scale=2.0,
                  generator=generator(0), output_type="np").images
    return {"images": as_arrays(images)}


@case
def inpaint(ctx):
    from PIL import Image

    from instantid import StableDiffusionXLInstantIDInpaintPipeline
    from instantid.face.keypoints import draw_kps

    pipe = StableDiffusionXLInstantIDInpaintPipeline.from_pipe(ctx.pipe())
    mask = np.zeros((64, 64), np.uint8)
    mask[16:54, 18:46] = 255
    images = pipe(prompt="a person", image=_blocks(), mask_image=Image.fromarray(mask),
                  control_image=draw_kps((64, 64), KPS64), image_embeds=ctx.embedding(), strength=0.8,
                  num_inference_steps=4, guidance_scale=2.0, generator=generator(0), output_type="np").images
    return {"images": as_arrays(images)}


@case
def swap_face_region(ctx):
    from instantid import swap_face

    result = swap_face(ctx.pipe(), [ctx.photo("grace_hopper")], ctx.photo("astronaut"), analyzer=ctx.analyzer,
                       working_side=64, num_inference_steps=2, guidance_scale=2.0, generator=generator(0))
    return {"image": np.asarray(result.image), "mask": np.asarray(result.mask), "painted": np.asarray(result.painted)}


@case
def swap_image_region(ctx):
    from instantid.pipelines.face_swap import swap_whole_image

    result = swap_whole_image(ctx.pipe(), [ctx.photo("grace_hopper")], ctx.photo("astronaut"), analyzer=ctx.analyzer,
                              width=64, height=64, strength=0.5, num_inference_steps=2, guidance_scale=2.0,
                              generator=generator(0), output_type="np")
    return {"images": as_arrays(result.images)}


# ---- extra ControlNets, LoRA, scheduler


@case
def extra_controlnet_canny_window(ctx):
    """A second ControlNet (canny of a real photo) beside IdentityNet, with its own window (idle steps skipped)."""
    from instantid import ExtraControl, generate_from_photos

    pipe = ctx.pipe("canny", controlnets=[ctx.tiny().identitynet])
    controls = [ExtraControl(image=ctx.photo("astronaut"), kind="canny", scale=0.4, start=0.0, end=0.5)]
    result = generate_from_photos(pipe, ctx.photo("grace_hopper"), "a portrait", analyzer=ctx.analyzer,
                                  controls=controls, width=64, height=64, num_inference_steps=4, seed=11,
                                  control_guidance_start=0.25, output_type="np")
    return {"images": as_arrays(result.images)}


@case
def extra_controlnet_dropin_lists(ctx):
    """The drop-in call with image/scale/window lists (IdentityNet first), the extra net in a late window."""
    from PIL import Image

    from instantid.face import load_image
    from instantid.face.keypoints import draw_kps
    from instantid.pipelines.conditions import canny_image

    pipe = ctx.pipe("canny", controlnets=[ctx.tiny().identitynet])
    canny = canny_image(load_image(ctx.photo("astronaut")), (64, 64))
    images = pipe(prompt="a portrait", image_embeds=ctx.embedding(), image=[draw_kps((64, 64), KPS64), canny],
                  controlnet_conditioning_scale=[0.8, 0.3], control_guidance_start=[0.0, 0.5],
                  control_guidance_end=[1.0, 1.0], width=64, height=64, num_inference_steps=4,
                  generator=generator(0), output_type="np").images
    return {"images": as_arrays(images), "canny": np.asarray(canny)}


@case
def lora_and_scheduler(ctx):
    from instantid import generate_from_photos

    pipe = ctx.pipe("lora", loras=[(str(ctx.lora()), 0.7)], scheduler="dpmpp_2m_karras")
    result = generate_from_photos(pipe, ctx.photo("grace_hopper"), "a portrait", analyzer=ctx.analyzer,
                                  width=64, height=64, num_inference_steps=3, seed=12, output_type="np")
    return {"images": as_arrays(result.images)}


# ---- the SD1.5 tiny family


@case
def sd15_generate(ctx):
    from instantid import generate_from_photos

    result = generate_from_photos(ctx.pipe("sd15"), ctx.photo("grace_hopper"), "a portrait", analyzer=ctx.analyzer,
                                  width=64, height=64, num_inference_steps=2, seed=13, output_type="np")
    return {"images": as_arrays(result.images)}


@case
def sd15_swap_and_img2img(ctx):
    from instantid import swap_face
    from instantid.pipelines.face_swap import swap_whole_image

    face = swap_face(ctx.pipe("sd15"), [ctx.photo("grace_hopper")], ctx.photo("astronaut"), analyzer=ctx.analyzer,
                     working_side=64, num_inference_steps=2, generator=generator(0))
    whole = swap_whole_image(ctx.pipe("sd15"), [ctx.photo("grace_hopper")], ctx.photo("astronaut"),
                             analyzer=ctx.analyzer, width=64, height=64, num_inference_steps=2, strength=0.5,
                             generator=generator(0), output_type="np")
    return {"face": np.asarray(face.image), "whole": as_arrays(whole.images)}


# ---- the command line (subprocesses: `python -m instantid ... --tiny`, PNG pixels)


def _cli(ctx, name, *args) -> dict:
    from PIL import Image

    folder = ctx.out / "cli" / name
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "XDG_CACHE_HOME": str(ctx.cache), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "instantid", *args, "--out", str(folder / "out.png")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} -> rc {done.returncode}\n{done.stderr[-3000:]}")
    arrays = {}
    for path in sorted(folder.glob("*.png")):
        image = Image.open(path)
        arrays[path.stem] = np.asarray(image)
        (folder / f"{path.stem}.parameters.json").write_text(image.text.get("parameters", "{}"))
    return arrays


@case
def cli_generate(ctx):
    return _cli(ctx, "cli_generate", "generate", "--tiny", "--face", str(ctx.photo("astronaut")),
                "--prompt", "a knight", "--steps", "3", "--seed", "5")


@case
def cli_generate_canny_interpolate(ctx):
    return _cli(ctx, "cli_generate_canny_interpolate", "generate", "--tiny", "--face", str(ctx.photo("grace_hopper")),
                "--prompt", "a portrait", "--canny", str(ctx.photo("astronaut")), "--canny-scale", "0.4",
                "--interpolate", str(ctx.photo("tom_hanks")), "--weights", "0,0.5,1", "--steps", "2", "--seed", "6",
                "--width", "64", "--height", "64")


@case
def cli_generate_yaw_detail(ctx):
    return _cli(ctx, "cli_generate_yaw_detail", "generate", "--tiny", "--face", str(ctx.photo("astronaut")),
                "--prompt", "a knight", "--yaw=-20,20", "--steps", "3", "--seed", "7",
                "--face-detail", "on", "--face-detail-strength", "0.5")


@case
def cli_swap(ctx):
    return _cli(ctx, "cli_swap", "swap", "--tiny", "--face", str(ctx.photo("grace_hopper")),
                "--target", str(ctx.photo("astronaut")), "--steps", "2", "--seed", "2")


@case
def cli_multi(ctx):
    return _cli(ctx, "cli_multi", "multi", "--tiny", "--face", str(ctx.photo("grace_hopper")),
                "--face", str(ctx.photo("tom_hanks")), "--box", "0,0,64,128", "--box", "64,0,128,128",
                "--prompt", "two people", "--steps", "3", "--seed", "3", "--face-detail", "on",
                "--face-detail-strength", "0.5")


# ---- the HTTP service (`instantid serve --tiny` on a loopback port; the result PNGs' pixels)


@case
def service_images(ctx):
    import io

    import requests
    from PIL import Image

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    state = ctx.out / "serve-state"
    log = ctx.out / "serve.log"
    env = {**os.environ, "XDG_CACHE_HOME": str(ctx.cache), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "instantid", "serve", "--tiny", "--host", "127.0.0.1",
                               "--port", str(port), "--state-dir", str(state), "--controlnet", "canny",
                               "--lora", f"{ctx.lora()}:0.5"], stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                              env=env)
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"server exited {server.returncode}: {log.read_text()[-3000:]}")
            try:
                if requests.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(log.read_text()[-3000:])
            time.sleep(0.3)

        fast = {"num_inference_steps": "2", "width": "64", "height": "64"}

        def form(faces, files=(), **fields):
            parts = [("face", (p.name, p.read_bytes())) for p in faces]
            parts += [(name, (p.name, p.read_bytes())) for name, p in files]
            data = {"prompt": "a portrait", **fast, **{k: str(v) for k, v in fields.items()}}
            return requests.post(url + "/v1/generations", data=data, files=parts, timeout=60)

        def as_json(faces, **fields):
            body = {"face": [base64.b64encode(p.read_bytes()).decode() for p in faces], "prompt": "a chef",
                    "num_inference_steps": 2, "width": 64, "height": 64, **fields}
            return requests.post(url + "/v1/generations", json=body, timeout=60)

        p = ctx.photo
        jobs = {
            "plain": form([p("astronaut")], prompt="an astronaut in a garden", seed=7, num_inference_steps=3),
            "refs_pose_2images": form([p("astronaut"), p("grace_hopper")], [("pose", p("t1"))], seed=1,
                                      num_images_per_prompt=2),
            "json_style": as_json([p("astronaut")], style="watercolor", seed=2),
            "canny": form([p("grace_hopper")], [("canny", p("astronaut"))], canny_scale=0.4, seed=3),
            "lora_scheduler_face_index": form([p("t1")], loras="sketch:0.9", scheduler="euler_a", face_index=1,
                                              seed=4),
            "face_detail": form([p("astronaut")], face_detail="on", face_detail_strength=0.5,
                                num_inference_steps=3, width=128, height=128, seed=5),
            "knobs": form([p("grace_hopper")], guidance_scale=3.5, ip_adapter_scale=0.6,
                          controlnet_conditioning_scale=0.7, control_guidance_end=0.8, negative_prompt="ugly",
                          negative_face_noise=0.2, seed=6),
        }
        arrays = {}
        for name, response in jobs.items():
            if response.status_code != 202:
                raise RuntimeError(f"{name}: {response.status_code} {response.text}")
            job_id = response.json()["id"]
            deadline = time.monotonic() + 300
            while True:
                job = requests.get(f"{url}/v1/generations/{job_id}", timeout=10).json()
                if job["status"] in ("done", "failed", "cancelled"):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: still {job['status']}")
                time.sleep(0.1)
            if job["status"] != "done":
                raise RuntimeError(f"{name}: {job}")
            for n, image_url in enumerate(job["images"]):
                png = requests.get(url + image_url, timeout=10).content
                arrays[f"{name}_{n}"] = np.asarray(Image.open(io.BytesIO(png)))
            (ctx.out / f"service_{name}.parameters.json").write_text(json.dumps(job["parameters"], indent=1))
        return arrays
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# ---- running and comparing


def run(args) -> int:
    import torch

    import instantid

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["XDG_CACHE_HOME"] = str(cache)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for logging in (diffusers_logging, transformers_logging):
        logging.set_verbosity_error()
        logging.disable_progress_bar()
    torch.manual_seed(0)
    ctx = Context(out, cache, Path(args.parity))
    names = args.only.split(",") if args.only else list(CASES)
    print(f"instantid from {instantid.__file__}; torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
          flush=True)
    # the CLI and service cases run `python -m instantid` in subprocesses, with this environment's PYTHONPATH
    child = subprocess.run([sys.executable, "-c", "import instantid; print(instantid.__file__)"], capture_output=True,
                           text=True).stdout.strip()
    print(f"subprocesses import instantid from {child}", flush=True)
    record = {"instantid": instantid.__file__, "subprocess_instantid": child, "torch": torch.__version__, "cases": {}}
    for name in names:
        start = time.perf_counter()
        try:
            arrays = CASES[name](ctx)
            np.savez(out / f"{name}.npz", **arrays)
            entry = {"ok": True, "keys": {k: [list(v.shape), str(v.dtype)] for k, v in arrays.items()}}
        except Exception as err:  # a case that fails is recorded and compared as missing
            (out / f"{name}.npz").unlink(missing_ok=True)
            entry = {"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        entry["seconds"] = round(time.perf_counter() - start, 1)
        record["cases"][name] = entry
        print(f"{name:40s} {'ok' if entry['ok'] else 'FAILED: ' + entry['error'][:200]} ({entry['seconds']} s)",
              flush=True)
        (out / "run.json").write_text(json.dumps(record, indent=1))
    return 0 if all(e["ok"] for e in record["cases"].values()) else 1


def compare(old: Path, new: Path) -> int:
    names = sorted({p.stem for p in old.glob("*.npz")} | {p.stem for p in new.glob("*.npz")},
                   key=lambda n: list(CASES).index(n) if n in CASES else len(CASES))
    errors = {}
    for side in (old, new):
        run_file = side / "run.json"
        if run_file.is_file():
            for name, entry in json.loads(run_file.read_text())["cases"].items():
                if not entry["ok"]:
                    errors.setdefault(name, []).append(f"{side.name}: {entry['error'][:120]}")
                    if name not in names:
                        names.append(name)
    print(f"{'case':42s} {'equal':6s} {'max abs diff':>14s}  notes")
    differing = 0
    for name in names:
        a_path, b_path = old / f"{name}.npz", new / f"{name}.npz"
        if not (a_path.is_file() and b_path.is_file()):
            differing += 1
            print(f"{name:42s} {'-':6s} {'-':>14s}  missing: " + "; ".join(errors.get(name, ["no output"])))
            continue
        a, b = np.load(a_path), np.load(b_path)
        notes, worst, equal = [], 0.0, True
        for key in sorted(set(a.files) | set(b.files)):
            if key not in a.files or key not in b.files:
                equal = False
                notes.append(f"{key}: only in {'old' if key in a.files else 'new'}")
                continue
            x, y = a[key], b[key]
            if x.shape != y.shape or x.dtype != y.dtype:
                equal = False
                notes.append(f"{key}: {x.shape} {x.dtype} vs {y.shape} {y.dtype}")
                continue
            if not np.array_equal(x, y):
                equal = False
                diff = float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max())
                worst = max(worst, diff)
                notes.append(f"{key}: max {diff:.3g}, {np.mean(x != y):.1%} of values differ")
        differing += not equal
        print(f"{name:42s} {'yes' if equal else 'NO':6s} {worst:14.6g}  {'; '.join(notes)}")
    print(f"{len(names) - differing} of {len(names)} cases bit-identical")
    return 1 if differing else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="folder for this version's outputs (one .npz per case, run.json)")
    parser.add_argument("--cache", help="folder for the tiny models, shared by both runs (default OUT/cache)")
    parser.add_argument("--parity", default=str(DEFAULT_PARITY), help=f"official-parity fixture (default {DEFAULT_PARITY})")
    parser.add_argument("--only", help="comma-separated case names")
    parser.add_argument("--list", action="store_true", help="name the cases")
    parser.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="compare two output folders")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(CASES))
        return 0
    if args.compare:
        return compare(Path(args.compare[0]), Path(args.compare[1]))
    if not args.out:
        parser.error("give --out DIR (or --compare OLD NEW, or --list)")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
