import pytest

from instantid.pipelines.sizing import default_output_size


@pytest.mark.parametrize("size, expected", [
    ((128, 128), (128, 128)),        # small images keep their size (released behaviour)
    ((1024, 1024), (1024, 1024)),
    ((4000, 3000), (1280, 960)),     # long side capped at 1280
    ((3000, 4000), (960, 1280)),
    ((1000, 750), (960, 704)),       # multiples of 64
    ((20000, 100), (1280, 64)),      # never below one block
])
def test_default_output_size(size, expected):
    width, height = default_output_size(size)
    assert (width, height) == expected
    assert width % 64 == 0 and height % 64 == 0 and max(width, height) <= 1280


def test_default_output_size_rejects_empty():
    with pytest.raises(ValueError):
        default_output_size((0, 10))
