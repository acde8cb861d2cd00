"""Time face analysis the way a generation run meets it: the first photo (models load), a warm
analyser, and a repeat of the same photo through the content cache."""

from __future__ import annotations

import logging
import statistics
import time

logger = logging.getLogger(__name__)

WARM_REPEATS = 3


def time_face_analysis(photo, backend: str, repeats: int = WARM_REPEATS, model_dir=None) -> dict:
    """Seconds for: first detect (incl. model loading), warm detects (median), cached repeats (median)."""
    from ..face.cache import CachedFaceAnalyzer
    from ..face import get_face_analyzer

    analyzer = get_face_analyzer(backend, **({"model_dir": model_dir} if model_dir else {}))
    start = time.perf_counter()
    faces = analyzer.detect(photo)
    first = time.perf_counter() - start
    warm = []
    for _ in range(repeats):
        start = time.perf_counter()
        analyzer.detect(photo)
        warm.append(time.perf_counter() - start)
    cached = CachedFaceAnalyzer(analyzer)
    cached.detect(photo)  # fills the cache
    hits = []
    for _ in range(repeats):
        start = time.perf_counter()
        cached.detect(photo)
        hits.append(time.perf_counter() - start)
    return {"backend": backend, "photo": str(photo), "faces": len(faces),
            "first_s": round(first, 4), "warm_median_s": round(statistics.median(warm), 4),
            "cached_median_s": round(statistics.median(hits), 5),
            "embedding": faces[0].embedding if faces else None}
