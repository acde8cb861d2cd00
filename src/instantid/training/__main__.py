"""`python -m instantid.training --data_dir ... --output_dir ...` (also under `accelerate launch -m`)."""

import logging

from . import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main()
