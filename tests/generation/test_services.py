import re

import pytest

from generation import services
from generation.importers import ImportFileError
from generation.models import Customer, GenerationRun, Product, Segment, Variant
from generation.prompting import PromptTemplateError
from tests.factories import (
    CustomerFactory,
    ProductFactory,
    PromptFactory,
    PromptVersionFactory,
    SegmentFactory,
)

pytestmark = pytest.mark.django_db


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reimporting_products_updates_by_sku_and_never_duplicates(tmp_path):
    header = "sku,name,category,subcategory,description,price\n"
    first = _write(tmp_path, "a.csv", header + "S1,Shoe,Run,Shoes,Fast shoe.,10\n")
    second = _write(
        tmp_path, "b.csv", header + "S1,Shoe 2,Run,Shoes,Fast shoe.,12\nS2,Cap,Run,Caps,A cap.,5\n"
    )

    assert str(services.products_import(path=first)) == "1 created, 0 updated, 0 unchanged"
    result = services.products_import(path=second)

    assert (result.created, result.updated) == (1, 1)
    assert Product.objects.count() == 2
    shoe = Product.objects.get(sku="S1")
    assert (shoe.name, shoe.attributes["price"]) == ("Shoe 2", "12")


def test_a_bad_row_stops_the_import_and_writes_nothing(tmp_path):
    ProductFactory(sku="S1", name="Old name")
    path = _write(
        tmp_path,
        "bad.csv",
        "sku,name,category,subcategory,description\n"
        "S1,New name,Run,Shoes,Fine.\n"
        ",Nameless,Run,Shoes,No sku.\n",
    )
    with pytest.raises(ImportFileError) as error:
        services.products_import(path=path)
    assert "bad.csv" in str(error.value)
    assert "line 3" in str(error.value)
    assert "sku" in str(error.value)
    assert Product.objects.get(sku="S1").name == "Old name"


def test_reimporting_customers_updates_by_external_id(tmp_path):
    path = _write(tmp_path, "c.jsonl", '{"external_id": "C1", "value_tier": "low"}\n')
    services.customers_import(path=path)
    path.write_text('{"external_id": "C1", "value_tier": "high", "language": "de"}\n')
    services.customers_import(path=path)
    customer = Customer.objects.get()
    assert (customer.language, customer.attributes["value_tier"]) == ("de", "high")


def test_segments_are_one_per_combination_with_counts_and_summary():
    for tier, sub, region in [
        ("high", "Shoes", "north"),
        ("high", "Shoes", "south"),
        ("high", "Shoes", "south"),
        ("low", "Shoes", "north"),
        ("low", "Caps", "north"),
    ]:
        CustomerFactory(
            attributes={"value_tier": tier, "preferred_subcategory": sub, "region": region}
        )

    segments = services.segments_build(by=["preferred_subcategory", "value_tier"])

    assert {s.slug: s.member_count for s in segments} == {
        "caps-low": 1,
        "shoes-high": 3,
        "shoes-low": 1,
    }
    shoes_high = Segment.objects.get(slug="shoes-high")
    assert shoes_high.rules == {"preferred_subcategory": "Shoes", "value_tier": "high"}
    assert shoes_high.summary["region"] == {"south": 0.6667, "north": 0.3333}
    assert "value_tier" not in shoes_high.summary


def test_segments_by_an_unknown_attribute_is_an_error_naming_it():
    CustomerFactory()
    with pytest.raises(services.SegmentError, match="favourite_colour"):
        services.segments_build(by=["favourite_colour"])


def test_rebuilding_segments_updates_counts_instead_of_duplicating():
    CustomerFactory(attributes={"value_tier": "high"})
    services.segments_build(by=["value_tier"])
    CustomerFactory(attributes={"value_tier": "high"})
    services.segments_build(by=["value_tier"])
    assert Segment.objects.get(slug="high").member_count == 2


def test_prompt_versions_number_up_and_refuse_unknown_placeholders():
    prompt = PromptFactory()
    v1 = services.prompt_version_create(prompt=prompt, template="{product_name}", model="m")
    v2 = services.prompt_version_create(prompt=prompt, template="{product_name}!", model="m")
    assert (v1.number, v2.number) == (1, 2)
    with pytest.raises(PromptTemplateError, match=re.escape("'{audience}'")):
        services.prompt_version_create(prompt=prompt, template="{audience}", model="m")
    assert prompt.versions.count() == 2


def test_run_refuses_a_prompt_without_version_or_an_empty_scope(offline_writer):
    with pytest.raises(services.RunError, match="no version"):
        services.run_create(prompt=PromptFactory(), products=[ProductFactory()])
    version = PromptVersionFactory()
    with pytest.raises(services.RunError, match="no products"):
        services.run_create(prompt=version.prompt, products=[], segments=[SegmentFactory()])
    with pytest.raises(services.RunError, match="no segments"):
        services.run_create(prompt=version.prompt, products=[ProductFactory()], segments=[])
    assert not GenerationRun.objects.exists()


def test_run_queues_each_slot_once_and_enqueues_after_commit(
    offline_writer, django_capture_on_commit_callbacks
):
    version = PromptVersionFactory()
    products, segments = ProductFactory.create_batch(3), SegmentFactory.create_batch(2)

    with django_capture_on_commit_callbacks() as callbacks:
        run = services.run_create(prompt=version.prompt, products=products, segments=segments)
    again = services.run_create(prompt=version.prompt, products=products, segments=segments)

    assert run.total == 6 and len(callbacks) == 1
    assert again.total == 0 and again.status == GenerationRun.Status.FINISHED
    assert Variant.objects.filter(status=Variant.Status.QUEUED).count() == 6
