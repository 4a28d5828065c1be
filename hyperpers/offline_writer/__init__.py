"""The offline writer: an OpenAI-compatible HTTP server that writes copy by fixed rules.

It is NOT a language model, and every answer says so in its metadata
(`hyperpers_offline_writer.is_language_model` is false). It is bundled so that the demo
and the tests take the same path as production - the official `openai` client over
HTTP - with no network and no model. Only the standard library is used, so it starts
anywhere the project's Python does. `manage.py run_offline_writer` serves it.

It is also a test server for the generation engine, standing in for the range of real
providers under load: latency, limits answered with 429, OpenAI's rate-limit headers, a
prefix cache, the answer shapes of hosted models and injected faults, all changeable
while it serves.

The modules, each importing only modules listed before it:
- text.py: reading a request - its <data> block, the messages' text, token estimates.
- tables.py: the phrase tables, read once from data/*.json and checked.
- composer.py: the copy and its rationale, composed from the request's data.
- profiles.py: the shapes hosted models give their answers (plain, markdown, json, ...).
- faults.py: the settings (WriterSettings, SettingError) and the faults drawn from them.
- server.py: the HTTP server, its limits, prefix cache, endpoints and serve_in_thread().

Everything the project imports from here is re-exported below, so
`from hyperpers.offline_writer import X` works for all of them.
"""

from .composer import (
    DEFAULT_MAX_LENGTH,
    DOMINANT_SHARE,
    PERSONAL_ATTRIBUTES,
    compose,
    compose_reply,
)
from .faults import (
    COPY_FAULTS,
    FAULTS,
    LATENCY_DISTRIBUTIONS,
    SETTING_NAMES,
    TIMEOUT_ACTIONS,
    SettingError,
    WriterSettings,
    draw_fault,
    draw_latency_ms,
    spoil_copy,
    updated_settings,
)
from .profiles import PROFILES, REFUSAL, request_pick, shape_answer, shape_answers
from .server import (
    DEFAULT_MODELS,
    METADATA,
    NOTE,
    PREFIX_CACHE_ENTRIES,
    SYSTEM_FINGERPRINT,
    UNLIMITED_REQUESTS,
    UNLIMITED_TOKENS,
    WINDOW_S,
    OfflineWriterServer,
    format_duration,
    serve_in_thread,
)
from .tables import PHRASEBOOK
from .text import estimate_tokens, extract_data, message_text, prompt_text

__all__ = [
    "COPY_FAULTS",
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_MODELS",
    "DOMINANT_SHARE",
    "FAULTS",
    "LATENCY_DISTRIBUTIONS",
    "METADATA",
    "NOTE",
    "PERSONAL_ATTRIBUTES",
    "PHRASEBOOK",
    "PREFIX_CACHE_ENTRIES",
    "PROFILES",
    "REFUSAL",
    "SETTING_NAMES",
    "SYSTEM_FINGERPRINT",
    "TIMEOUT_ACTIONS",
    "UNLIMITED_REQUESTS",
    "UNLIMITED_TOKENS",
    "WINDOW_S",
    "OfflineWriterServer",
    "SettingError",
    "WriterSettings",
    "compose",
    "compose_reply",
    "draw_fault",
    "draw_latency_ms",
    "estimate_tokens",
    "extract_data",
    "format_duration",
    "message_text",
    "prompt_text",
    "request_pick",
    "serve_in_thread",
    "shape_answer",
    "shape_answers",
    "spoil_copy",
    "updated_settings",
]
