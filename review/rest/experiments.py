"""Experiments over REST: list, start, read with their analysis, stop (promoting a
variant or not), add an arm, pause and resume one.

Delivery systems and dashboards read with any API token; starting and steering takes
a write token or a marketing lead (or staff), as the pages do. Every write is a
service of review/services/experiments.py, which refuses bad input with the field
named (review.rest.exception_handler answers it: 400, 409 for a slot that runs one
already) and writes nothing.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generation.models import Variant
from hyperpers.errors import JSONParser
from review.auth import TokenRateThrottle, is_person, request_token
from review.experiments import allocation
from review.models import ApiToken, Experiment, ExperimentArm
from review.permissions import ReviewerReadsLeadWrites
from review.services import experiments as svc

_ID_MAX = 2**63 - 1


class ExperimentAccess(ReviewerReadsLeadWrites):
    """Reading: any API token, and reviewers. Starting and steering: write tokens,
    and marketing leads and staff."""

    def has_permission(self, request: Request, view) -> bool:
        token = request_token(request)
        if token is None:
            return super().has_permission(request, view)
        if request.method in SAFE_METHODS:
            return True
        self.message = "Starting and steering experiments needs a write token."
        return token.kind == ApiToken.Kind.WRITE


def _user(request: Request) -> User | None:
    """Who the audit trail names: the person, or nobody for an API token."""
    return request.user if is_person(request) and isinstance(request.user, User) else None


def _finite(value: float | None) -> float | None:
    """JSON has no infinity: a statistic that is infinite (an arm served with share 0)
    is said as null, beside the verdict that explains it."""
    return value if value is not None and math.isfinite(value) else None


# --- what is sent -----------------------------------------------------------------------


class ExperimentStartSerializer(serializers.Serializer):
    variants = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=_ID_MAX),
        max_length=allocation.MAX_ARMS,
        help_text="Approved variants of one segment slot (ids); the slot's live variant "
        f"joins whether listed or not. At most {allocation.MAX_ARMS}.",
    )
    shares = serializers.DictField(
        child=serializers.FloatField(),
        required=False,
        help_text='Each arm\'s share by key ("control", "v<variant id>"), in percent or as '
        "fractions, summing to 100%; default: the control's share, the rest split equally",
    )
    allocation = serializers.ChoiceField(Experiment.Allocation.choices, required=False)
    metric = serializers.ChoiceField(Experiment.Metric.choices, required=False)
    correction = serializers.ChoiceField(Experiment.Correction.choices, required=False)
    control_share = serializers.FloatField(
        required=False, help_text="The base copy's share, a fraction (default 0.10)"
    )
    floor = serializers.FloatField(
        required=False, help_text="The least share a variant keeps under a bandit (0.01)"
    )
    cadence_minutes = serializers.IntegerField(
        required=False, help_text="How often a bandit recomputes the shares (15)"
    )
    min_exposures = serializers.IntegerField(
        required=False, help_text="Visitors every arm needs before a winner is proposed (1000)"
    )
    auto_pause_losers = serializers.BooleanField(required=False)
    auto_promote = serializers.BooleanField(required=False)

    def validate_shares(self, shares: dict[str, float]) -> dict[str, float]:
        if len(shares) > allocation.MAX_ARMS + 1:
            raise ValidationError(f"At most {allocation.MAX_ARMS + 1} arms, the control included")
        return shares

    def settings(self) -> svc.Settings:
        names = svc.Settings.__dataclass_fields__
        return svc.Settings(**{k: v for k, v in self.validated_data.items() if k in names})


class ExperimentStopSerializer(serializers.Serializer):
    promote = serializers.IntegerField(
        min_value=1,
        max_value=_ID_MAX,
        required=False,
        allow_null=True,
        help_text="A variant of the experiment to publish as the slot's copy; default: "
        "keep the live one",
    )
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True)


class ChallengersSerializer(serializers.Serializer):
    budget = serializers.DecimalField(
        max_digits=14,
        decimal_places=6,
        min_value=Decimal("0.000001"),
        required=False,
        allow_null=True,
        help_text="The run's budget in US dollars; default: none",
    )


class ChallengersResultSerializer(serializers.Serializer):
    prompt_version = serializers.IntegerField(help_text="The new version's number")
    run = serializers.IntegerField(help_text="The run writing the challenger (GET /runs/<id>/)")
    example = serializers.IntegerField(help_text="The variant whose copy it learns from")


class ArmAddSerializer(serializers.Serializer):
    variant = serializers.IntegerField(
        min_value=1, max_value=_ID_MAX, help_text="An approved variant of the same slot"
    )


class ArmPauseSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True)


class ExperimentListQuerySerializer(serializers.Serializer):
    prompt = serializers.SlugField(max_length=100, required=False, help_text="A prompt's slug")
    status = serializers.ChoiceField(Experiment.Status.choices, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=200, default=50)


# --- what is answered -------------------------------------------------------------------


@extend_schema_field(
    {"type": "string", "description": "One of: " + ", ".join(Experiment.Status.values)}
)
class ExperimentStatusField(serializers.CharField):
    pass


class ExperimentSerializer(serializers.ModelSerializer):
    status = ExperimentStatusField()
    prompt = serializers.CharField(source="prompt.slug")
    product = serializers.CharField(source="product.sku")
    segment = serializers.CharField(source="segment.slug")
    started_by = serializers.CharField(source="started_by.username", allow_null=True)
    stopped_by = serializers.CharField(source="stopped_by.username", allow_null=True)
    proposed = serializers.IntegerField(source="proposed_id", allow_null=True)
    winner = serializers.IntegerField(source="winner_id", allow_null=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = Experiment
        fields = [
            "id",
            "url",
            "status",
            "prompt",
            "product",
            "segment",
            "language",
            "allocation",
            "metric",
            "correction",
            "control_share",
            "floor",
            "cadence_minutes",
            "min_exposures",
            "auto_pause_losers",
            "auto_promote",
            "started",
            "started_by",
            "stopped",
            "stopped_by",
            "stop_reason",
            "proposed",
            "winner",
            "analysed",
            "sample_ratio_mismatch",
            "analysis_note",
        ]

    def get_url(self, experiment: Experiment) -> str:
        return reverse("api-experiment", args=[experiment.pk])


class ExperimentListSerializer(serializers.Serializer):
    results = ExperimentSerializer(many=True)


class ComparisonSerializer(serializers.Serializer):
    difference = serializers.FloatField(allow_null=True, help_text="Rate − the control's rate")
    lift = serializers.FloatField(allow_null=True, help_text="Rate ÷ the control's rate − 1")
    enough_data = serializers.BooleanField()
    sequential_p = serializers.FloatField(help_text="Always-valid, before correction")
    adjusted_p = serializers.FloatField(help_text="Corrected across the experiment's arms")
    low = serializers.FloatField(
        allow_null=True, help_text="The corrected, sequential interval of the difference"
    )
    high = serializers.FloatField(allow_null=True)
    fixed_p = serializers.FloatField(
        allow_null=True, help_text="For reference: the fixed-horizon z-test, valid at one look"
    )
    fixed_low = serializers.FloatField(allow_null=True)
    fixed_high = serializers.FloatField(allow_null=True)
    significant = serializers.BooleanField()


class ArmSerializer(serializers.Serializer):
    key = serializers.CharField(help_text='"control" (the base copy) or "v<variant id>"')
    variant = serializers.IntegerField(allow_null=True)
    text = serializers.CharField(help_text="The copy this arm serves")
    status = serializers.CharField(help_text="active or paused")
    pause_reason = serializers.CharField(allow_blank=True)
    share = serializers.FloatField(help_text="Its share of the traffic now")
    visitors = serializers.IntegerField(help_text="Randomized visitors shown it")
    successes = serializers.IntegerField(help_text="Of them, who clicked (or converted)")
    rate = serializers.FloatField(allow_null=True)
    comparison = ComparisonSerializer(allow_null=True, help_text="Against the control")
    probability_best = serializers.FloatField(allow_null=True)
    expected_loss = serializers.FloatField(allow_null=True)
    decision = serializers.CharField(allow_null=True)
    decision_reason = serializers.CharField(allow_null=True)


class SampleRatioSerializer(serializers.Serializer):
    statistic = serializers.FloatField(allow_null=True, help_text="Pearson's chi-squared")
    p_value = serializers.FloatField(allow_null=True)
    mismatch = serializers.BooleanField(help_text="True blocks every automatic decision")
    enough_data = serializers.BooleanField()
    observed = serializers.DictField(child=serializers.FloatField())
    expected = serializers.DictField(child=serializers.FloatField())


class WeightsSerializer(serializers.Serializer):
    weights = serializers.DictField(child=serializers.FloatField())
    effective_from = serializers.DateTimeField()
    reason = serializers.CharField(allow_blank=True)


class ExperimentDetailSerializer(ExperimentSerializer):
    arms = ArmSerializer(many=True)
    non_randomized = serializers.IntegerField(
        help_text="Impressions without a visitor: served the live variant, not compared"
    )
    sample_ratio = SampleRatioSerializer(allow_null=True, help_text="null before any visitor")
    weights_history = WeightsSerializer(many=True, help_text="Newest first")

    class Meta(ExperimentSerializer.Meta):
        fields = [
            *ExperimentSerializer.Meta.fields,
            "arms",
            "non_randomized",
            "sample_ratio",
            "weights_history",
        ]


def _arm(row: svc.ArmReport, base_copy: str) -> dict[str, Any]:
    arm, c, post, decision = row.arm, row.comparison, row.posterior, row.decision
    return {
        "key": arm.key,
        "variant": arm.variant_id,
        "text": arm.variant.text if arm.variant is not None else base_copy,
        "status": arm.status,
        "pause_reason": arm.pause_reason,
        "share": row.share,
        "visitors": row.counts.exposures,
        "successes": row.counts.successes,
        "rate": row.counts.rate,
        "comparison": None
        if c is None
        else {
            "difference": _finite(c.difference),
            "lift": _finite(c.lift),
            "enough_data": c.enough_data,
            "sequential_p": c.sequential_p,
            "adjusted_p": c.adjusted_p,
            "low": _finite(c.low),
            "high": _finite(c.high),
            "fixed_p": _finite(c.fixed_p),
            "fixed_low": _finite(c.fixed_low),
            "fixed_high": _finite(c.fixed_high),
            "significant": c.significant,
        },
        "probability_best": post.probability_best if post else None,
        "expected_loss": post.expected_loss if post else None,
        "decision": str(decision.decision) if decision else None,
        "decision_reason": decision.reason if decision else None,
    }


def experiment_detail(experiment: Experiment) -> dict[str, Any]:
    experiment = Experiment.objects.select_related(*_RELATED).get(pk=experiment.pk)
    report = svc.experiment_report(experiment)
    ratio = report.analysis.sample_ratio if report.analysis else None
    _name, base_copy, _language = experiment.product.base_copy(experiment.language)
    data = {
        **ExperimentSerializer(experiment).data,
        "arms": [_arm(row, base_copy) for row in report.arms],
        "non_randomized": report.counts.non_randomized,
        "sample_ratio": None
        if ratio is None
        else {
            "statistic": _finite(ratio.statistic),
            "p_value": ratio.p_value,
            "mismatch": ratio.mismatch,
            "enough_data": ratio.enough_data,
            "observed": ratio.observed,
            "expected": ratio.expected,
        },
        "weights_history": WeightsSerializer(
            experiment.weights.order_by("-effective_from", "-id")[:100], many=True
        ).data,
    }
    return data


_RELATED = ("prompt", "product", "segment", "started_by", "stopped_by")
_400 = OpenApiResponse(description="A field is wrong; the answer names it, and nothing changed")
_403 = OpenApiResponse(
    description="Reading: not a reviewer nor an API token; writing: not a marketing lead, "
    "staff, or a write token"
)
_404 = OpenApiResponse(description="No such experiment (or arm)")
_WRITES = "A write token, or a marketing lead or staff."
_READS = "Any API token, or a reviewer."


class _ExperimentView(APIView):
    parser_classes = [JSONParser]
    permission_classes = [ExperimentAccess]
    throttle_classes = [TokenRateThrottle]

    def _experiment(self, pk: int) -> Experiment:
        return get_object_or_404(Experiment, pk=pk)

    def _arm(self, experiment: Experiment, key: str) -> ExperimentArm:
        for arm in experiment.arms.all():
            if arm.key == key:
                return arm
        raise svc.ExperimentError(f"Experiment {experiment.pk} has no arm '{key}'", field="arm")


class ExperimentsView(_ExperimentView):
    @extend_schema(
        operation_id="experiments_list",
        summary="The experiments, running first, newest first",
        description=_READS,
        parameters=[ExperimentListQuerySerializer],
        responses={200: ExperimentListSerializer, 400: _400, 403: _403},
    )
    def get(self, request: Request) -> Response:
        query = ExperimentListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        # "running" sorts before "stopped": running first, then the newest.
        experiments = Experiment.objects.select_related(*_RELATED).order_by(
            "status", "-started", "-id"
        )
        if data.get("prompt"):
            experiments = experiments.filter(prompt__slug=data["prompt"])
        if data.get("status"):
            experiments = experiments.filter(status=data["status"])
        page = experiments[: data["limit"]]
        return Response({"results": ExperimentSerializer(page, many=True).data})

    @extend_schema(
        summary="Start an experiment on a slot: its approved variants against the base copy",
        description="The slot's live variant is an arm whether listed or not (requests "
        "without a visitor keep getting it); listed variants not live become `testing`. " + _WRITES,
        request=ExperimentStartSerializer,
        responses={
            201: ExperimentDetailSerializer,
            400: _400,
            403: _403,
            409: OpenApiResponse(description="An experiment already runs on this slot"),
        },
    )
    def post(self, request: Request) -> Response:
        form = ExperimentStartSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        experiment = svc.experiment_start(
            variant_ids=form.validated_data["variants"],
            user=_user(request),
            settings=form.settings(),
            shares=form.validated_data.get("shares"),
        )
        response = Response(experiment_detail(experiment), status=status.HTTP_201_CREATED)
        response["Location"] = reverse("api-experiment", args=[experiment.pk])
        return response


class ExperimentDetailView(_ExperimentView):
    @extend_schema(
        summary="One experiment: its arms, shares, counts and analysis",
        description="Each arm against the control: the corrected, always-valid interval "
        "and adjusted p-value, the fixed-horizon test for reference, the probability of "
        "being best and the expected loss, the decision; and the sample-ratio check. " + _READS,
        responses={200: ExperimentDetailSerializer, 403: _403, 404: _404},
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(experiment_detail(self._experiment(pk)))


class ExperimentStopView(_ExperimentView):
    @extend_schema(
        summary="Stop an experiment, publishing one of its variants or keeping the live one",
        description=_WRITES,
        request=ExperimentStopSerializer,
        responses={200: ExperimentDetailSerializer, 400: _400, 403: _403, 404: _404},
    )
    def post(self, request: Request, pk: int) -> Response:
        experiment = self._experiment(pk)
        form = ExperimentStopSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        promote = None
        if form.validated_data.get("promote") is not None:
            promote = Variant.objects.filter(pk=form.validated_data["promote"]).first()
            if promote is None:
                raise svc.ExperimentError(
                    f"Unknown variant {form.validated_data['promote']}", field="promote"
                )
        svc.experiment_stop(
            experiment=experiment,
            user=_user(request),
            reason=form.validated_data.get("reason", ""),
            promote=promote,
        )
        return Response(experiment_detail(experiment))


class ExperimentChallengersView(_ExperimentView):
    @extend_schema(
        summary="Write a challenger for a running experiment's slot",
        description="A new prompt version with the best arm's copy as its first example, "
        "and a run of it over this one slot. The challenger waits in review; approve it "
        "into the experiment (or add it with POST .../arms/). " + _WRITES,
        request=ChallengersSerializer,
        responses={
            201: ChallengersResultSerializer,
            400: _400,
            403: _403,
            404: _404,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        experiment = self._experiment(pk)
        form = ChallengersSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        made = svc.experiment_challengers(
            user=_user(request), experiment=experiment, budget=form.validated_data.get("budget")
        )
        body = {
            "prompt_version": made.version.number,
            "run": made.run.pk,
            "example": made.example.pk,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class ExperimentArmsView(_ExperimentView):
    @extend_schema(
        summary="Add an approved variant of the slot to a running experiment",
        description="The shares are split again over the serving arms. " + _WRITES,
        request=ArmAddSerializer,
        responses={201: ExperimentDetailSerializer, 400: _400, 403: _403, 404: _404},
    )
    def post(self, request: Request, pk: int) -> Response:
        experiment = self._experiment(pk)
        form = ArmAddSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        variant = Variant.objects.filter(pk=form.validated_data["variant"]).first()
        if variant is None:
            raise svc.ExperimentError(
                f"Unknown variant {form.validated_data['variant']}", field="variant"
            )
        try:
            svc.experiment_add_arm(experiment=experiment, variant=variant, user=_user(request))
        except svc.ExperimentError as exc:
            # The service speaks of `variants` (its own argument); here it is `variant`.
            if exc.field == "variants":
                exc.field = "variant"
            raise
        return Response(experiment_detail(experiment), status=status.HTTP_201_CREATED)


_ARM_404 = OpenApiResponse(description="No such experiment")


class ArmPauseView(_ExperimentView):
    @extend_schema(
        summary="Stop serving one variant of a running experiment (never the control)",
        description="Its visitors are spread over the other arms. " + _WRITES,
        request=ArmPauseSerializer,
        responses={200: ExperimentDetailSerializer, 400: _400, 403: _403, 404: _ARM_404},
    )
    def post(self, request: Request, pk: int, key: str) -> Response:
        experiment = self._experiment(pk)
        form = ArmPauseSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        reason = form.validated_data.get("reason") or "Paused by hand"
        svc.experiment_arm_pause(arm=self._arm(experiment, key), user=_user(request), reason=reason)
        return Response(experiment_detail(experiment))


class ArmResumeView(_ExperimentView):
    @extend_schema(
        summary="Serve a paused variant of a running experiment again",
        description=_WRITES,
        request=None,
        responses={200: ExperimentDetailSerializer, 400: _400, 403: _403, 404: _ARM_404},
    )
    def post(self, request: Request, pk: int, key: str) -> Response:
        experiment = self._experiment(pk)
        svc.experiment_arm_resume(arm=self._arm(experiment, key), user=_user(request))
        return Response(experiment_detail(experiment))
