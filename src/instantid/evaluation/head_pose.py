"""Head pose (yaw, pitch, roll in degrees) from the five face keypoints, and pose differences.

A generic face (eye centres, nose tip, mouth corners; millimetres, an average adult's proportions)
is fitted to the keypoints with a perspective-n-point solve (OpenCV's SQPnP), with a camera whose
focal length is the image's long side. Five points and a generic face give a rough pose (a few
degrees): enough to tell a copied pose from a new one, not for measurement.
Signs: yaw > 0 turns the nose toward the image's right, pitch > 0 tilts the nose up, roll > 0 turns
the face clockwise on screen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Generic face in OpenCV's camera axes (x right, y down, z away from the camera), nose tip at 0.
# Rows in KEYPOINT_NAMES order: left eye, right eye, nose, left mouth corner, right mouth corner.
GENERIC_FACE_MM = np.array([
    [-31.0, -32.0, 28.0],
    [31.0, -32.0, 28.0],
    [0.0, 0.0, 0.0],
    [-24.0, 30.0, 24.0],
    [24.0, 30.0, 24.0],
])


@dataclass(frozen=True)
class HeadPose:
    yaw: float
    pitch: float
    roll: float

    def difference(self, other: "HeadPose") -> dict[str, float]:
        """Absolute angle differences, and their root sum of squares ("pose change")."""
        d = {"yaw": abs(self.yaw - other.yaw), "pitch": abs(self.pitch - other.pitch),
             "roll": abs(_wrap(self.roll - other.roll))}
        d["total"] = math.sqrt(sum(v * v for v in d.values()))
        return d


def _wrap(degrees: float) -> float:
    return (degrees + 180.0) % 360.0 - 180.0


def camera_matrix(image_size: tuple[int, int]) -> np.ndarray:
    width, height = image_size
    focal = float(max(width, height))
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def rotation_from_angles(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation (face -> camera axes) for angles in degrees, in this module's sign conventions."""
    y, p, r = (math.radians(v) for v in (-yaw, -pitch, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def angles_from_rotation(rotation: np.ndarray) -> HeadPose:
    """Inverse of rotation_from_angles."""
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, -rotation[2, 0]))))
    pitch = math.degrees(math.atan2(rotation[2, 1], rotation[2, 2]))
    roll = math.degrees(math.atan2(rotation[1, 0], rotation[0, 0]))
    return HeadPose(yaw=-yaw, pitch=-pitch, roll=roll)


def project_generic_face(pose: HeadPose, image_size: tuple[int, int], distance_mm: float = 600.0,
                         centre: tuple[float, float] | None = None) -> np.ndarray:
    """[5, 2] keypoints of the generic face seen at `pose` (for tests and synthetic poses)."""
    import cv2

    rotation = rotation_from_angles(pose.yaw, pose.pitch, pose.roll)
    k = camera_matrix(image_size)
    cx, cy = centre if centre is not None else (image_size[0] / 2, image_size[1] / 2)
    tvec = np.array([(cx - k[0, 2]) * distance_mm / k[0, 0], (cy - k[1, 2]) * distance_mm / k[1, 1], distance_mm])
    points, _ = cv2.projectPoints(GENERIC_FACE_MM, cv2.Rodrigues(rotation)[0], tvec, k, None)
    return points.reshape(5, 2)


def head_pose(kps: np.ndarray, image_size: tuple[int, int]) -> HeadPose:
    """Yaw, pitch and roll of a face from its [5, 2] keypoints in an image of `image_size` (w, h)."""
    import cv2

    points = np.ascontiguousarray(np.asarray(kps, dtype=np.float64).reshape(5, 1, 2))
    ok, rvec, _ = cv2.solvePnP(GENERIC_FACE_MM.reshape(5, 1, 3), points, camera_matrix(image_size), None,
                               flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        raise ValueError("head pose: the keypoints could not be fitted (degenerate layout)")
    return angles_from_rotation(cv2.Rodrigues(rvec)[0])
