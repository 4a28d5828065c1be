from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class ReviewConfig(AppConfig):
    name = "review"
    verbose_name = "Review"

    def ready(self) -> None:
        # Each web process's snapshot of live copy hears of every save through these
        # (review/delivery.py); bulk writes call delivery.live_changed() themselves.
        from generation.models import Product, Prompt, Segment, Variant
        from review import delivery

        post_save.connect(delivery.variant_saved, sender=Variant, dispatch_uid="live-variant")
        for model in (Product, Prompt, Segment):
            for signal in (post_save, post_delete):
                signal.connect(
                    delivery.catalog_changed, sender=model, dispatch_uid=f"live-{model.__name__}"
                )
