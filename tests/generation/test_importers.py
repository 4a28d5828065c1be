"""The import parsers: layouts, cleaning, and errors that name file, line and column."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from generation.importers import (
    ImportFileError,
    ProductRow,
    html_to_text,
    read_products,
)

LUMA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "luma"
OWN_HEADER = "sku,name,category,subcategory,description"
MAGENTO_HEADER = (
    "sku,store_view_code,product_type,categories,name,description,visibility,price,"
    "additional_attributes,configurable_variations"
)


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def _luma(name: str) -> Path:
    path = LUMA / name
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared/data exists only in this workplace)")
    return path


def _by_sku(products: list[ProductRow]) -> dict[str, ProductRow]:
    return {product.sku: product for product in products}


def _error(call, path: Path) -> ImportFileError:
    with pytest.raises(ImportFileError) as caught:
        call(path)
    return caught.value


# --- the error ------------------------------------------------------------------------


def test_error_message_names_file_line_and_column():
    error = ImportFileError("products.csv", 14, "sku", "SKU is empty")
    assert str(error) == "products.csv, line 14, column 'sku': SKU is empty"
    assert (error.path, error.line, error.column) == ("products.csv", 14, "sku")


def test_error_message_leaves_out_what_it_does_not_know():
    assert str(ImportFileError("a.csv", 3, None, "bad")) == "a.csv, line 3: bad"
    assert str(ImportFileError("a.csv", None, None, "bad")) == "a.csv: bad"
    assert str(ImportFileError("c.jsonl", 2, 17, "bad")) == "c.jsonl, line 2, column 17: bad"


# --- html_to_text ---------------------------------------------------------------------


def test_html_paragraphs_are_separated_by_a_blank_line_and_breaks_start_lines():
    html = "<p>First  para\n graph.</p>\n<p>&bull; One.<br />&bull;Two. <br/>&bull; Three.</p>"
    assert html_to_text(html) == "First para graph.\n\n• One.\n• Two.\n• Three."


def test_html_list_items_become_bullets_even_when_left_unclosed():
    html = "<p>Intro.<p>\n<ul>\n<li>Dual handles.</li>\n<li>Strap.\n<li>Zip.\n</ul>After."
    assert html_to_text(html) == "Intro.\n\n• Dual handles.\n• Strap.\n• Zip.\n\nAfter."


def test_html_scripts_and_styles_are_dropped_with_their_content():
    html = '<style>p {color: red}</style><p onclick="x()">Text<script>alert("<b>")</script></p>'
    assert html_to_text(html) == "Text"


def test_html_entities_are_decoded_and_no_tag_survives():
    text = html_to_text("<div>CoolTech&trade; &amp; more&nbsp;&nbsp;here &lt;3</div><hr/>")
    assert text == "CoolTech™ & more here <3"


def test_plain_text_keeps_its_line_breaks_and_bare_ampersands():
    text = html_to_text("  Line one\r\n  line   two &amp; AT&T\n\n\n\nLast ")
    assert text == "Line one\nline two & AT&T\n\nLast"


# --- products: our layout -------------------------------------------------------------


def test_own_layout_round_trips_fields_and_attributes(tmp_path):
    path = _write(
        tmp_path,
        "products.csv",
        "sku,name,category,subcategory,description,color,material,price\n"
        "S1, Trail  Shoe ,Footwear,Running,<p>Grippy &amp; light.</p><ul><li>Mesh</li></ul>,"
        " Red ,,12.50\n"
        "S2,Cap,Accessories,,Plain text cap.,Blue,Cotton,\n",
    )

    products = read_products(path)

    assert products == [
        ProductRow(
            sku="S1",
            name="Trail Shoe",
            category="Footwear",
            subcategory="Running",
            description="Grippy & light.\n\n• Mesh",
            attributes={"color": "Red", "price": "12.50"},
            line=2,
        ),
        ProductRow(
            sku="S2",
            name="Cap",
            category="Accessories",
            subcategory="",
            description="Plain text cap.",
            attributes={"color": "Blue", "material": "Cotton"},
            line=3,
        ),
    ]


def test_own_layout_needs_no_category_columns(tmp_path):
    path = _write(tmp_path, "p.csv", "SKU,Name,Description\nS1,Cap,A cap.\n")
    [product] = read_products(path)
    assert (product.sku, product.category, product.subcategory) == ("S1", "", "")


def test_lines_count_newlines_inside_quoted_fields(tmp_path):
    path = _write(
        tmp_path,
        "products.csv",
        f"{OWN_HEADER}\n"
        'S1,Shoe,Run,Shoes,"<p>One.</p>\n<p>Two.</p>\n<p>Three.</p>"\n'
        "\n"
        ",Nameless,Run,Shoes,No SKU.\n",
    )

    error = _error(read_products, path)

    assert str(error) == f"{path}, line 6, column 'sku': SKU is empty"


def test_a_missing_required_column_is_reported_on_the_header_line(tmp_path):
    path = _write(tmp_path, "products.csv", "sku,name,category\nS1,Shoe,Run\n")
    error = _error(read_products, path)
    assert (error.line, error.column) == (1, "description")
    assert "required column is missing" in str(error)


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        (",Shoe,Run,Shoes,Fast.", "sku", "SKU is empty"),
        ("S2,  ,Run,Shoes,Fast.", "name", "name is empty"),
        ("S2,Shoe,Run,Shoes,", "description", "description is empty"),
        ("S2,Shoe,Run,Shoes,<p> <br/> </p>", "description", "empty after removing the HTML"),
        ("S1,Shoe,Run,Shoes,Fast.", "sku", "SKU 'S1' already appears on line 2"),
        ("S2,Shoe," + "x" * 121 + ",Shoes,Fast.", "category", "longer than 120 characters"),
        ("S" * 65 + ",Shoe,Run,Shoes,Fast.", "sku", "longer than 64 characters"),
    ],
)
def test_a_bad_product_row_names_its_line_and_column(tmp_path, row, column, message):
    path = _write(tmp_path, "products.csv", f"{OWN_HEADER}\nS1,Cap,Run,Caps,Fine.\n{row}\n")

    error = _error(read_products, path)

    assert str(error).startswith(f"{path}, line 3, column '{column}': ")
    assert message in error.message


def test_a_row_with_the_wrong_number_of_fields_is_an_error(tmp_path):
    path = _write(tmp_path, "products.csv", f"{OWN_HEADER}\nS1,Cap,Run,Caps,Fine.,extra\n")
    error = _error(read_products, path)
    assert str(error) == f"{path}, line 2: the row has 6 fields but the header has 5"


def test_an_unterminated_quote_is_reported_where_the_record_starts(tmp_path):
    path = _write(tmp_path, "products.csv", f'{OWN_HEADER}\nS1,Cap,Run,Caps,"Fine.\nS2,Hat\n')
    error = _error(read_products, path)
    assert (error.line, error.column) == (2, None)
    assert "malformed CSV" in error.message


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("products.xlsx", "sku", "unsupported file type ('.xlsx'); use .csv"),
        ("products", "sku", "unsupported file type (no extension); use .csv"),
        ("products.csv", b"sku,name,description\nS1,Caf\xe9,x\n", "not UTF-8 text"),
        ("products.csv", "", "the file is empty"),
        ("products.csv", f"{OWN_HEADER}\n\n", "the file has no products"),
    ],
)
def test_a_file_that_cannot_be_read_is_an_error_without_a_line(tmp_path, name, content, message):
    path = _write(tmp_path, name, content)
    error = _error(read_products, path)
    assert error.line is None
    assert str(error).startswith(f"{path}: ")
    assert message in error.message


def test_a_missing_file_is_an_error_naming_the_path_as_given(tmp_path):
    error = _error(read_products, "missing/products.csv")
    assert str(error).startswith("missing/products.csv: cannot read the file")


# --- products: the Magento export -----------------------------------------------------


def _magento_row(sku, product_type, description, visibility, extra="", variations="", **kw):
    categories = kw.get("categories", "Default Category/Men/Tops/Tees,Default Category")
    return (
        f'{sku},{kw.get("store", "")},{product_type},"{categories}",{kw.get("name", sku)},'
        f'"{description}","{visibility}",{kw.get("price", "10")},"{extra}","{variations}"\n'
    )


def test_magento_children_collapse_onto_their_parent(tmp_path):
    hidden = "Not Visible Individually"
    path = _write(
        tmp_path,
        "export.csv",
        MAGENTO_HEADER
        + "\n"
        + _magento_row("T1-S-Red", "simple", "<p>Child text.</p>", hidden, "size=S,color=Red")
        + _magento_row("T1-M-Blue", "simple", "<p>Other.</p>", hidden, "size=M,color=Blue")
        + _magento_row(
            "T1-S-Red", "simple", "Texte", hidden, "size=S,color=Red", store="fr", name="Tee FR"
        )
        + _magento_row(
            "T1",
            "configurable",
            "",
            "Catalog, Search",
            "has_options=1,material=Cotton, Polyester,climate=Cool|Warm",
            "sku=T1-M-Blue,size=M,color=Blue|sku=T1-S-Red,size=S,color=Red",
            name="Tee",
            price="",
        )
        + _magento_row("B1", "simple", "<p>A bag.</p>", "Catalog, Search", "material=Nylon")
        + _magento_row("ORPHAN", "simple", "<p>Spare part.</p>", hidden),
    )

    products = read_products(path)

    assert [product.sku for product in products] == ["T1", "B1"]
    tee = products[0]
    assert (tee.name, tee.line, tee.description) == ("Tee", 5, "Child text.")
    assert tee.attributes == {
        "material": "Cotton, Polyester",
        "climate": ["Cool", "Warm"],
        "sizes": ["S", "M"],
        "colors": ["Blue", "Red"],
        "price": "10",
    }
    assert products[1].attributes == {"material": "Nylon", "price": "10"}


@pytest.mark.parametrize(
    ("categories", "expected"),
    [
        ("Default Category/Gear/Bags,Default Category/Collections/New Luma Yoga", ("Gear", "Bags")),
        ("Default Category/Promotions/Tees/Sale,Default Category/Men", ("Men", "")),
        ("Default Category/Collections/Eco Friendly,Default Category", ("", "")),
        ("Default Category/Women/Tops/Jackets/Rain", ("Women / Tops / Jackets", "Rain")),
    ],
)
def test_magento_category_is_the_deepest_path_outside_collections(tmp_path, categories, expected):
    row = _magento_row("B1", "simple", "Bag.", "Catalog", categories=categories)
    [product] = read_products(_write(tmp_path, "export.csv", MAGENTO_HEADER + "\n" + row))
    assert (product.category, product.subcategory) == expected


def test_magento_variation_missing_from_the_file_is_an_error_on_the_parent(tmp_path):
    row = _magento_row("T1", "configurable", "Tee.", "Catalog", "", "sku=T1-S,size=S")
    path = _write(tmp_path, "export.csv", MAGENTO_HEADER + "\n" + row)
    error = _error(read_products, path)
    assert str(error) == (
        f"{path}, line 2, column 'configurable_variations': variation 'T1-S' is not in the file"
    )


def test_magento_child_claimed_by_two_parents_is_an_error_naming_the_first(tmp_path):
    path = _write(
        tmp_path,
        "export.csv",
        MAGENTO_HEADER
        + "\n"
        + _magento_row("C1", "simple", "Child.", "Not Visible Individually", "size=S")
        + _magento_row("P1", "configurable", "One.", "Catalog", "", "sku=C1,size=S")
        + _magento_row("P2", "configurable", "Two.", "Catalog", "", "sku=C1,size=S"),
    )
    error = _error(read_products, path)
    assert (error.line, error.column) == (4, "configurable_variations")
    assert error.message == "variation 'C1' already belongs to 'P1' (line 3)"


def test_magento_malformed_additional_attributes_are_an_error(tmp_path):
    row = _magento_row("B1", "simple", "Bag.", "Catalog", "material")
    path = _write(tmp_path, "export.csv", MAGENTO_HEADER + "\n" + row)
    error = _error(read_products, path)
    assert (error.line, error.column) == (2, "additional_attributes")


def test_magento_parent_without_any_description_is_an_error(tmp_path):
    row = _magento_row("T1", "configurable", "<p></p>", "Catalog")
    path = _write(tmp_path, "export.csv", MAGENTO_HEADER + "\n" + row)
    error = _error(read_products, path)
    assert (error.line, error.column) == (2, "description")


def test_luma_export_gives_one_product_per_configurable_parent():
    path = _luma("configurable_products.csv")
    with path.open(newline="", encoding="utf-8") as handle:
        parents = [r["sku"] for r in csv.DictReader(handle) if r["product_type"] == "configurable"]

    products = read_products(path)

    assert len(products) == 147
    assert [product.sku for product in products] == parents


def test_luma_parents_carry_their_childrens_sizes_and_colors():
    products = _by_sku(read_products(_luma("configurable_products.csv")))

    hoodie = products["MH01"]
    assert hoodie.attributes["sizes"] == ["XS", "S", "M", "L", "XL"]
    assert hoodie.attributes["colors"] == ["Black", "Gray", "Orange"]
    assert hoodie.attributes["price"] == "52"
    assert hoodie.attributes["climate"] == ["All-weather", "Cool", "Indoor", "Spring", "Windy"]
    assert "has_options" not in hoodie.attributes
    assert all(p.attributes["sizes"] and p.attributes["colors"] for p in products.values())
    pants = [p for p in products.values() if p.subcategory == "Pants"]
    assert all(p.attributes["sizes"][0].isdigit() for p in pants)
    assert all(p.attributes["sizes"] == sorted(p.attributes["sizes"], key=int) for p in pants)


def test_luma_descriptions_and_attributes_are_clean_text():
    products = read_products(_luma("configurable_products.csv"))

    assert all(p.description for p in products)
    assert not [p.sku for p in products if "<" in p.description or "&bull;" in p.description]
    assert not [p.sku for p in products if "&trade;" in repr(p.attributes)]
    hoodie = _by_sku(products)["MH01"]
    assert hoodie.description.endswith(
        "body heat.\n\n• Two-tone gray heather hoodie.\n• Drawstring-adjustable hood.\n"
        "• Machine wash/dry."
    )


def test_luma_categories_skip_collections_and_promotions():
    products = _by_sku(read_products(_luma("configurable_products.csv")))

    hoodie = products["MH01"]
    assert (hoodie.category, hoodie.subcategory) == ("Men / Tops", "Hoodies & Sweatshirts")
    assert {p.category for p in products.values()} == {
        "Men / Tops",
        "Men / Bottoms",
        "Women / Tops",
        "Women / Bottoms",
    }


def test_luma_product_line_is_where_its_record_starts_in_the_file():
    path = _luma("configurable_products.csv")
    lines = path.read_text(encoding="utf-8").split("\n")
    for product in read_products(path)[:5]:
        assert lines[product.line - 1].startswith(f"{product.sku},")


# --- products: the Magento sample-data fixtures ----------------------------------------


def test_luma_gear_fixtures_read_category_lines_and_multi_line_attributes():
    bags = _by_sku(read_products(_luma("products_gear_bags.csv")))

    assert len(bags) == 14
    assert {(p.category, p.subcategory) for p in bags.values()} == {("Gear", "Bags")}
    duffle = bags["24-MB01"]
    assert duffle.name == "Joust Duffle Bag"
    assert duffle.attributes["features_bags"] == ["Waterproof", "TSA Approved", "Lockable"]
    assert duffle.attributes["pattern"] == "Solid"
    assert "qty" not in duffle.attributes
    assert duffle.description.endswith('• Full-length zipper.\n• L 29" x W 13" x H 11".')


def test_luma_gear_fixture_names_have_their_entities_decoded():
    names = {p.name for p in read_products(_luma("products_gear_fitness_equipment.csv"))}
    assert "Pursuit Lumaflex™ Tone Band" in names
    assert "Affirm Water Bottle" in names


def test_fixture_category_lines_split_into_paths(tmp_path):
    path = _write(
        tmp_path,
        "gear.csv",
        "category,name,sku,price,qty,description,material,attribute_set\n"
        '"Promotions\nSale\nGear\nWatches","Aim Watch",W1,45,100,"<p>Tick.</p>",'
        '"\nPlastic\nRubber",Gear\n',
    )
    [watch] = read_products(path)
    assert (watch.category, watch.subcategory) == ("Gear", "Watches")
    assert watch.attributes == {"price": "45", "material": ["Plastic", "Rubber"]}


def test_other_luma_files_are_rejected_naming_the_missing_column():
    error = _error(read_products, _luma("products_reviews.csv"))
    assert (error.line, error.column) == (1, "name")
    assert "the header is: sku, rating_code" in error.message
