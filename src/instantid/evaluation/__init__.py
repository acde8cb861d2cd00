"""Scoring generated images against reference photos (`instantid eval`).

Extractors turn images into features: face_features.py (face found, identity embedding, keypoints;
one extractor per recognizer, cached per image content by face/cache.py) and clip_features.py
(CLIP image/text features, only from a model already on disk). metrics.py and head_pose.py are pure
functions over those features. scoring.py ties them into one row per image plus aggregates;
report.py and plots.py write CSV, markdown and figures.
"""
