from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class ReviewConfig(AppConfig):
    name = "review"
    verbose_name = "Review"

    def ready(self) -> None:
        # Every way generation tells review something, in one place: its own signals
        # (generation/signals.py) and the saves of its models.
        from generation import signals
        from generation.models import Product, Prompt, Segment, Variant
        from review import delivery, policy

        # Fresh copy: the prompt's review policy decides who reads it.
        signals.variants_written.connect(policy.variants_written, dispatch_uid="review-policy")
        # Each web process's snapshot of live copy hears of every save, and of bulk
        # writes (imports, prompt settings) through live_copy_changed.
        signals.live_copy_changed.connect(delivery.live_copy_changed, dispatch_uid="live-bulk")

        post_save.connect(delivery.variant_saved, sender=Variant, dispatch_uid="live-variant")
        for model in (Product, Prompt, Segment):
            for signal in (post_save, post_delete):
                signal.connect(
                    delivery.catalog_changed, sender=model, dispatch_uid=f"live-{model.__name__}"
                )
