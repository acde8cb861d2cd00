"""Geometry of the huge test photo (the `huge_jpeg` fixture in conftest.py).

A module of its own: tests cannot import these from `conftest`, since tests/serving has a conftest too and
whichever was imported last answers to that name.
"""

HUGE_SIDE = 20000
# Where the (12x enlarged) astronaut sits inside the huge photo, and its size.
HUGE_PASTE_AT = (7000, 9000)
HUGE_PASTE_SIDE = 512 * 12
