"""The delivery REST API: live copy for delivery systems (web shops, apps, journeys)."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generation.models import Product, Prompt, Segment, Variant


class LiveQuerySerializer(serializers.Serializer):
    prompt = serializers.SlugField(help_text="The prompt's slug, e.g. product-page")
    product = serializers.CharField(max_length=64, help_text="The product's SKU")
    segment = serializers.SlugField(max_length=200, help_text="The segment's slug")


class LiveView(APIView):
    """GET the live copy of a placement: the published variant, or the base copy."""

    def get(self, request: Request) -> Response:
        query = LiveQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        slug, sku, segment_slug = (
            query.validated_data[k] for k in ("prompt", "product", "segment")
        )
        prompt = Prompt.objects.filter(slug=slug).first()
        if prompt is None:
            raise NotFound(f"Unknown prompt '{slug}'")
        product = Product.objects.filter(sku=sku).first()
        if product is None:
            raise NotFound(f"Unknown product '{sku}'")
        segment = Segment.objects.filter(slug=segment_slug).first()
        if segment is None:
            raise NotFound(f"Unknown segment '{segment_slug}'")

        live = (
            Variant.objects.published()
            .for_slot(prompt=prompt, product=product, segment=segment)
            .select_related("prompt_version")
            .first()
        )
        body = {"prompt": prompt.slug, "product": product.sku, "segment": segment.slug}
        if live is None:
            return Response(
                {**body, "fallback": True, "variant_id": None, "text": product.description}
            )
        return Response(
            {
                **body,
                "fallback": False,
                "variant_id": live.pk,
                "prompt_version": live.prompt_version.number,
                "text": live.text,
            }
        )
