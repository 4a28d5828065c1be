"""The column mapping pages: a lead uploads a CDP export whose columns have names of
their own, reads the suggested mapping, adjusts it, previews the first rows and imports
the file through the mapping saved as a source."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from generation import mapping
from generation.models import Customer, CustomerSource, Import
from generation.tasks import import_run
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

UPLOAD = reverse("review:import-map")
HEADER = "Kunden-ID,Lieblingskategorie,E-Mail,Umsatz,Sprache\n"
ROWS = [
    "K-1,Running,anna@example.com,120.5,de",
    "K-2,Yoga,ben@example.com,80,de",
    "K-3,Running,,15,en",
    "K-4,Hiking,dora@example.com,0,fr",
]
CSV = HEADER + "\n".join(ROWS) + "\n"
# What the lead settles on: the id, a choice, the e-mail kept personal, revenue a number.
MAPPED = {
    "Kunden-ID": {},
    "Lieblingskategorie": {
        "attribute": "favourite_category",
        "type": "choice",
        "choices": "Running, Yoga, Hiking",
    },
    "E-Mail": {"attribute": "email", "type": "text", "personal": "on"},
    "Umsatz": {"attribute": "revenue", "type": "number"},
    "Sprache": {"attribute": "language", "type": "text"},
}


@pytest.fixture
def lead(client):
    client.force_login(UserFactory(username="lead", groups=["marketing lead"]))
    return client


def _stage(client, body: str = CSV, name: str = "kunden.csv") -> str:
    response = client.post(UPLOAD, {"file": SimpleUploadedFile(name, body.encode())})
    assert response.status_code == 302, response.content.decode()[:2000]
    return response["Location"].rstrip("/").rsplit("/", 1)[1]


def _data(rows: dict, *, external_id: str | None = "Kunden-ID", **fields) -> dict:
    data = {"name": "Acme CDP", "col-TOTAL_FORMS": len(rows), "col-INITIAL_FORMS": len(rows)}
    if external_id is not None:
        data["external_id"] = external_id
    for i, (column, row) in enumerate(rows.items()):
        data[f"col-{i}-column"] = column
        data[f"col-{i}-type"] = "text"
        data |= {f"col-{i}-{key}": value for key, value in row.items()}
    return data | fields


def _page(token: str) -> str:
    return reverse("review:import-mapping", args=[token])


def _preview(token: str) -> str:
    return reverse("review:import-mapping-preview", args=[token])


def _nothing_written() -> None:
    assert not CustomerSource.objects.exists()
    assert not Import.objects.exists()
    assert not Customer.objects.exists()


# --- who may ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["anonymous", "copywriter", "lead"])
def test_only_leads_map_a_customer_file(client, role):
    owner = UserFactory(username="owner", groups=["marketing lead"])
    if role != "anonymous":
        groups = ["marketing lead"] if role == "lead" else ["copywriter"]
        owner = UserFactory(username=role, groups=groups)
        client.force_login(owner)
    staged = mapping.stage(SimpleUploadedFile("kunden.csv", CSV.encode()), user_id=owner.pk)
    answers = [
        client.get(UPLOAD),
        client.post(UPLOAD, {"file": SimpleUploadedFile("k.csv", CSV.encode())}),
        client.get(_page(staged.token)),
        client.post(_preview(staged.token), _data(MAPPED), HTTP_HX_REQUEST="true"),
        client.post(_page(staged.token), _data(MAPPED)),
    ]
    codes = [a.status_code for a in answers]
    if role == "anonymous":
        assert all(a.status_code == 302 and "/login/" in a["Location"] for a in answers)
    elif role == "copywriter":
        assert codes == [403] * 5
    else:
        assert codes == [200, 302, 200, 200, 302]
    written = 1 if role == "lead" else 0
    assert Import.objects.count() == written and CustomerSource.objects.count() == written


def test_another_leads_upload_is_not_found(client, import_uploads):
    owner = UserFactory(username="owner", groups=["marketing lead"])
    staged = mapping.stage(SimpleUploadedFile("kunden.csv", CSV.encode()), user_id=owner.pk)
    client.force_login(UserFactory(username="other", groups=["marketing lead"]))
    for response in (
        client.get(_page(staged.token)),
        client.post(_page(staged.token), _data(MAPPED)),
        client.post(_preview(staged.token), _data(MAPPED)),
    ):
        assert response.status_code == 404
        assert "upload the file again" in response.content.decode()
    _nothing_written()
    assert staged.path.exists()  # still the owner's to map


# --- the way through ---------------------------------------------------------------------


def test_the_page_shows_the_columns_their_samples_and_the_suggested_mapping(lead):
    token = _stage(lead)
    page = lead.get(_page(token)).content.decode()
    assert "Map the columns of kunden.csv" in page
    assert (
        'name="external_id" value="Kunden-ID" aria-label="External id: Kunden-ID" checked' in page
    )
    assert "Running · Yoga · Hiking" in page  # sample values
    assert (
        'value="lieblingskategorie" maxlength="64" aria-label="Attribute of Lieblingskategorie"'
        in page
    )
    assert 'value="Running, Yoga, Hiking" aria-label="Choices of Lieblingskategorie"' in page
    assert 'aria-label="Personal: E-Mail" checked' in page and "(its name)" in page
    assert 'value="language" maxlength="64" aria-label="Attribute of Sprache"' in page
    assert '<option value="number" selected>number</option>' in page
    # The suggested mapping is previewed at once: every row reads.
    assert "All 4 rows read without an error." in page
    assert 'value="Acme' not in page and 'value="kunden"' in page  # the name to save as


def test_the_preview_swaps_in_place_with_each_error_on_its_cell(lead):
    token = _stage(lead)
    rows = MAPPED | {"Lieblingskategorie": MAPPED["Lieblingskategorie"] | {"choices": "Running"}}
    response = lead.post(_preview(token), _data(rows), HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert response.status_code == 200 and "<html" not in page
    assert 'id="mapping-preview"' in page
    assert "2 of 4 rows cannot be imported" in page
    assert '<td class="error" title="&#x27;Yoga&#x27; is not one of Running">Yoga' in page
    assert "&#x27;Hiking&#x27; is not one of Running" in page
    assert "→ favourite_category" in page and "→ email" in page
    assert not CustomerSource.objects.exists()


def test_saving_the_mapping_imports_the_file_through_it_as_a_recorded_import(lead, import_uploads):
    token = _stage(lead)
    response = lead.post(_page(token), _data(MAPPED))
    record = Import.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("review:import", args=[record.pk])
    source = CustomerSource.objects.get()
    assert (source.slug, source.name) == ("acme-cdp", "Acme CDP")
    assert source.mapping == {
        "columns": {
            "Kunden-ID": {"attribute": "external_id", "type": "text", "required": True},
            "Lieblingskategorie": {
                "attribute": "favourite_category",
                "type": "choice",
                "choices": ["Running", "Yoga", "Hiking"],
            },
            "E-Mail": {"attribute": "email", "type": "text", "personal": True},
            "Umsatz": {"attribute": "revenue", "type": "number"},
            "Sprache": {"attribute": "language", "type": "text"},
        },
        "unmapped": "drop",
    }
    assert (record.kind, record.source, record.file_name, record.via) == (
        "customers",
        source,
        "kunden.csv",
        "web",
    )
    assert record.options == {"skip_invalid": False} and record.requested_by == "lead"
    # The staged upload moved to where imports wait for their worker; nothing is left.
    assert not any((import_uploads / "mapping").iterdir())
    assert lead.get(_page(token)).status_code == 404

    import_run.apply(args=[record.pk])
    record.refresh_from_db()
    assert record.status == "done" and record.result["created"] == 4
    anna = Customer.objects.get(external_id="K-1")
    assert anna.language == "de"
    assert anna.attributes == {
        "favourite_category": "Running",
        "email": "anna@example.com",
        "revenue": 120.5,
    }
    progress = lead.get(response["Location"]).content.decode()
    assert "Import #" in progress and "Acme CDP" in progress


def test_a_saved_source_is_updated_and_its_mapping_suggested(lead):
    source = CustomerSource.objects.create(
        slug="acme-cdp",
        name="Acme CDP",
        mapping={"columns": {"Kunden-ID": "external_id", "Alt": "old"}, "unmapped": "drop"},
    )
    token = _stage(lead)
    page = lead.get(_page(token) + "?source=acme-cdp").content.decode()
    assert 'value="Acme CDP"' in page
    assert "maps columns this file lacks: <code>Alt</code>" in page
    assert lead.post(_page(token), _data(MAPPED)).status_code == 302
    source.refresh_from_db()
    assert "Alt" not in source.mapping["columns"] and CustomerSource.objects.count() == 1


# --- bad input: a clear message on the page, nothing written --------------------------------


@pytest.mark.parametrize(
    "name, body, status, message",
    [
        ("kunden.xlsx", CSV.encode(), 400, "the file name &#x27;kunden.xlsx&#x27; does not tell"),
        ("kunden.csv", CSV.encode() * 20, 413, "IMPORT_MAX_BYTES"),
        ("kunden.csv", b"", 400, "kunden.csv is empty."),
    ],
)
def test_a_file_of_the_wrong_type_or_too_big_is_refused(
    lead, settings, import_uploads, name, body, status, message
):
    settings.IMPORT_MAX_BYTES = 1000
    response = lead.post(UPLOAD, {"file": SimpleUploadedFile(name, body)})
    assert response.status_code == status
    assert message in response.content.decode()
    assert not any((import_uploads / "mapping").glob("*"))
    _nothing_written()


def test_no_file_is_named(lead):
    response = lead.post(UPLOAD, {})
    assert (
        response.status_code == 400
        and "Choose a customer file to map." in response.content.decode()
    )


def test_a_mapping_that_names_a_column_the_file_lacks_is_refused(lead):
    token = _stage(lead)
    rows = MAPPED | {"Geburtstag": {"attribute": "birthday", "type": "date"}}
    response = lead.post(_page(token), _data(rows))
    assert response.status_code == 400
    assert "Column &#x27;Geburtstag&#x27;: The file has no column &#x27;Geburtstag&#x27;." in (
        response.content.decode()
    )
    preview = lead.post(_preview(token), _data(rows)).content.decode()
    assert "The file has no column &#x27;Geburtstag&#x27;." in preview
    response = lead.post(_page(token), _data(MAPPED, external_id="Customer"))
    assert "The file has no column &#x27;Customer&#x27;." in response.content.decode()
    _nothing_written()


def test_a_required_column_empty_in_the_preview_is_refused(lead):
    token = _stage(lead)
    rows = MAPPED | {"E-Mail": MAPPED["E-Mail"] | {"required": "on"}}
    preview = lead.post(_preview(token), _data(rows)).content.decode()
    assert "1 of 4 rows cannot be imported" in preview
    assert '<td class="error" title="email is required and empty">(empty)' in preview
    response = lead.post(_page(token), _data(rows))
    page = response.content.decode()
    assert response.status_code == 400
    assert "1 of the first 4 rows cannot be imported" in page
    assert "line 4, column &#x27;E-Mail&#x27;: email is required and empty" in page
    _nothing_written()


def test_a_required_column_empty_everywhere_is_named(lead):
    body = "Kunden-ID,Notiz\nK-1,\nK-2,\n"
    token = _stage(lead, body)
    rows = {"Kunden-ID": {}, "Notiz": {"attribute": "note", "required": "on"}}
    response = lead.post(_page(token), _data(rows, skip_invalid="1"))
    assert response.status_code == 400
    assert "Required column &#x27;Notiz&#x27; is empty in every previewed row" in (
        response.content.decode()
    )
    _nothing_written()


def test_a_required_column_empty_past_the_preview_fails_the_import_and_writes_nothing(lead):
    body = HEADER + "".join(f"K-{i},Running,k{i}@example.com,1,de\n" for i in range(30))
    body += "K-99,Running,,1,de\n"  # line 32: past the first rows previewed
    token = _stage(lead, body)
    rows = MAPPED | {"E-Mail": MAPPED["E-Mail"] | {"required": "on"}}
    assert lead.post(_page(token), _data(rows)).status_code == 302
    record = Import.objects.get()
    import_run.apply(args=[record.pk])
    page = lead.get(reverse("review:import", args=[record.pk])).content.decode()
    assert "Nothing was imported" in page
    assert "line 32, column &#x27;E-Mail&#x27;: email is required and empty" in page
    assert not Customer.objects.exists()


def test_two_columns_mapped_to_one_attribute_are_refused(lead):
    token = _stage(lead)
    rows = MAPPED | {"Umsatz": {"attribute": "email", "type": "text"}}
    response = lead.post(_page(token), _data(rows))
    assert response.status_code == 400
    assert (
        "Column &#x27;Umsatz&#x27;: Column &#x27;E-Mail&#x27; maps to &#x27;email&#x27; too: "
        "map each attribute once." in response.content.decode()
    )
    _nothing_written()


def test_no_external_id_column_is_refused(lead):
    token = _stage(lead)
    response = lead.post(_page(token), _data(MAPPED, external_id=None))
    assert response.status_code == 400
    assert "Choose the column that holds the external id." in response.content.decode()
    preview = lead.post(_preview(token), _data(MAPPED, external_id=None)).content.decode()
    assert "Choose the column that holds the external id." in preview
    _nothing_written()


@pytest.mark.parametrize(
    "row, message",
    [
        ({"attribute": ""}, "Name the attribute, or tick Ignore."),
        ({"attribute": "2x"}, "An attribute is a name of letters, digits and _"),
        ({"attribute": "external_id"}, "Only the external id&#x27;s column maps to external_id"),
        ({"attribute": "tier", "type": "choice", "choices": " , "}, "A choice needs its choices"),
        ({"attribute": "language", "type": "integer"}, "language is text"),
        ({"attribute": "x", "type": "colour"}, "&#x27;colour&#x27; is not a type we read"),
    ],
)
def test_a_bad_row_is_named_by_its_column(lead, row, message):
    token = _stage(lead)
    response = lead.post(_page(token), _data(MAPPED | {"Umsatz": row}))
    page = response.content.decode()
    assert response.status_code == 400 and message in page
    assert "Column &#x27;Umsatz&#x27;" in page
    _nothing_written()


def test_ignored_columns_are_not_imported_and_the_id_cannot_be_ignored(lead, import_uploads):
    token = _stage(lead)
    rows = MAPPED | {"E-Mail": {"ignore": "on"}, "Kunden-ID": {"ignore": "on"}}
    response = lead.post(_page(token), _data(rows))
    assert "The external id&#x27;s column cannot be ignored." in response.content.decode()
    _nothing_written()
    rows = MAPPED | {"E-Mail": {"ignore": "on", "attribute": "email"}}
    assert lead.post(_page(token), _data(rows)).status_code == 302
    import_run.apply(args=[Import.objects.get().pk])
    assert "email" not in Customer.objects.get(external_id="K-1").attributes


def test_bad_rows_can_be_skipped_as_the_import_skips_them(lead):
    token = _stage(lead)
    rows = MAPPED | {"Lieblingskategorie": MAPPED["Lieblingskategorie"] | {"choices": "Running"}}
    assert lead.post(_page(token), _data(rows)).status_code == 400
    _nothing_written()
    assert lead.post(_page(token), _data(rows, skip_invalid="1")).status_code == 302
    import_run.apply(args=[Import.objects.get().pk])
    assert set(Customer.objects.values_list("external_id", flat=True)) == {"K-1", "K-3"}


def test_column_names_and_values_are_escaped(lead):
    body = '"<script>alert(1)</script>",Kunden-ID\n<b>x</b>,K-1\n'
    token = _stage(lead, body)
    page = lead.get(_page(token)).content.decode()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
