import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hyperpers.settings")

app = Celery("hyperpers")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _warm_up(**kwargs) -> None:
    # Each pool process loads the language model before its first task, not during.
    from generation.checks import warm_up

    warm_up()
