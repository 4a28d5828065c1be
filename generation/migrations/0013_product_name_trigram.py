"""A trigram index on products' names, on PostgreSQL: the products page
(review/views/catalog.py) searches names for any part of them (icontains, which is
UPPER(name) LIKE '%term%'), and without an index that reads every name, about 100 ms
at 100,000 products on a loaded machine; with it, under 1 ms (bench/catalog.py).

It lives in this migration only, not in Product.Meta.indexes: a GinIndex there would
be created on SQLite too, which has no GIN; SQLite (the demo's database) reads every
name, which is fine at the sizes it holds. pg_trgm is a trusted extension since
PostgreSQL 13: the database's owner may create it, no superuser needed.
"""

from django.db import migrations

INDEX = "generation_product_name_trgm"


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    # The expression Django's icontains writes, so that the planner uses the index.
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON generation_product "
        'USING gin ((UPPER("name"::text)) gin_trgm_ops)'
    )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("generation", "0012_variant_testing_status")]

    operations = [migrations.RunPython(create, drop)]
