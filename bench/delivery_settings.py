"""Settings of the delivery bench's server: the project's, plus a bare view to compare with.

`bench/delivery.py` runs gunicorn with these, so that the live endpoint and the bare
view are served by the same processes through the same middleware in the same run.
"""

from hyperpers.settings import *  # noqa: F403

ROOT_URLCONF = "bench.delivery_urls"
