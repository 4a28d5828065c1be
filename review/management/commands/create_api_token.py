"""Create an API token for a delivery system and print its key (shown only this once)."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from review.auth import api_token_create
from review.models import ApiToken


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="Who uses it, e.g. 'web shop (prod)'")
        parser.add_argument("--kind", choices=ApiToken.Kind.values, default=ApiToken.Kind.READ)
        parser.add_argument("--rate", type=int, default=None, help="Requests a minute")

    def handle(self, *args, name: str, kind: str, rate: int | None, **options) -> None:
        try:
            token, key = api_token_create(name=name, kind=kind, rate_per_minute=rate)
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            ) from exc
        self.stderr.write(f"Created {token}. The key is printed once; it is stored as a hash.")
        self.stdout.write(key)
