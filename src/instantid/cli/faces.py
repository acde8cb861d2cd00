"""`instantid faces`: list the faces in a photo and optionally draw one face's keypoint image."""

from __future__ import annotations

import argparse

EXAMPLE = """\
The default backend is dlib: it works offline with no model download. Use
--backend antelopev2 to see the faces the released InstantID weights would use
(needs the antelopev2 models; see --face-models).

examples:
  instantid faces photo.jpg
  instantid faces group.jpg --json
  instantid faces photo.jpg --kps-out kps.png            # keypoints of the largest face
  instantid faces group.jpg --index 2 --kps-out kps.png  # the third-largest face
  instantid faces photo.jpg --backend antelopev2 --face-models ~/models
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "faces",
        help="list the faces in a photo; draw a face's keypoint image",
        description="List the faces found in IMAGE, largest first (index 0 is the face InstantID uses).",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", metavar="IMAGE", help="photo file (JPEG, PNG, ...)")
    parser.add_argument(
        "--backend",
        choices=("dlib", "antelopev2"),
        default="dlib",
        help="face analyzer (default: dlib, offline; antelopev2 matches the released weights)",
    )
    parser.add_argument(
        "--face-models",
        metavar="DIR",
        help="folder with the backend's model files. antelopev2: DIR/models/antelopev2/*.onnx or "
        "DIR/*.onnx (default: $INSTANTID_FACE_MODELS, then the Hugging Face cache); dlib: the .dat "
        "files (default: the face_recognition_models package)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list of faces, largest first")
    parser.add_argument("--kps-out", metavar="PATH",
                        help="write the chosen face's keypoint image here (.png, .jpg or .webp; the folder must exist)")
    parser.add_argument("--index", type=int, default=0, metavar="N", help="face to draw, 0 = largest (default)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import json

    from ..face import draw_kps, get_face_analyzer, get_reference_face
    from ..face.image import image_size
    from .checks import check_faces_args

    check_faces_args(args)  # refusals before the analyzer loads
    size = image_size(args.image)  # also fails early, with a clear message, on unreadable files
    options = {"model_dir": args.face_models} if args.face_models else {}
    analyzer = get_face_analyzer(args.backend, **options)
    faces = analyzer.detect(args.image)

    if args.json:
        print(json.dumps([face.to_dict() for face in faces], indent=2))
    else:
        _print_table(args.image, args.backend, faces, size)

    if args.kps_out:
        face = get_reference_face(args.image, index=args.index, analyzer=_FacesAlreadyFound(faces))
        from ..checks import write_atomically

        kps_image = draw_kps(size, face.kps)
        write_atomically(args.kps_out, lambda path: kps_image.save(path), "--kps-out file")
        if not args.json:
            print(f"wrote the keypoint image of face {args.index} ({size[0]}x{size[1]}) to {args.kps_out}")
    return 0


class _FacesAlreadyFound:
    """An analyzer that returns faces already found, so get_reference_face's checks reuse them."""

    def __init__(self, faces):
        self.faces = faces

    def detect(self, image):
        return self.faces


def _print_table(image, backend: str, faces, size: tuple[int, int]) -> None:
    print(f"{len(faces)} face(s) in {image} ({size[0]}x{size[1]}, backend {backend}), largest first:")
    for index, face in enumerate(faces):
        box = ", ".join(f"{v:.0f}" for v in face.bbox)
        kps = " ".join(f"({x:.0f},{y:.0f})" for x, y in face.kps)
        print(f"  [{index}] box [{box}]  score {face.score:.2f}  kps {kps}")
